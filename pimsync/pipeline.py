"""The worker side: claim an asset's pending events, enrich once, record every attempt.

One asset at a time: a worker takes the asset's lease (`Asset.acquire_and_read`), claims every pending
event of that asset, and runs the enrichment once for all of them, so a burst of events for one
asset ends in one PATCH. Slow I/O happens outside transactions; every state change is a
conditional UPDATE on our own rows.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import F
from django.utils import timezone

from pimsync import enrichment, plain_sql, resync
from pimsync.models import PENDING, Asset, Attempt, Event, EventType, Heartbeat, StaleCause, Status
from pimsync.pim import writeback
from pimsync.wakeups import wake

log = logging.getLogger(__name__)

# The error class of an attempt whose worker stopped (killed, out of memory, a host restart).
WORKER_STOPPED = "worker_stopped"


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """About base·2^(n−1) with ±20% jitter, capped; a longer Retry-After wins."""
    base = settings.PIMSYNC_RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1)
    delay = min(settings.PIMSYNC_RETRY_MAX_SECONDS, base * random.uniform(0.8, 1.2))
    return max(delay, retry_after or 0)


def process_asset(asset_id: str) -> str:
    """Run every pending, due event of one asset; return a one-line summary for django-q2.

    Events that arrive while the lease is held wait for the next drain round, which sees them as
    soon as the lease is released (pimsync.worker).
    """
    leased = Asset.acquire_and_read(asset_id)
    if leased is None:
        return "another worker holds this asset"
    token, state = leased
    written, released = None, False
    try:
        batch = _claim(asset_id)
        if not batch:
            return "nothing pending"
        summary, written, released = _run(state, batch, token)
        return summary
    finally:
        if not released:
            # What was written to AEM under the lease is recorded in the UPDATE that gives it back.
            recorded = {} if written is None else {"last_written": written, "last_written_at": timezone.now()}
            Asset.release(asset_id, token, **recorded)


def _claim(asset_id: str) -> list[Event]:
    """Move the asset's due events to `processing` and count the attempt now, so a worker that
    dies mid-way still uses up an attempt; a due event whose attempts are used up is failed
    instead of claimed (with the sweeper, a poison event cannot loop forever).

    Usually one statement claims them all (`_claim_with_budget_left`); when it claims none, the
    asset's due events, if any, have used their attempts, and the longer way below fails them."""
    now = timezone.now()
    claimed = _claim_with_budget_left(asset_id, now)
    if claimed:
        return claimed
    return _claim_or_give_up(asset_id, now)


def _claim_with_budget_left(asset_id: str, now) -> list[Event]:
    """The asset's due events with attempts left, moved to `processing` in one UPDATE … RETURNING
    (PostgreSQL and SQLite ≥ 3.35 both speak it), oldest first. Django has no UPDATE … RETURNING,
    and its SELECT then UPDATE was a fifth of a worker's CPU per asset in py-spy, most of it
    compiling the two statements. The status is checked again on the rows updated, so an event a
    Cancel moved meanwhile is not taken."""
    quote = connection.ops.quote_name
    table = quote(Event._meta.db_table)
    # The inner SELECT is `Event.objects.due(now)` of this asset with attempts left (`_budget_used`):
    # a change to either belongs here too.
    sql = (
        f"UPDATE {table} SET {quote('status')} = %s, {quote('claimed_at')} = %s, "
        f"{quote('attempts')} = {quote('attempts')} + 1, {quote('reason')} = '' "
        f"WHERE {quote('id')} IN (SELECT {quote('id')} FROM {table} WHERE {quote('asset_id')} = %s "
        f"AND {quote('status')} IN (%s, %s) AND {quote('next_attempt_at')} <= %s "
        f"AND {quote('attempts')} - {quote('attempts_base')} < %s "
        f"ORDER BY {quote('time')}, {quote('id')} LIMIT 100) "
        f"AND {quote('status')} IN (%s, %s) RETURNING {plain_sql.columns(Event)}"
    )
    pending, at = list(PENDING), connection.ops.adapt_datetimefield_value(now)  # as the ORM stores it
    params = [Status.PROCESSING, at, asset_id, *pending, at, settings.PIMSYNC_MAX_ATTEMPTS, *pending]
    claimed = plain_sql.instances(Event, sql, params)
    return sorted(claimed, key=lambda e: (e.time is None, e.time or now, e.id))


