"""`manage.py pull_journal`: pull the I/O Events journal now, or move the cursor first."""

from django.core.management.base import BaseCommand, CommandError

from pimsync.adobe import journal
from pimsync.outbound.redaction import redact_url


class Command(BaseCommand):
    help = (
        "Pull the registration's I/O Events journal (ADOBE_JOURNAL_URL) until its end, storing every event "
        "the webhook missed. Optionally move the cursor first: to the oldest event, the end, or back in time."
    )

    def run_from_argv(self, argv):
        """Let `--seek -PT2H` work as written: argparse would take the duration for an option."""
        joined = []
        for arg in argv:
            if joined and joined[-1] == "--seek" and arg.startswith("-P"):
                joined[-1] = f"--seek={arg}"
            else:
                joined.append(arg)
        super().run_from_argv(joined)

    def add_arguments(self, parser):
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--from-start", action="store_true", help="start again at the oldest event (7 days)")
        where.add_argument("--latest", action="store_true", help="skip to the end: only events from now on")
        where.add_argument("--seek", metavar="DURATION", help="go back in time, e.g. -PT2H or -P1D (PT2H works too)")

    def handle(self, *args, from_start, latest, seek, **options):
        if not journal.enabled():
            raise CommandError(
                "ADOBE_JOURNAL_URL is not set: there is no journal to pull (docs/deployment.md: Connect Adobe)."
            )
        if seek and not seek.startswith("-"):
            seek = "-" + seek
        mode = "start" if from_start else "latest" if latest else "seek" if seek else None
        if mode:
            try:
                url = journal.reposition(mode, seek or "")
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"Cursor moved: the next pull reads {redact_url(url)}")
        # No page budget: a command may work off a whole backlog.
        result = journal.pull(max_pages=10**6, budget_seconds=24 * 3600)
        self.stdout.write(result.summary())
        if result.outcome.startswith("failed"):
            raise CommandError("the pull failed; see above")
