"""Reconciliation with the registration's I/O Events journal: the webhook is the fast path, the
journal is the guarantee (docs/adobe-events.md).

`pull()` follows the journal's `next` links until it answers 204 (the end), storing every event
through the same parse/triage/store path as a webhook delivery; an event the webhook stored
first is a duplicate, and a webhook delivery of an event the journal stored first is one too.

- The cursor (`JournalCursor`) moves only after a page's events are committed: a crash between
  the two re-reads the page, and the event ids make the second read a no-op.
- One puller at a time across every node: the cursor row carries a lease, taken with a
  conditional UPDATE; a puller that lost its lease saves nothing.
- `next` links are followed wherever they point on the journal's origin: Adobe's answers send
  them under `/events-fast/…` while the journal's URL is `/events/…`. Only a change of
  ADOBE_JOURNAL_URL itself (against the URL the cursor started from) restarts the reading.
- `retry-after` on 204 and 429 is stored as `not_before`; nobody pulls before it.
- 410 Gone (the position is older than the journal's 7 days) is recorded in `expired_at`,
  logged as an error, and the pull continues from the oldest event still available. A purged
  position might answer 204 instead (an empty journal does, called without a position): a
  position that has not moved for longer than the journal keeps events is checked once an hour,
  through the 204's `validate` link and a look at the oldest events, so it never waits forever.

The alerts (`pimsync.alerts.monitor`) read plain values of the cursor: `caught_up_at` and `expired_at`.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from pimsync.adobe import events
from pimsync.adobe import journal_api as client
from pimsync.models import Arrival, Event, JournalCursor
from pimsync.outbound import http
from pimsync.outbound.redaction import redact_url

log = logging.getLogger(__name__)

# Pages per run: a backlog of a week is worked off over several runs rather than one long task.
MAX_PAGES = 200
# Wait this long after a 204 without retry-after, or a 429 without one.
DEFAULT_RETRY_AFTER = 10
# How long the journal keeps events ("up to 7 days":
# https://developer.adobe.com/events/docs/guides/api/journaling-api/), and how often a position
# that stopped moving for longer is checked for having been purged.
RETENTION = timedelta(days=7)
PROBE_EVERY = timedelta(hours=1)
# `seek` takes a negative ISO-8601 duration such as -PT2H or -P1D.
SEEK = re.compile(r"-P(\d{1,4}D)?(T(\d{1,5}H)?(\d{1,6}M)?(\d{1,7}S)?)?")


@dataclass
class PullResult:
    """What one run did."""

    pages: int = 0
    events: int = 0
    stored: int = 0
    duplicates: int = 0
    unreadable: int = 0
    outcome: str = ""

    def summary(self) -> str:
        """One line for logs, django-q2 results and the command."""
        return (
            f"{self.outcome}: {self.pages} page(s), {self.events} event(s) read, {self.stored} new, "
            f"{self.duplicates} already known, {self.unreadable} unreadable"
        )


def enabled() -> bool:
    """Whether the journal is configured at all."""
    return bool(settings.ADOBE_JOURNAL_URL)


def start_url(**params: str) -> str:
    """The journal URL with query parameters (none: the oldest available event)."""
    base = settings.ADOBE_JOURNAL_URL
    if not params:
        return base
    return base + ("&" if "?" in base else "?") + urlencode(params)


def lag_seconds(cursor: JournalCursor | None = None, now: datetime | None = None) -> float | None:
    """Seconds since a pull last reached the end of the journal (None: never)."""
    cursor = cursor or JournalCursor.load()
    if cursor.caught_up_at is None:
        return None
    return max(0.0, ((now or timezone.now()) - cursor.caught_up_at).total_seconds())


def state(now: datetime | None = None) -> dict:
    """Where the journal pull stands, for the overview and /metrics (one query; none when off)."""
    if not enabled():
        return {"enabled": False}
    now = now or timezone.now()
    # Events the webhook never delivered (the journal brought them first): non-zero means it missed
    # some. Counted in the cursor's own query, each through the `event_arrival` index.
    only_journal = {
        f"only_journal_{name}": Coalesce(
            Subquery(
                Event.objects.filter(arrived_by=Arrival.JOURNAL, received_at__gte=now - timedelta(days=days))
                .values("arrived_by")
                .annotate(n=Count("id"))
                .values("n")
            ),
            0,
        )
        for name, days in (("day", 1), ("week", 7))
    }
    cursor = JournalCursor.objects.annotate(**only_journal).filter(pk=JournalCursor.SINGLETON_PK).first()
    if cursor is None:  # before the first pull: nothing pulled, nothing counted
        cursor = JournalCursor.load()
        cursor.only_journal_day = cursor.only_journal_week = 0
    return {
        "enabled": True,
        "position": cursor.position,
        "newest_event_time": cursor.newest_event_time,
        "last_pulled_at": cursor.last_pulled_at,
        "caught_up_at": cursor.caught_up_at,
        "lag_seconds": lag_seconds(cursor, now),
        "expired_at": cursor.expired_at,
        "last_error": cursor.last_error,
        "not_before": cursor.not_before,
        "pulled_total": cursor.pulled_total,
        "only_journal_day": cursor.only_journal_day,
        "only_journal_week": cursor.only_journal_week,
    }


def reposition(mode: str, seek: str = "") -> str:
    """Point the cursor at the oldest event ("start"), the end ("latest") or `seek` back ("seek")."""
    if mode == "start":
        url = start_url()
    elif mode == "latest":
        url = start_url(latest="true")
    elif mode == "seek":
        if not SEEK.fullmatch(seek or "") or seek in ("-P", "-PT"):
            raise ValueError(f"--seek takes a negative ISO-8601 duration such as -PT2H or -P1D, not {seek!r}")
        url = start_url(seek=seek)
    else:
        raise ValueError(f"unknown position {mode!r}")
    JournalCursor.load()
    # Only while no puller holds the lease: a running pull would save its own position over ours.
    if not JournalCursor.unleased(JournalCursor.SINGLETON_PK).update(
        next_url=url,
        position="",
        not_before=None,
        caught_up_at=None,
        started_from=settings.ADOBE_JOURNAL_URL,
        advanced_at=timezone.now(),
    ):
        raise ValueError("a journal pull is running on another node right now; try again when it has finished")
    return url


def is_due(cursor: JournalCursor, now: datetime) -> bool:
    """For the schedule: a run is due unless the journal asked to wait, or the last run reached
    its end less than PIMSYNC_JOURNAL_POLL_SECONDS ago."""
    if cursor.not_before and cursor.not_before > now:
        return False
    if cursor.caught_up_at is None or (cursor.last_pulled_at and cursor.last_pulled_at > cursor.caught_up_at):
        return True  # never reached the end, or the last run stopped before it: go on at once
    # A few seconds of slack: the schedule ticks every minute and a 60 s interval must not skip a tick.
    return cursor.caught_up_at + timedelta(seconds=settings.PIMSYNC_JOURNAL_POLL_SECONDS - 5) <= now


def pull_if_due() -> str:
    """The scheduled task's body: off without ADOBE_JOURNAL_URL, skipped when not due."""
    if not enabled():
        return "journal off: ADOBE_JOURNAL_URL is not set"
    if not is_due(JournalCursor.load(), timezone.now()):
        return "journal pull not due yet"
    return pull().summary()


