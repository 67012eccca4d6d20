"""`manage.py poll_pim`: poll the PIM for changed products now (what the schedule does every few minutes)."""

from django.core.management.base import BaseCommand, CommandError

from pimsync.pim import notifications, poll


class Command(BaseCommand):
    help = (
        "Handle waiting Akeneo notifications, then hand the products changed in the PIM since the last poll "
        "to re-syncs (PIM_CONNECTOR=akeneo). --pages bounds the pages of 100 products read in this run."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pages", type=int, default=poll.MAX_PAGES, help="at most this many pages")

    def handle(self, *args, pages, **options):
        if pages < 1:
            raise CommandError("--pages must be at least 1")
        if not poll.polling():
            raise CommandError("the PIM connector cannot list changed products (only PIM_CONNECTOR=akeneo can)")
        self.stdout.write(notifications.handle_pending())
        result = poll.poll(max_pages=pages)
        self.stdout.write(result)
        if "stopped:" in result:
            raise CommandError("the poll stopped; see above")
