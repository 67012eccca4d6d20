"""Placeholder for alerts; filled in by the change that needs it."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("pimsync", "0006_journal")]
    operations = []
