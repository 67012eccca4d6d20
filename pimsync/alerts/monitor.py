"""Alerts: notice when something needs a person, and tell one (by e-mail and/or a chat webhook).

Each condition is a small function of the time that answers (firing, summary, link) from a
bounded, indexed query. `check()` runs them all (every minute, `pimsync.tasks.check_alerts`, and
`manage.py check_alerts` for cron): a condition that starts firing opens an `Alert`, one that stops
resolves it. One message goes out when an alert opens and one when it resolves, none while it
lasts; a message a channel could not take is tried again at every check while the alert is open
and for RESEND_WINDOW after it resolved. A silenced alert (`Alert.silence`) sends nothing until its
silence ends; then one still open sends its message, and one that ended meanwhile only tells the
channels that heard it begin that it ended. Thresholds and channels: docs/operations.md, "Alerts".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.urls import reverse
from django.utils import timezone

from pimsync import inbound
from pimsync.alerts import channels
from pimsync.models import Alert, Attempt, Event, Heartbeat, JournalCursor, Status

log = logging.getLogger(__name__)

# How long after an alert resolved an undelivered message about it is still worth sending.
RESEND_WINDOW = timedelta(days=1)
# At most this many alerts are looked at for undelivered messages per check.
RESEND_BATCH = 100
# Counts shown in summaries stop here: the exact size of a flood does not change what to do.
COUNT_CAP = 10_000
OPENED, RESOLVED = "opened", "resolved"


class Verdict(NamedTuple):
    """What a condition says now: whether it fires, what is wrong, and the dashboard path showing it."""

    firing: bool
    summary: str = ""
    link: str = ""


@dataclass(frozen=True)
class Condition:
    key: str
    title: str
    evaluate: Callable[[datetime], Verdict]


def _events(**filters) -> str:
    """The event list's path, filtered."""
    query = "&".join(f"{name}={value}" for name, value in filters.items())
    return reverse("admin:pimsync_event_changelist") + (f"?{query}" if query else "")


