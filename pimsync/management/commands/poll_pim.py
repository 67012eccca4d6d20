"""`manage.py poll_pim`: poll the PIM for changed products now (what the schedule does every few minutes)."""

from django.core.management.base import BaseCommand, CommandError

from pimsync import pim_notifications, pim_poll


class Command(BaseCommand):
    help = (
        "Handle waiting Akeneo notifications, then hand the products changed in the PIM since the last poll "
        "to re-syncs (PIM_CONNECTOR=akeneo). --pages bounds the pages of 100 products read in this run."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pages", type=int, default=pim_poll.MAX_PAGES, help="at most this many pages")

    def handle(self, *args, pages, **options):
        if pages < 1:
            raise CommandError("--pages must be at least 1")
        if not pim_poll.polling():
            raise CommandError("the PIM connector cannot list changed products (only PIM_CONNECTOR=akeneo can)")
        self.stdout.write(pim_notifications.handle_pending())
        result = pim_poll.poll(max_pages=pages)
        self.stdout.write(result)
        if "stopped:" in result:
            raise CommandError("the poll stopped; see above")
