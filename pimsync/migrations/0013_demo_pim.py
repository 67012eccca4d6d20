"""The demo PIM's changed products (`simulate_pim_change`), overriding the shipped catalog."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("pimsync", "0012_akeneo_events")]

    operations = [
        migrations.CreateModel(
            name="DemoProduct",
            fields=[
                ("key", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("data", models.JSONField()),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
    ]
