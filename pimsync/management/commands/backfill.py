"""`manage.py backfill`: register the AEM assets pimsync has never seen and re-sync them."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from pimsync import backfill

SHOWN_PROBLEMS = 200


class Command(BaseCommand):
    help = (
        "Register assets from AEM's metadata export (first column assetPath) or an asset_id,path CSV, "
        "or every asset under a DAM folder, and re-sync them."
    )

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("file", nargs="?", help="the CSV file")
        which.add_argument("--folder", help="walk this folder and its sub-folders, e.g. /content/dam/products")
        parser.add_argument("--dry-run", action="store_true", help="look the assets up and report; register nothing")

    def handle(self, *args, file, folder, dry_run, **options):
        try:
            if folder:
                self.stdout.write(f"Walking {folder} in AEM…")
                report = backfill.run_folder(folder, dry_run=dry_run, progress=self.stdout.write)
            else:
                report = backfill.run_csv(read(file), Path(file).name, dry_run=dry_run, progress=self.stdout.write)
        except backfill.BackfillError as exc:
            raise CommandError(str(exc)) from None
        for problem in report.problems[:SHOWN_PROBLEMS]:
            self.stdout.write(self.style.WARNING(f"  skipped {problem}"))
        if len(report.problems) > SHOWN_PROBLEMS:
            self.stdout.write(self.style.WARNING(f"  … and {len(report.problems) - SHOWN_PROBLEMS} more skipped"))
        self.stdout.write(self.style.SUCCESS(report.summary()))
        for job in report.jobs:
            page = settings.PIMSYNC_PUBLIC_URL + reverse("admin:pimsync_event_job", args=[job.pk])
            self.stdout.write(f"Follow job {job.pk} at {page}")


def read(file: str) -> str:
    """The file's text (UTF-8, with or without the byte order mark AEM's export may start with)."""
    try:
        return Path(file).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CommandError(f"cannot read {file}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"{file} is not UTF-8 text (byte {exc.start}); export the CSV as UTF-8") from None
