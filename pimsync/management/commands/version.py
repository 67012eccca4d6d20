"""`manage.py version`: which pimsync this is (CHANGELOG.md says what each version changed)."""

import platform

import django
from django.core.management.base import BaseCommand

import pimsync


class Command(BaseCommand):
    help = "Print pimsync's version (and, with -v 2, Python's and Django's)."

    def handle(self, *args, verbosity, **options):
        self.stdout.write(f"pimsync {pimsync.__version__}")
        if verbosity > 1:
            self.stdout.write(f"Python {platform.python_version()}, Django {django.get_version()}")
