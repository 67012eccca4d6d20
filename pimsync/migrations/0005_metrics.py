"""Running totals for `/metrics`, so that a scrape does not count the whole history."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("pimsync", "0004_jobs")]
    operations = [
        migrations.CreateModel(
            name="MetricTotal",
            fields=[
                (
                    "sample",
                    models.CharField(
                        help_text="Name with labels, as exposed", max_length=255, primary_key=True, serialize=False
                    ),
                ),
                ("value", models.FloatField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name="MetricsWatermark",
            fields=[
                (
                    "name",
                    models.CharField(default="metrics", max_length=32, primary_key=True, serialize=False),
                ),
                ("attempts_counted_to", models.BigIntegerField(default=0)),
                ("attempts_seen_max", models.BigIntegerField(default=0)),
                ("attempts_seen_at", models.DateTimeField(blank=True, null=True)),
                ("events_counted_to", models.DateTimeField(blank=True, null=True)),
            ],
        ),
    ]