def pull(max_pages: int = MAX_PAGES, budget_seconds: float | None = None) -> PullResult:
    """Follow the journal from the cursor until it answers 204, `max_pages` or the time budget."""
    result = PullResult()
    if not enabled():
        result.outcome = "off (ADOBE_JOURNAL_URL is not set)"
        return result
    token = JournalCursor.acquire(JournalCursor.SINGLETON_PK)
    if token is None:
        result.outcome = "skipped: another puller holds the journal"
        return result
    if budget_seconds is None:
        budget_seconds = settings.PIMSYNC_TASK_TIMEOUT_SECONDS / 2
    deadline = time.monotonic() + budget_seconds
    try:
        _run(token, result, max_pages, deadline)
    finally:
        JournalCursor.release(JournalCursor.SINGLETON_PK, token)
    log.info("journal pull %s", result.summary())
    return result


def _run(token: str, result: PullResult, max_pages: int, deadline: float) -> None:
    while True:
        cursor = JournalCursor.objects.get(pk=JournalCursor.SINGLETON_PK)
        if cursor.lease_token != token:
            result.outcome = "stopped: the lease passed to another puller"
            return
        now = timezone.now()
        if cursor.not_before and cursor.not_before > now:
            result.outcome = f"waiting: the journal asked for no pull before {cursor.not_before.isoformat()}"
            return
        if result.pages >= max_pages or time.monotonic() > deadline:
            result.outcome = "paused: page or time budget used up, the next run continues"
            return
        url = _next_url(token, cursor)
        try:
            page = client.fetch(url)
        except http.HttpError as exc:
            _save(token, last_error=exc.message, last_pulled_at=now)
            log.warning("journal pull failed: %s", exc.message)
            result.outcome = f"failed: {exc.message}"
            return
        result.pages += 1
        if not _handle(token, page, result, now):
            return


def _next_url(token: str, cursor: JournalCursor) -> str:
    """Where to read next: the journal's own `next` link, or (without one) from the saved position;
    from the oldest event of a journal the cursor did not start from."""
    configured = settings.ADOBE_JOURNAL_URL
    if cursor.started_from != configured:
        # A cursor from before pimsync remembered where it started belongs to this journal when
        # its link stays on the journal's origin.
        earlier = bool(cursor.next_url or cursor.position) and (
            not cursor.next_url or http.same_origin(cursor.next_url, configured)
        )
        if cursor.started_from or not earlier:
            if cursor.started_from or cursor.next_url:
                # ADOBE_JOURNAL_URL now names another registration: its positions mean nothing there.
                log.warning("ADOBE_JOURNAL_URL changed; reading the new journal from its oldest event")
            _save(token, started_from=configured, next_url="", position="", advanced_at=timezone.now())
            return start_url()
        _save(token, started_from=configured, advanced_at=cursor.advanced_at or timezone.now())
    if cursor.next_url:
        return cursor.next_url
    return start_url(since=cursor.position) if cursor.position else start_url()