def _claim_or_give_up(asset_id: str, now) -> list[Event]:
    """The asset's due events, the spent ones failed and the rest claimed (a plain SELECT then
    UPDATE is safe: the asset's lease keeps other workers away, and the sweeper only touches
    events already in `processing`)."""
    due = list(Event.objects.due(now).filter(asset_id=asset_id).order_by("time", "id")[:100])
    spent = [event for event in due if _budget_used(event)]
    if spent:
        _give_up(spent, now, from_statuses=PENDING, ran=False)
    events = [event for event in due if not _budget_used(event)]
    if events:
        ids = [e.id for e in events]
        # Conditional on still pending: a Cancel (or anything else) may have moved an event since
        # the SELECT; only what this UPDATE moved is ours.
        moved = Event.objects.filter(id__in=ids, status__in=PENDING).update(
            status=Status.PROCESSING, claimed_at=now, attempts=F("attempts") + 1, reason=""
        )
        if moved < len(ids):  # some moved meanwhile: only what this UPDATE moved is ours
            claimed = set(
                Event.objects.filter(id__in=ids, status=Status.PROCESSING, claimed_at=now).values_list("id", flat=True)
            )
            events = [event for event in events if event.id in claimed]
        for event in events:
            event.status, event.claimed_at, event.attempts, event.reason = (
                Status.PROCESSING,
                now,
                event.attempts + 1,
                "",
            )
    return events


def _budget_used(event: Event) -> bool:
    """Whether the event has used its PIMSYNC_MAX_ATTEMPTS since it was received or last retried by hand."""
    return event.attempts_used >= settings.PIMSYNC_MAX_ATTEMPTS


def _budget_reason(event: Event) -> tuple[str, str]:
    """Why an event that used its attempts ends `failed`, and its error class, counting the attempts
    whose worker stopped (those left no attempt row of their own, or a `worker_stopped` one)."""
    used = event.attempts_used
    limit = f"PIMSYNC_MAX_ATTEMPTS={settings.PIMSYNC_MAX_ATTEMPTS}"
    answered = (
        Attempt.objects.filter(event=event, number__gt=event.attempts_base, number__lte=event.attempts)
        .exclude(error_class=WORKER_STOPPED)
        .count()
    )
    stopped = max(0, used - answered)
    if not stopped:  # PIMSYNC_MAX_ATTEMPTS was lowered while the event waited for a retry
        return f"gave up after {used} attempts ({limit})", event.error_class
    times = f"{stopped} times" if stopped == used else f"{stopped} of {used} times"
    reason = (
        f"its worker stopped {times} before finishing ({limit}); it looks like a poison event: "
        "see the worker log for what stopped it, fix the cause, then Retry to give it a fresh budget"
    )
    return reason, WORKER_STOPPED


def _give_up(events: list[Event], now, *, from_statuses, ran: bool = True) -> int:
    """Fail events that used their attempts without finishing, each with an attempt row saying why
    (`ran`: the row stands for the run that was stuck in `processing` until now)."""
    failed = 0
    for event in events:
        reason, error_class = _budget_reason(event)
        with transaction.atomic():
            # Conditional on the claim we saw, so a worker that finishes after all wins.
            if not Event.objects.filter(
                pk=event.pk, status__in=from_statuses, attempts=event.attempts, claimed_at=event.claimed_at
            ).update(
                status=Status.FAILED,
                reason=reason,
                error_class=error_class,
                next_attempt_at=None,
                finished_at=now,
            ):
                continue
            Attempt.objects.create(
                event=event,
                number=event.attempts,
                started_at=(event.claimed_at if ran else None) or now,
                duration_ms=_since(event.claimed_at, now) if ran else 0,
                outcome=Status.FAILED,
                error_class=error_class,
                message=reason,
                product_key=event.product_key,
            )
        failed += 1
        log.warning(
            "event %s",
            Status.FAILED,
            extra={"event_id": event.event_id, "asset_id": event.asset_id, "status": Status.FAILED, "reason": reason},
        )
    return failed


def _since(claimed_at, now) -> int:
    return max(0, int((now - claimed_at).total_seconds() * 1000)) if claimed_at else 0


