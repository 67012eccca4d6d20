"""`manage.py check_alerts`: evaluate the alert conditions once and send what is due.

The workers run the same check every minute; a worker cannot report its own death, so run this
from cron or a systemd timer on the web node too (every few minutes) to hear about silent workers.
It prints nothing when nothing changed and nothing was sent (`-v 2` prints every run), so a timer's
journal holds only what happened. `--test` sends a test message through every configured channel.
"""

from django.core.management.base import BaseCommand, CommandError

from pimsync.alerts import channels, monitor

# What monitor.check() says when no alert opened or resolved and no message went out.
NOTHING_HAPPENED = "alerts: no change; 0 message(s) sent"


class Command(BaseCommand):
    help = "Evaluate the alert conditions, open and resolve alerts, and send their messages (docs/operations.md)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--test", action="store_true", help="send a test message through every configured channel, and only that"
        )

    def handle(self, *args, test, verbosity, **options):
        if test:
            self._test()
            return
        result = monitor.check()
        if result != NOTHING_HAPPENED or verbosity > 1:
            self.stdout.write(result)

    def _test(self) -> None:
        """One test message per channel; exit status 1 when none is configured or one fails."""
        configured = channels.configured()
        if not configured:
            raise CommandError("no alert channel is configured: set PIMSYNC_ALERT_EMAILS or PIMSYNC_ALERT_WEBHOOK_URL")
        subject = "[pimsync] Test message"
        text = "A test of pimsync's alert channels (manage.py check_alerts --test); no alert is open because of it."
        failed = []
        for channel in configured:
            try:
                channels.send(channel, subject, text)
            except Exception as exc:  # report every channel, whatever broke one of them
                reason = exc if isinstance(exc, channels.ChannelError) else type(exc).__name__
                self.stderr.write(f"FAIL {channel}: {reason}")
                failed.append(channel)
            else:
                self.stdout.write(f"OK   {channel}: test message sent")
        if failed:
            raise CommandError(f"the test message did not go out on: {', '.join(failed)}")
