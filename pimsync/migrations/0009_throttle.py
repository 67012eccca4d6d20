"""Pauses every worker honours after a 429 from AEM or the PIM (`pimsync.outbound.throttle`)."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("pimsync", "0008_assets")]

    operations = [
        migrations.CreateModel(
            name="Pause",
            fields=[
                (
                    "name",
                    models.CharField(
                        help_text="The system: aem, pim, akeneo", max_length=32, primary_key=True, serialize=False
                    ),
                ),
                ("until", models.DateTimeField(help_text="No call to the system before this")),
                (
                    "reason",
                    models.CharField(blank=True, help_text="The answer that asked for the pause", max_length=255),
                ),
                (
                    "since",
                    models.DateTimeField(
                        default=django.utils.timezone.now, help_text="When the answer that set `until` came"
                    ),
                ),
            ],
        ),
    ]
