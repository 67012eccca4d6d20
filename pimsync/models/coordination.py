"""Rows that coordinate processes across nodes: shared access tokens, heartbeats, 429 pauses,
the journal's cursor."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from pimsync.models.leases import Leased


class AccessToken(models.Model):
    """An access token of one system (`ims`, `akeneo`), shared by every process and encrypted at
    rest with what renews it (Akeneo's refresh token); `refreshing_until` lets one process at a
    time renew it (`pimsync.outbound.tokens.SharedToken`)."""

    name = models.CharField(max_length=64, primary_key=True)
    encrypted = models.BinaryField()
    expires_at = models.DateTimeField()
    refreshing_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} token (expires {self.expires_at:%Y-%m-%d %H:%M})"


class Heartbeat(models.Model):
    """A time a worker wrote to show it is alive, one row per kind of writer.

    `sweeper`: when the sweeper last ran (it runs every minute; `detail` says what it did).
    `drain`: a time in the future, up to which a running drain promises to keep looking for new
    events (`pimsync.wakeups.DrainPromise`); it only moves forward.
    `drain queued`: the time up to which the drain a web process has just queued will look for new
    events (`DrainPromise.promise_queued`); it only moves forward.
    `purge`: when the retention purge last ran and what it deleted (`pimsync.retention`).
    """

    SWEEPER = "sweeper"
    DRAIN = "drain"
    DRAIN_QUEUED = "drain queued"
    # A worker silent for longer than this is reported down (healthz, the dashboard).
    STALE = timedelta(minutes=3)

    name = models.CharField(max_length=64, primary_key=True)
    at = models.DateTimeField()
    detail = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%H:%M:%S}"

    @classmethod
    def beat(cls, name: str, detail: str = "") -> None:
        """Record that `name` is alive now."""
        cls.objects.update_or_create(name=name, defaults={"at": timezone.now(), "detail": detail[:255]})

    @classmethod
    def worker_last_seen(cls, beats=None):
        """When a worker last did something: the sweeper's beat, or a drain (whose row holds the
        time it promised to poll until, written while it runs). `beats`: rows already read (a page
        that shows other heartbeats too reads them all at once); others than these are ignored."""
        now = timezone.now()
        seen = []
        if beats is None:
            beats = cls.objects.filter(name__in=[cls.SWEEPER, cls.DRAIN])
        for beat in (beat for beat in beats if beat.name in (cls.SWEEPER, cls.DRAIN)):
            at = (
                beat.at
                if beat.name == cls.SWEEPER
                else beat.at - timedelta(seconds=settings.PIMSYNC_DRAIN_LINGER_SECONDS)
            )
            seen.append(min(at, now))
        return max(seen, default=None)


class Pause(models.Model):
    """An outside system asked pimsync to slow down (it answered 429): no call to it goes out,
    from any process on any node, before `until` (`pimsync.outbound.throttle`). One row per system; the
    end only ever moves later."""

    name = models.CharField(max_length=32, primary_key=True, help_text="The system: aem, pim, akeneo")
    until = models.DateTimeField(help_text="No call to the system before this")
    reason = models.CharField(max_length=255, blank=True, help_text="The answer that asked for the pause")
    since = models.DateTimeField(default=timezone.now, help_text="When the answer that set `until` came")

    def __str__(self) -> str:
        return f"{self.name} paused until {self.until:%H:%M:%S}"


class JournalCursor(Leased, models.Model):
    """Where pimsync is in the registration's I/O Events journal; one row, `SINGLETON_PK`.

    `position` is saved only after the events before it are committed, so a crash re-reads a page
    rather than skipping it. Its lease lets one puller at a time work across every node.
    """

    SINGLETON_PK = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_PK)
    position = models.CharField(max_length=1024, blank=True, help_text="The journal position read up to ('' : none)")
    # The URL to pull next: the journal's own `next` link, which may point anywhere on the journal's
    # origin (Adobe's answers send `/events-fast/…` while ADOBE_JOURNAL_URL is `/events/…`).
    next_url = models.CharField(max_length=2048, blank=True)
    # The ADOBE_JOURNAL_URL the cursor started from: another one names another registration, whose
    # positions mean nothing here ("": not known yet, adopted by the next pull).
    started_from = models.CharField(max_length=2048, blank=True)
    # When the position last moved, and when a pull last checked whether a position that stopped
    # moving was purged (a purged position may answer 204 rather than 410).
    advanced_at = models.DateTimeField(null=True, blank=True)
    probed_at = models.DateTimeField(null=True, blank=True)
    newest_event_time = models.DateTimeField(null=True, blank=True, help_text="`time` of the newest journal event")
    last_pulled_at = models.DateTimeField(null=True, blank=True, help_text="When a pull last reached the journal")
    caught_up_at = models.DateTimeField(null=True, blank=True, help_text="When a pull last reached the end (204)")
    last_error = models.TextField(blank=True)
    not_before = models.DateTimeField(null=True, blank=True, help_text="No pull before this (retry-after)")
    expired_at = models.DateTimeField(
        null=True, blank=True, help_text="When the journal last said the position had expired (410, or purged)"
    )
    pulled_total = models.BigIntegerField(default=0, help_text="Journal events read since the cursor was created")
    lease_token = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"journal at {self.position or 'the start'}"

    @classmethod
    def load(cls) -> JournalCursor:
        """The cursor row, created on first use."""
        cursor, _ = cls.objects.get_or_create(pk=cls.SINGLETON_PK)
        return cursor
