"""Placeholder for metrics totals; filled in by the change that needs it."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("pimsync", "0004_jobs")]
    operations = []
