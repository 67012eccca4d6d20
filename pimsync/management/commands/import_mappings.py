"""`manage.py import_mappings FILE`: replace the mapping configuration atomically, keep it as a new
version and start the check of which known assets the change affects (as a save on the mapping
page does)."""

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from pimsync import mapping_history
from pimsync.mapping import import_config
from pimsync.models import MappingVersion


class Command(BaseCommand):
    help = "Replace the product-key rule and all mapping rules with those in a JSON file ('-' reads stdin)."

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, file, **options):
        try:
            if file == "-":
                text = self.stdin.read()
            else:
                with open(file, encoding="utf-8") as handle:
                    text = handle.read()
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{file} is not UTF-8 text") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{file} is not valid JSON: {exc}") from None
        try:
            with transaction.atomic():  # the rules and their version, together
                _, rules = import_config(document)
                job = mapping_history.saved(
                    MappingVersion.Source.COMMAND, note="from standard input" if file == "-" else f"from {file}"
                )
        except ValidationError as exc:
            raise CommandError("nothing was changed; the file has problems:\n  " + "\n  ".join(exc.messages)) from None
        self.stdout.write(self.style.SUCCESS(f"Imported the product-key rule and {len(rules)} mapping rule(s)."))
        self.stdout.write(
            f"Job {job.pk} checks which of the {job.total} known asset(s) the change affects; "
            "the mapping page then offers to re-sync them."
        )
