"""Placeholder for background jobs (large retries); filled in by the change that needs it."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("pimsync", "0003_retention")]
    operations = []