def _handle(token: str, page: client.Page, result: PullResult, now: datetime) -> bool:
    """Act on one page; return whether to go on to the next."""
    if page.status == 200:
        _store_page(token, page, result, now)
        return True
    if page.status == 204:
        if _purged(token, page, now):
            return True
        wait = page.retry_after if page.retry_after is not None else DEFAULT_RETRY_AFTER
        _save(
            token,
            next_url=page.next_url or page.url,
            not_before=now + timedelta(seconds=wait),
            last_pulled_at=now,
            caught_up_at=now,
            last_error="",
        )
        result.outcome = f"at the end of the journal; next pull in {wait:g}s or later"
        return False
    if page.status == 429:
        wait = page.retry_after if page.retry_after is not None else DEFAULT_RETRY_AFTER
        _save(
            token,
            not_before=now + timedelta(seconds=wait),
            last_pulled_at=now,
            last_error=f"the journal is rate limiting pimsync (429); waiting {wait:g}s",
        )
        result.outcome = f"rate limited: waiting {wait:g}s"
        return False
    # 410 Gone: the position is older than the journal keeps; events in between are lost to the
    # journal too. Continue from the oldest event still there, and say so loudly.
    _restart_expired(token, f"410 Gone at {redact_url(page.url)}", now)
    # The oldest position itself gone: asking again at once would only get the same answer.
    return page.url != start_url()


def _restart_expired(token: str, what: str, now: datetime) -> None:
    message = f"the journal position has expired ({what}); continuing from the oldest event"
    log.error(message)
    _save(
        token,
        next_url=start_url(),
        position="",
        expired_at=now,
        advanced_at=now,
        last_error=message,
        last_pulled_at=now,
    )


def _purged(token: str, page: client.Page, now: datetime) -> bool:
    """Whether the position of this 204 was purged rather than at the end (then restarted).

    Checked only for a position that has not moved for longer than the journal keeps events, at
    most once per PROBE_EVERY. Its `validate` link answering 404 or 410 says so (Adobe documents
    the link, not its answers: any other answer says nothing); so do events at the oldest
    position: everything still in the journal arrived after ours was read, so a position that
    was still valid would have led to them."""
    cursor = JournalCursor.objects.get(pk=JournalCursor.SINGLETON_PK)
    if page.url == start_url() or cursor.advanced_at is None or now - cursor.advanced_at < RETENTION:
        return False
    if cursor.probed_at and now - cursor.probed_at < PROBE_EVERY:
        return False
    _save(token, probed_at=now)
    try:
        if page.validate_url and client.validate(page.validate_url) in (404, 410):
            _restart_expired(token, f"its validate link answered that {redact_url(page.url)} is gone", now)
            return True
        oldest = client.fetch(start_url(limit="1"))
    except http.HttpError as exc:
        log.warning("could not check whether the journal position was purged: %s", exc.message)
        return False
    if oldest.status == 200 and oldest.entries:
        _restart_expired(token, f"204 at {redact_url(page.url)} although the journal holds newer events", now)
        return True
    return False


def _store_page(token: str, page: client.Page, result: PullResult, now: datetime) -> None:
    """Commit the page's events, then (and only then) move the cursor past them."""
    incoming, newest = [], None
    for position, event in page.entries:
        try:
            parsed = events.parse(events.events_in(event))
        except events.EventError as exc:
            # The webhook would have refused it with 400 too; it must not hold up the events behind it.
            log.warning("journal event at %s is unreadable: %s", position[:100], exc)
            result.unreadable += 1
            continue
        incoming.extend(parsed)
        times = [item.fields["time"] for item in parsed if item.fields["time"]]
        newest = max([newest, *times] if newest else times, default=newest)
    stored = events.store(incoming, {}, arrived_by=Arrival.JOURNAL) if incoming else None
    result.events += len(page.entries)
    result.stored += len(stored.accepted) if stored else 0
    result.duplicates += stored.duplicates if stored else 0
    after_commit(page)
    changes = {"position": page.last, "next_url": page.next_url, "last_pulled_at": now, "last_error": ""}
    if page.entries:
        changes["advanced_at"] = now
    cursor = JournalCursor.objects.get(pk=JournalCursor.SINGLETON_PK)
    if newest and (cursor.newest_event_time is None or newest > cursor.newest_event_time):
        changes["newest_event_time"] = newest
    _save(token, pulled_total=cursor.pulled_total + len(page.entries), **changes)


def after_commit(page: client.Page) -> None:
    """Between a page's commit and the cursor's save (tests make a crash happen here)."""


def _save(token: str, **changes) -> bool:
    """Update the cursor if this puller still holds its lease, and extend the lease (a long backlog
    read by the command outlasts one task timeout)."""
    lease = timedelta(seconds=settings.PIMSYNC_TASK_TIMEOUT_SECONDS)
    return JournalCursor.renew(JournalCursor.SINGLETON_PK, token, lease, **changes)
