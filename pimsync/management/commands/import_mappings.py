"""`manage.py import_mappings FILE`: replace the mapping configuration atomically, keep it as a new
version and start the check of which known assets the change affects (as a save on the mapping
page does). `--check` validates the file as an import would and changes nothing."""

import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from pimsync import mapping_history
from pimsync.mapping import MAX_FILE_BYTES, check_config, import_config, read_file
from pimsync.models import MappingVersion


class Command(BaseCommand):
    help = "Replace the product-key rule and all mapping rules with those in a JSON file ('-' reads stdin)."

    def add_arguments(self, parser):
        parser.add_argument("file", help="the JSON file, or - for standard input")
        parser.add_argument("--check", action="store_true", help="validate the file; change nothing")

    def handle(self, *args, file, check, **options):
        name = "standard input" if file == "-" else file
        try:
            document = read_file(_read(file, name), name)
            if check:
                _, rules = check_config(document)
            else:
                with transaction.atomic():  # the rules and their version, together
                    _, rules = import_config(document)
                    job = mapping_history.saved(MappingVersion.Source.COMMAND, note=f"from {name}")
        except ValidationError as exc:
            raise CommandError("nothing was changed; the file has problems:\n  " + "\n  ".join(exc.messages)) from None
        if check:
            self.stdout.write(
                self.style.SUCCESS(f"The file is valid: the product-key rule and {len(rules)} mapping rule(s).")
            )
            return
        self.stdout.write(self.style.SUCCESS(f"Imported the product-key rule and {len(rules)} mapping rule(s)."))
        self.stdout.write(
            f"Job {job.pk} checks which of the {job.total} known asset(s) the change affects; "
            "the mapping page then offers to re-sync them."
        )


def _read(file: str, name: str) -> bytes:
    """The first MAX_FILE_BYTES + 1 bytes of `file` (standard input for '-': Django commands have
    no stdin of their own, the process's is the only one), enough to tell a file that is too large."""
    try:
        if file == "-":
            return sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        with open(file, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"cannot read {name}: {exc.strerror}") from None