def _when(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def failures(now) -> Verdict:
    """More than PIMSYNC_ALERT_FAILURES events failed in the last PIMSYNC_ALERT_FAILURES_MINUTES."""
    limit, minutes = settings.PIMSYNC_ALERT_FAILURES, settings.PIMSYNC_ALERT_FAILURES_MINUTES
    recent = Event.objects.filter(status=Status.FAILED, finished_at__gte=now - timedelta(minutes=minutes))
    count = recent.values("id")[: limit + 1].count()  # the `finished_at` index, read no further than needed
    if count <= limit:
        return Verdict(False)
    return Verdict(
        True,
        f"More than {limit} events failed in the last {minutes} minutes.",
        _events(status__exact=Status.FAILED),
    )


def worker_silent(now) -> Verdict:
    """No worker (sweeper or drain) has reported for Heartbeat.STALE (3 minutes)."""
    seen = Heartbeat.worker_last_seen()
    if seen is not None and now - seen < Heartbeat.STALE:
        return Verdict(False)
    minutes = int(Heartbeat.STALE.total_seconds() // 60)
    if seen is None:  # a fresh start: no worker has ever reported to this database
        summary = (
            "No worker has reported yet: events are stored but not enriched until one runs (`manage.py qcluster`)."
        )
    else:
        summary = (
            f"No worker has reported for more than {minutes} minutes (last seen {_when(seen)}): "
            "events are stored but not enriched."
        )
    return Verdict(True, summary, reverse("admin:index"))


def retries_due(now) -> Verdict:
    """Events due for an attempt more than PIMSYNC_ALERT_DUE_MINUTES ago are still waiting."""
    minutes = settings.PIMSYNC_ALERT_DUE_MINUTES
    late = Event.objects.due(now).filter(next_attempt_at__lt=now - timedelta(minutes=minutes))
    oldest = late.order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first()
    if oldest is None:
        return Verdict(False)
    count = late.values("id")[:COUNT_CAP].count()
    return Verdict(
        True,
        f"{count}{'+' if count == COUNT_CAP else ''} events have waited more than {minutes} minutes "
        f"past their due time (the oldest since {_when(oldest)}).",
        reverse("admin:index"),
    )


def signature_refusals(now) -> Verdict:
    """More than PIMSYNC_ALERT_SIGNATURE_FAILURES deliveries refused 401 in the failures window."""
    limit, minutes = settings.PIMSYNC_ALERT_SIGNATURE_FAILURES, settings.PIMSYNC_ALERT_FAILURES_MINUTES
    count = inbound.recent_refusals(now - timedelta(minutes=minutes))
    if count <= limit:
        return Verdict(False)
    return Verdict(
        True,
        f"{count} webhook deliveries were refused as not authentic in the last {minutes} minutes "
        "(a wrong ADOBE_CLIENT_ID, a misconfigured or hostile sender).",
    )


class JournalState(NamedTuple):
    """What the alert needs to know of the journal puller's cursor."""

    caught_up_at: datetime | None
    expired_at: datetime | None


def journal_state() -> JournalState | None:
    """When a pull last reached the end of the journal and when it last answered 410; None before
    the first pull."""
    row = JournalCursor.objects.filter(pk=JournalCursor.SINGLETON_PK).first()
    return None if row is None else JournalState(row.caught_up_at, row.expired_at)


def journal_behind(now) -> Verdict:
    """The journal (ADOBE_JOURNAL_URL set) was not read to its end for PIMSYNC_ALERT_JOURNAL_LAG_MINUTES, or
    its position expired (410) within that time."""
    state = journal_state() if settings.ADOBE_JOURNAL_URL else None
    if state is None:
        return Verdict(False)
    window = timedelta(minutes=settings.PIMSYNC_ALERT_JOURNAL_LAG_MINUTES)
    if state.expired_at and now - state.expired_at < window:
        return Verdict(
            True,
            f"The journal position expired (410) at {_when(state.expired_at)}: events older than the "
            "journal keeps may have been missed; pulling goes on from the oldest available.",
            reverse("admin:index"),
        )
    if state.caught_up_at is None or now - state.caught_up_at >= window:
        reached = (
            "has not reached the end of the journal yet"
            if state.caught_up_at is None
            else f"has not reached the end of the journal since {_when(state.caught_up_at)}"
        )
        return Verdict(
            True,
            f"The journal pull {reached}: events the webhook missed are not being recovered.",
            reverse("admin:index"),
        )
    return Verdict(False)


def _outage(system: str) -> models.Q:
    """Attempts that could not reach `system`: no connection, no answer in time, or a 5xx."""
    return models.Q(error_class__in=[f"{system}_unreachable", f"{system}_timeout"]) | models.Q(
        error_class__startswith=f"{system}_5"
    )


def unreachable(system: str, name: str) -> Callable[[datetime], Verdict]:
    """A condition: every attempt for PIMSYNC_ALERT_UNREACHABLE_MINUTES failed to reach `system`."""

    def evaluate(now) -> Verdict:
        minutes = settings.PIMSYNC_ALERT_UNREACHABLE_MINUTES
        # The last hour at least, through the `started_at` index: enough to see an outage that
        # retries with long backoff only touch now and then.
        recent = Attempt.objects.filter(started_at__gte=now - timedelta(minutes=max(2 * minutes, 60)))
        done = (Attempt.Outcome.SUCCEEDED, Attempt.Outcome.UNCHANGED)
        successes = recent.filter(outcome__in=done).order_by("-started_at")
        last_success = successes.values_list("started_at", flat=True).first()
        failing = recent.filter(_outage(system))
        if last_success is not None:
            failing = failing.filter(started_at__gt=last_success)
        first = failing.order_by("started_at").values_list("started_at", "error_class").first()
        if first is None or now - first[0] < timedelta(minutes=minutes):
            return Verdict(False)
        return Verdict(
            True,
            f"{name} has not been reached since {_when(first[0])} (more than {minutes} minutes; "
            f"first error {first[1]}), and no enrichment has succeeded since.",
            _events(error=system),
        )

    return evaluate


CONDITIONS = (
    Condition("failures", "Events are failing", failures),
    Condition("worker_silent", "No worker heartbeat", worker_silent),
    Condition("retries_due", "Retries are piling up", retries_due),
    Condition("journal", "The I/O Events journal is behind or expired", journal_behind),
    Condition("signature_refusals", "Webhook deliveries refused as not authentic", signature_refusals),
    Condition("pim_unreachable", "The PIM is unreachable", unreachable("pim", "The PIM")),
    Condition("aem_unreachable", "AEM is unreachable", unreachable("aem", "AEM")),
)
TITLES = {condition.key: condition.title for condition in CONDITIONS}


def check(now=None, conditions=CONDITIONS) -> str:
    """Evaluate the conditions, open and resolve alerts, deliver the messages not yet delivered."""
    now = now or timezone.now()
    changes = []
    for condition in conditions:
        try:
            verdict = condition.evaluate(now)
        except Exception:
            # One condition that cannot be evaluated (a fault in its query) keeps its alert as it is
            # and must not silence the others.
            log.exception("cannot evaluate the alert condition %s", condition.key)
            continue
        change = record(condition, verdict, now)
        if change:
            changes.append(f"{condition.key} {change}")
    sent = deliver(now)
    inbound.forget_old_refusals(now)
    return f"alerts: {', '.join(changes) or 'no change'}; {sent} message(s) sent"


def record(condition: Condition, verdict: Verdict, now) -> str:
    """Open or resolve the condition's alert; return `opened`, `resolved` or "" (no change)."""
    current = Alert.objects.filter(condition=condition.key, resolved_at__isnull=True).first()
    if verdict.firing and current is None:
        try:
            with transaction.atomic():
                Alert.objects.create(
                    condition=condition.key,
                    summary=verdict.summary,
                    link=verdict.link[:500],
                    opened_at=now,
                    last_checked_at=now,
                    # A condition that ends and starts again while someone silenced it stays silent.
                    **Alert.silence_of(condition.key, now),
                )
        except IntegrityError:  # a checker on another node opened it a moment ago
            return ""
        return OPENED
    if current is None:
        return ""
    if verdict.firing:
        Alert.objects.filter(pk=current.pk).update(last_checked_at=now)
        return ""
    still_open = Alert.objects.filter(pk=current.pk, resolved_at__isnull=True)
    return RESOLVED if still_open.update(resolved_at=now, last_checked_at=now) else ""


def deliver(now) -> int:
    """Send every message a configured channel has not yet taken; return how many went out."""
    configured = channels.configured()
    if not configured:
        return 0
    recent = models.Q(resolved_at__isnull=True) | models.Q(resolved_at__gte=now - RESEND_WINDOW)
    # Newest first: a condition flapping all day must not keep a fresh alert's message waiting
    # behind a hundred older ones.
    ids = Alert.objects.filter(recent).order_by("-opened_at", "-id").values_list("pk", flat=True)[:RESEND_BATCH]
    # A channel that failed once is not tried again in this check: a mail server that never
    # answers would otherwise cost its timeout once per message and outlast the task's timeout.
    broken: set[str] = set()
    return sum(_deliver_one(pk, configured, broken) for pk in ids)


def _deliver_one(pk: int, configured: list[str], broken: set[str]) -> int:
    sent = 0
    with transaction.atomic():
        # Locked while sending, so two checkers never send the same message; one that finds the
        # row locked leaves it to the other.
        alert = Alert.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
        if alert is None or alert.is_silenced(timezone.now()):
            return 0
        for kind, done in ((OPENED, alert.notified_open), (RESOLVED, alert.notified_resolved)):
            if kind == RESOLVED and alert.is_open:
                break
            if kind == OPENED and alert.resolved_while_silenced:
                break  # over before the silence ended: nobody needs to hear it began
            for channel in configured:
                # A resolve message never arrives on a channel that missed the opening one.
                if channel in done or channel in broken or (kind == RESOLVED and channel not in alert.notified_open):
                    continue
                subject, text = message(alert, kind)
                try:
                    channels.send(channel, subject, text)
                except Exception as exc:  # any failure of one channel: the others and the bookkeeping go on
                    reason = exc if isinstance(exc, channels.ChannelError) else type(exc).__name__
                    log.warning("alert %s (%s): %s; trying again at the next check", alert.pk, kind, reason)
                    alert.notify_failures += 1
                    broken.add(channel)
                    continue
                done.append(channel)
                sent += 1
        alert.save(update_fields=["notified_open", "notified_resolved", "notify_failures"])
    return sent


def link_of(alert: Alert) -> str:
    """The absolute URL of the dashboard page that shows the alert's subject (its own page if none)."""
    path = alert.link or reverse("admin:pimsync_alert_change", args=[alert.pk])
    return settings.PIMSYNC_PUBLIC_URL + path


def message(alert: Alert, kind: str) -> tuple[str, str]:
    """The subject and text of the opening or resolving message."""
    title = TITLES.get(alert.condition, alert.condition)
    if kind == OPENED:
        return f"[pimsync] {title}", f"{alert.summary}\nSince {_when(alert.opened_at)}.\n{link_of(alert)}"
    return (
        f"[pimsync] Resolved: {title}",
        f"Resolved at {_when(alert.resolved_at)}; it began at {_when(alert.opened_at)}: {alert.summary}\n"
        f"{link_of(alert)}",
    )
