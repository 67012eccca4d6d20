"""Placeholder for retention (purge schedule); filled in by the change that needs it."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("pimsync", "0002_sweeper_schedule")]
    operations = []
