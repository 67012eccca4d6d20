"""`manage.py retry_events`: what the dashboard's Retry button does, for many events."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import make_aware

from pimsync.models import RETRYABLE, Event
from pimsync.pipeline import retry


class Command(BaseCommand):
    help = "Send events back to the worker, keeping their history. Default: every failed event."

    def add_arguments(self, parser):
        parser.add_argument("--status", default="failed", choices=[str(s) for s in RETRYABLE])
        parser.add_argument("--since", help="only events received at or after this ISO date/time")
        parser.add_argument("--reason", help="only events whose reason contains this text")
        parser.add_argument("--ids", nargs="+", help="event ids (Adobe's eventid) or row ids")
        parser.add_argument("--dry-run", action="store_true", help="say how many would be retried")

    def handle(self, *args, status, since, reason, ids, dry_run, **options):
        events = Event.objects.filter(status=status)
        if since:
            when = parse_datetime(since) or (parse_date(since) and parse_datetime(since + "T00:00:00"))
            if when is None:
                raise CommandError(f"--since {since!r} is not an ISO date or date-time")
            events = events.filter(received_at__gte=when if when.tzinfo else make_aware(when))
        if reason:
            events = events.filter(reason__icontains=reason)
        if ids:
            row_ids = [int(i) for i in ids if i.isdigit()]
            events = events.filter(event_id__in=ids) | events.filter(pk__in=row_ids)
        selected = list(events.order_by("received_at"))
        if dry_run:
            self.stdout.write(f"{len(selected)} event(s) would be retried.")
            return
        count = 0
        for start in range(0, len(selected), 500):
            count += retry(selected[start : start + 500])
        self.stdout.write(self.style.SUCCESS(f"Retried {count} event(s)."))