def paused(result: enrichment.Result) -> bool:
    """Whether the run sent nothing because AEM or the PIM had asked every worker to slow down."""
    return result.status == Status.RETRYING and result.error_class.endswith("_paused")


def next_status(event: Event, result: enrichment.Result, now) -> tuple[str, str, datetime | None]:
    """The event's status after this result, why, and when to try again (None: no retry).

    A retryable result becomes a failure once the event used its PIMSYNC_MAX_ATTEMPTS."""
    if result.status != Status.RETRYING:
        return result.status, result.reason, None
    if paused(result):
        # Nothing was sent: the attempt does not count (`_finish` moves the budget's start on),
        # and the event waits until the pause ends, however long a 429 storm lasts. Spread over a
        # little while after it: all the events refused meanwhile would otherwise call at once.
        left = result.retry_after or 0
        return Status.RETRYING, result.reason, now + timedelta(seconds=left + random.uniform(0, min(30, 1 + left / 4)))
    used = event.attempts_used
    if used >= settings.PIMSYNC_MAX_ATTEMPTS:
        return Status.FAILED, f"gave up after {used} attempts: {result.reason}", None
    delay = backoff_seconds(used, result.retry_after)
    reason = f"{result.reason} (attempt {used} of {settings.PIMSYNC_MAX_ATTEMPTS}; next in {delay:.0f}s)"
    return Status.RETRYING, reason, now + timedelta(seconds=delay)


def _finish(events: list[Event], result: enrichment.Result, started: float, started_at) -> dict[int, tuple[str, str]]:
    """Record one attempt per event and move each event to its final or retry status; the status
    and reason each event was given ({pk: (status, reason)}, none for one that had left
    `processing` meanwhile, a Cancel say)."""
    now = timezone.now()
    duration = int((time.monotonic() - started) * 1000)
    attempts, given = [], {}
    # Within `_run`'s transaction no savepoint of its own (two statements less per asset): a
    # failure here rolls back the asset's state with the events' outcome, as it should.
    with transaction.atomic(savepoint=False):
        for event in events:
            status, reason, next_at = next_status(event, result, now)
            moved = _move(
                event.pk,
                status,
                reason,
                result.error_class,
                result.product_key or event.product_key,
                next_at,
                None if status == Status.RETRYING else now,
                uncounted=paused(result),
            )
            if moved:
                given[event.pk] = (status, reason)
            attempts.append(_attempt(event, result, status, reason, started_at, duration))
            log.info(
                "event %s",
                status,
                extra={"event_id": event.event_id, "asset_id": event.asset_id, "status": status, "reason": reason},
            )
        _insert_attempts(attempts)
    return given


def _insert_attempts(attempts: list[dict]) -> None:
    """The attempt rows in one plain INSERT (`pimsync.plain_sql`): Django's bulk_create of one row
    per asset was 4% of a worker's CPU in py-spy, and building `Attempt` instances only to read
    their attributes back 1.6%. Each value still goes through its field."""
    db = connections[DEFAULT_DB_ALIAS]
    plain_sql.insert(Attempt, [plain_sql.prepared(Attempt, attempt, db) for attempt in attempts])


def _move(pk: int, status: str, reason: str, error_class: str, product_key: str, next_at, finished_at, *, uncounted):
    """Move event `pk` from `processing` to `status`; False when it had left `processing` (a
    Cancel). `uncounted`: the attempt gives its count back (a pause refused the call).

    Plain SQL: one per event of every asset, and the ORM's UPDATE compiled a statement of several
    times the CPU of running it (7% of a worker's CPU in py-spy)."""
    quote, adapt = connection.ops.quote_name, connection.ops.adapt_datetimefield_value
    base = quote("attempts_base")
    given_back = f"{base} = {base} + 1, " if uncounted else ""
    sql = (
        f"UPDATE {quote(Event._meta.db_table)} SET {given_back}{quote('status')} = %s, {quote('reason')} = %s, "
        f"{quote('error_class')} = %s, {quote('product_key')} = %s, {quote('next_attempt_at')} = %s, "
        f"{quote('finished_at')} = %s WHERE {quote('id')} = %s AND {quote('status')} = %s"
    )
    params = [status, reason, error_class, product_key, adapt(next_at), adapt(finished_at), pk, Status.PROCESSING]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount > 0


