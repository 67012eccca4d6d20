"""`manage.py seed`: make an empty database usable (what `make run` runs before serving)."""

from django.core.management.base import BaseCommand

from pimsync.models import MappingConfig


class Command(BaseCommand):
    help = "Create the default configuration when the database is empty."

    def handle(self, *args, **options):
        MappingConfig.load()
