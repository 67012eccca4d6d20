"""`manage.py purge_events`: delete what is past its retention now (the daily schedule does the same)."""

from django.core.management.base import BaseCommand

from pimsync.retention import purge, retention_days, retention_failed_days


class Command(BaseCommand):
    help = (
        "Delete finished events (with their attempts) past PIMSYNC_RETENTION_DAYS, failed ones past "
        "PIMSYNC_RETENTION_FAILED_DAYS, expired sessions, and old admin log and task history."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted; change nothing")

    def handle(self, *args, dry_run, **options):
        self.stdout.write(
            f"Events are kept {retention_days()} days after they finish, failed ones {retention_failed_days()}."
        )
        # No time budget: unlike the scheduled task, a command may run until everything is gone.
        result = purge(dry_run=dry_run)
        for table, count in result.deleted.items():
            self.stdout.write(f"{table}: {count:,} {'would be deleted' if dry_run else 'deleted'}")
        if not dry_run:
            self.stdout.write(self.style.SUCCESS(f"Purged in {result.seconds:.1f} s."))
