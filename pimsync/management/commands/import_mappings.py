"""`manage.py import_mappings FILE`: replace the mapping configuration atomically, then start the
check of which known assets the change affects (as a save on the mapping page does)."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from pimsync import resync
from pimsync.mapping import MAX_FILE_BYTES, import_config, read_file


class Command(BaseCommand):
    help = "Replace the product-key rule and all mapping rules with those in a JSON file ('-' reads stdin)."

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, file, **options):
        try:
            if file == "-":
                data = self.stdin.read(MAX_FILE_BYTES + 1).encode()
            else:
                with open(file, "rb") as handle:
                    data = handle.read(MAX_FILE_BYTES + 1)  # enough to tell a file that is too large
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        try:
            _, rules = import_config(read_file(data, file))
        except ValidationError as exc:
            raise CommandError("nothing was changed; the file has problems:\n  " + "\n  ".join(exc.messages)) from None
        self.stdout.write(self.style.SUCCESS(f"Imported the product-key rule and {len(rules)} mapping rule(s)."))
        job = resync.mapping_changed()
        self.stdout.write(
            f"Job {job.pk} checks which of the {job.total} known asset(s) the change affects; "
            "the mapping page then offers to re-sync them."
        )