def _attempt(event: Event, result: enrichment.Result, status: str, reason: str, started_at, duration: int) -> dict:
    """The attempt row of one event's run, by column: what was read, what was written, what AEM said."""
    return {
        "event_id": event.pk,
        "number": event.attempts,
        "started_at": started_at,
        "duration_ms": duration,
        "outcome": status,
        "error_class": result.error_class,
        # The technical message (the URL and the status AEM or the PIM answered) where the event
        # shows a plain reason.
        "message": result.detail or reason,
        "product_key": result.product_key,
        "pim_data": result.pim_data,
        "changes": result.changes,
        "aem_status": result.aem_status,
        "aem_body": result.aem_body,
    }


def _skip(events: list[Event], reason: str, status: str = Status.IGNORED) -> None:
    _finish(events, enrichment.Result(status=status, reason=reason), time.monotonic(), timezone.now())


def _run(state: Asset, batch: list[Event], token: str) -> tuple[str, dict | None, bool]:
    """Enrich the asset `state` (its row as the lease read it, under `token`) with its claimed
    events `batch`: a summary, what pimsync has written to the asset now (None: unchanged), and
    whether the lease was given back already."""
    asset_id = state.asset_id
    deletions = [e for e in batch if e.type == EventType.DELETED]
    if deletions:
        deleted_at = max(e.time or e.received_at for e in deletions)
        if Asset.objects.filter(pk=asset_id).deleted(deleted_at):
            state.deleted_at = deleted_at
    work = []
    for event in batch:
        if event.type == EventType.DELETED:
            continue
        if state.deleted_at and (event.time or event.received_at) <= state.deleted_at:
            _skip([event], f"the asset was deleted in AEM at {state.deleted_at:%Y-%m-%d %H:%M:%S}")
        elif event.type == EventType.METADATA_UPDATED and enrichment.echoes_last_write(event, state):
            _skip([event], "echo of pimsync's own write: the changed properties hold what pimsync wrote")
        else:
            work.append(event)
    if deletions:
        cancelled = len(batch) - len(deletions) - len(work)
        note = writeback.after_deletion(state.product_key)
        reason = f"deletion recorded; {cancelled} pending update(s) cancelled" + (f"; {note}" if note else "")
        _skip(deletions, reason, Status.SUCCEEDED)
    if not work:
        return f"{asset_id}: nothing to enrich", None, False
    newest = _describing(work, state)
    started, started_at = time.monotonic(), timezone.now()
    result = enrichment.enrich(newest, state.last_written)
    written = _last_written(state, result)
    # The events' outcome and the asset's state together: a worker stopped between the two would
    # leave the asset stale (or never synced) with no event left to bring it in step.
    with transaction.atomic():
        given = _finish(work, result, started, started_at)
        released = _record_asset(state, newest, result, started_at, given.get(newest.pk), (token, written))
    resync.events_ended({event.job_id for event in work if event.job_id})
    return f"{asset_id}: {len(work)} event(s) {result.status}", written, released


def _last_written(state: Asset, result: enrichment.Result) -> dict | None:
    """What pimsync has written to the asset after this run (None: unchanged): the values written
    now added, the properties no rule yields any more (removed, or already gone) taken out."""
    if result.status not in (Status.SUCCEEDED, Status.UNCHANGED) or not (result.written or result.unmapped):
        return None
    gone = set(result.unmapped)
    merged = {**state.last_written, **result.written}
    return {name: value for name, value in merged.items() if name.lstrip("/") not in gone}


def _describing(work: list[Event], state: Asset) -> Event:
    """The event that describes the asset as it is now: the newest one from AEM (its path may have
    changed since earlier ones). A re-sync's events copy the asset's row when they are scheduled,
    which may be long before they run: when only those are left, the row as it is now wins."""
    from_aem = [e for e in work if e.type != EventType.RESYNC]
    newest = max(from_aem or work, key=lambda e: (e.time or e.received_at, e.id))
    if not from_aem and state.path:
        newest.asset_path, newest.asset_name, newest.mime_type = state.path, state.name, state.mime_type
    return newest


