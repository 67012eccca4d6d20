"""Placeholder, filled by the change that needs it."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("pimsync", "0014_asset_upgrade")]

    operations = []
