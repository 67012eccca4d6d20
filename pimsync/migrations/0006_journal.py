"""Placeholder for the I/O Events journal (cursor, how an event arrived); filled in by the change that needs it."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("pimsync", "0005_metrics")]
    operations = []
