"""`manage.py check_alerts`: evaluate the alert conditions once and send what is due.

The workers run the same check every minute; a worker cannot report its own death, so run this
from cron on the web node too (every few minutes) to hear about silent workers.
"""

from django.core.management.base import BaseCommand

from pimsync.alerts import monitor


class Command(BaseCommand):
    help = "Evaluate the alert conditions, open and resolve alerts, and send their messages (README: Alerts)."

    def handle(self, *args, **options):
        self.stdout.write(monitor.check())