def _record_asset(
    state: Asset,
    newest: Event,
    result: enrichment.Result,
    started_at,
    given: tuple[str, str] | None,
    lease: tuple[str, dict | None],
) -> bool:
    """Describe the asset as its newest event names it and move its sync state with the outcome:
    succeeded or unchanged → in step (unless it was marked stale after this run read the PIM and
    the mapping), failed for good → failing; a retry leaves the state as it was. `given`: the
    newest event's status and reason as `_finish` wrote them (None: it had left `processing`).
    `lease`: the token and what pimsync has written to the asset now; in the common case the
    lease is given back in the same UPDATE (True), one statement and one commit less per asset."""
    now = timezone.now()
    status, reason = given or Event.objects.values_list("status", "reason").get(pk=newest.pk)
    described = {
        "path": newest.asset_path,
        "name": newest.asset_name,
        "mime_type": newest.mime_type,
        "product_key": result.product_key or newest.product_key or state.product_key,
        "last_outcome": status,
    }
    if not state.path and newest.arrived_by == "journal":
        described["known_from"] = "journal"
    if result.product_uuid:
        described["pim_product_uuid"] = result.product_uuid
    in_step = status in (Status.SUCCEEDED, Status.UNCHANGED)
    # The common case, in plain SQL: building the queryset below alone was 2% of a worker's CPU.
    if in_step and Asset.synced(
        state.pk,
        started_at,
        pim_fingerprint=result.pim_fingerprint,
        mapping_fingerprint=result.mapping_fingerprint,
        mapping_generation=result.mapping_generation,
        release=lease,
        **described,
    ):
        return True
    assets = Asset.objects.filter(pk=state.pk)
    if in_step:
        # Written with rules this process had read before a mapping change: the mapping check may
        # already have passed this asset, so it says stale itself.
        assets.update(**described, last_synced_at=now)
        assets.stale(StaleCause.MAPPING, "the mapping changed while it was being enriched", any_state=True)
    elif status == Status.FAILED:
        assets.failing(reason, **described)
    else:
        assets.update(**described)
    return False


def sweep() -> str:
    """Hand out again what nobody is working on: events whose worker died (stuck in `processing`
    past the task timeout; those that used their attempts end `failed`), then wake workers for
    every due event (retries whose time has come, wake-ups the broker lost: Redis has no delivery
    receipts)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.PIMSYNC_TASK_TIMEOUT_SECONDS)
    stuck = list(Event.objects.filter(status=Status.PROCESSING, claimed_at__lt=stale).order_by("claimed_at")[:1000])
    failed = _give_up([e for e in stuck if _budget_used(e)], now, from_statuses=[Status.PROCESSING])
    revived = _revive([e for e in stuck if not _budget_used(e)], now)
    due = Event.objects.due(now).count()
    # One drain per 100 due events, up to one per worker process, so a backlog uses them all.
    woken = wake(min(settings.PIMSYNC_WORKERS, 1 + due // 100)) if due else 0
    summary = (
        f"revived {revived} stuck event(s); failed {failed} that used their attempts; {due} due; woke {woken} worker(s)"
    )
    Heartbeat.beat(Heartbeat.SWEEPER, summary)
    return summary


def _revive(events: list[Event], now) -> int:
    """Hand stuck events out again, with an attempt row for the run their worker did not finish."""
    revived = 0
    with transaction.atomic():
        for event in events:
            used = event.attempts_used
            reason = (
                "its worker stopped before finishing; handed out again "
                f"(attempt {used} of {settings.PIMSYNC_MAX_ATTEMPTS})"
            )
            if not Event.objects.filter(
                pk=event.pk, status=Status.PROCESSING, attempts=event.attempts, claimed_at=event.claimed_at
            ).update(status=Status.RECEIVED, next_attempt_at=now, reason=reason, error_class=WORKER_STOPPED):
                continue
            Attempt.objects.create(
                event=event,
                number=event.attempts,
                started_at=event.claimed_at,
                duration_ms=_since(event.claimed_at, now),
                outcome=Attempt.Outcome.RETRYING,
                error_class=WORKER_STOPPED,
                message=reason,
                product_key=event.product_key,
            )
            revived += 1
    return revived


def retry(events) -> int:
    """Send events back to the worker (the Retry button, the bulk action and `retry_events`)."""
    retried = Event.objects.filter(pk__in=[event.pk for event in events]).retry()
    if retried:
        wake()
    return retried
