"""Re-sync: enrich known assets again when the PIM data or the mapping changed, as a background job.

A re-sync does not enrich anything itself. It schedules one event per asset (type
`pimsync.asset.resync`, priority 1, linked to its job) and the normal worker path does the rest:
the asset's lease, the one enrichment per asset, the attempts, the retries, the dashboard. So a
re-synced asset is written exactly as an uploaded one would be, and everything support knows
about events (Retry, the attempt timeline) works for re-syncs too.

Pace and fairness:
- Events are scheduled `1 / PIMSYNC_RESYNC_RATE` seconds apart, at most `HORIZON` seconds ahead,
  and not while the job still has a full horizon of events waiting (workers behind, AEM asking
  to slow down). The sweeper tops every running re-sync up each minute (`tick`).
- Workers take live events (priority 0) before a re-sync's (`pimsync.worker.candidates`).

A job survives worker restarts: its events are rows, its position (the last asset id scheduled)
and its schedule are saved in the same transaction as the events, and event ids are
`resync:<job>:<asset>`, so scheduling the same asset twice is impossible.

`find_affected` is the other job kind here: after a mapping change, it walks the known assets and
marks those whose applicable rules changed as stale (`StaleCause.MAPPING`), which is what "the
assets affected by the last mapping change" means everywhere (the mapping page, `resync
--mapping-affected`).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from pimsync import jobs, mapping
from pimsync.models import (
    PENDING,
    Arrival,
    Asset,
    Event,
    EventType,
    Job,
    Lock,
    MappingConfig,
    StaleCause,
    Status,
    SyncState,
)
from pimsync.wakeups import queue_job, start_job, wake

log = logging.getLogger(__name__)

# Seconds of re-sync work scheduled ahead of now; the sweeper tops up every 60 s.
HORIZON = 90
# Assets scheduled per query (a top-up at a high rate is several of these).
BATCH = 1000
# Assets checked per transaction after a mapping change (a task works a slice, then continues:
# `jobs.run_in_slices`).
CHECK_BATCH = 2000
# The explicit asset lists of a selection (the Re-sync button, a page of the Assets list).
MAX_ASSET_IDS = 10_000
MAX_PRODUCT_KEYS = 1000

# Workers take due events of priority 0 (everything from Adobe) first (`pimsync.worker`).
RESYNC_PRIORITY = 1
# The lock that lets one scheduler at a time work across every node (the rate is for all
# re-syncs together), and how long a step waits for another node's step to end: a step is a few
# queries and inserts, far shorter than this.
SCHEDULE_LOCK = "resync-schedule"
SCHEDULE_WAIT_SECONDS = 30.0

SELECTION_KEYS = ("asset_ids", "product_keys", "path_prefix", "state", "mapping_affected", "all")


class SelectionError(ValueError):
    """A selection of assets that names nothing pimsync understands; the message says why."""


def check(spec: dict) -> dict:
    """`spec` if it is a valid selection (one or more of SELECTION_KEYS, the assets matching all
    of them; `all` alone), else SelectionError."""
    if not isinstance(spec, dict) or not spec or not set(spec) <= set(SELECTION_KEYS):
        raise SelectionError(f"choose one or more of: {', '.join(SELECTION_KEYS)}")
    if "all" in spec and len(spec) > 1:
        raise SelectionError("all takes no other key")
    for name, value in spec.items():
        _check_one(name, value)
    return spec


def _check_one(name: str, value) -> None:
    if name in ("asset_ids", "product_keys"):
        limit = MAX_ASSET_IDS if name == "asset_ids" else MAX_PRODUCT_KEYS
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise SelectionError(f"{name} must be a list of non-empty strings")
        if len(value) > limit:
            raise SelectionError(f"more than {limit} {name.replace('_', ' ')}: select by a filter instead")
    elif name == "path_prefix":
        if not isinstance(value, str) or not value.startswith("/"):
            raise SelectionError("a path prefix starts with /, e.g. /content/dam/products/")
    elif name == "state":
        if value not in SyncState.values:
            raise SelectionError(f"state must be one of: {', '.join(SyncState.values)}")
    elif value is not True:
        raise SelectionError(f"{name} takes no value other than true")


def select(spec: dict) -> QuerySet[Asset]:
    """The assets a selection names, matching every key of it (never deleted ones: there is
    nothing to write to)."""
    assets = Asset.objects.known()
    for name, value in check(spec).items():
        if name == "asset_ids":
            assets = assets.filter(asset_id__in=value)
        elif name == "product_keys":
            assets = assets.filter(product_key__in=value)
        elif name == "path_prefix":
            assets = assets.filter(path__startswith=value)
        elif name == "state":
            assets = assets.filter(state=value)
        elif name == "mapping_affected":
            assets = assets.affected_by_mapping()
    return assets


def describe(spec: dict) -> str:
    """The selection in words, for the job history."""
    if len(spec) > 1:
        parts = {
            "asset_ids": lambda v: f"{len(v)} selected",
            "product_keys": lambda v: f"of {', '.join(v[:5])}" + (f" and {len(v) - 5} more" if len(v) > 5 else ""),
            "path_prefix": lambda v: f"under {v}",
            "state": lambda v: SyncState(v).label,
            "mapping_affected": lambda v: "affected by the last mapping change",
        }
        return f"re-sync the assets {'; '.join(parts[n](v) for n, v in spec.items())}"[:255]
    return _describe_one(spec)


def _describe_one(spec: dict) -> str:
    [(name, value)] = spec.items()
    if name == "asset_ids":
        return f"re-sync {len(value)} selected asset{'s' if len(value) != 1 else ''}"
    if name == "product_keys":
        shown = ", ".join(value[:5]) + (f" and {len(value) - 5} more" if len(value) > 5 else "")
        return f"re-sync the assets of {shown}"[:255]
    if name == "path_prefix":
        return f"re-sync the assets under {value}"[:255]
    if name == "state":
        return f"re-sync the {SyncState(value).label} assets"
    if name == "mapping_affected":
        return "re-sync the assets affected by the last mapping change"
    return "re-sync all assets"


def start(user, spec: dict, why: str) -> Job:
    """Create a re-sync job for the selected assets and queue its first run (after the commit).

    Raises SelectionError for a selection that names nothing pimsync understands."""
    assets = select(spec)
    job = start_job(
        Job(
            kind=Job.Kind.RESYNC,
            created_by=user,
            assets=spec,
            why=(why or "")[:255],
            description=describe(spec),
            total=assets.count(),
        )
    )
    log.info("job %s queued: %s (%s assets) because %s", job.pk, job.description, job.total, job.why or "—")
    return job


def run(job_id: int) -> str:
    """One step of a re-sync: schedule what fits in the horizon, count the progress, finish when
    every asset was scheduled and every one of its events has ended. Cheap: the sweeper calls it
    every minute for every running re-sync."""
    token = Lock.acquire(SCHEDULE_LOCK, wait=SCHEDULE_WAIT_SECONDS)
    if token is None:
        return f"job {job_id}: another node is scheduling; the sweeper steps it again"
    try:
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            if job.status not in Job.ACTIVE:
                return f"job {job_id}: not active, nothing to do"
            now = timezone.now()
            job.status, job.heartbeat_at = Job.State.RUNNING, now
            job.started_at = job.started_at or now
            scheduled = _schedule(job, now)
            pending = job.recount()
            if not pending and not _remaining(job).exists():
                job.status, job.finished_at = Job.State.FINISHED, now
                log.info("job %s finished: %s", job.pk, summary(job))
            job.save()
    except OperationalError:
        log.warning("re-sync %s interrupted by a database error; the sweeper resumes it", job_id, exc_info=True)
        return f"job {job_id}: interrupted, to be resumed"
    finally:
        with contextlib.suppress(OperationalError):  # a database gone away: the lease runs out instead
            Lock.release(SCHEDULE_LOCK, token)
    if scheduled:
        wake()
    return f"job {job_id}: scheduled {scheduled}; {summary(job)}"


def _remaining(job: Job) -> QuerySet[Asset]:
    return select(job.assets).filter(asset_id__gt=job.asset_position)


def _schedule(job: Job, now) -> int:
    """Create the events of the next assets, `1 / rate` seconds apart, up to `HORIZON` ahead. The
    rate holds for all re-syncs together: each goes on after the last event any of them scheduled,
    and none adds more while a horizon's worth of re-sync events still waits for the workers."""
    rate = settings.PIMSYNC_RESYNC_RATE
    waiting = Event.objects.pending().filter(priority=RESYNC_PRIORITY).count()
    if waiting >= rate * HORIZON:  # the workers are behind: do not pile up more
        return 0
    latest = Job.objects.filter(kind=Job.Kind.RESYNC, status__in=Job.ACTIVE).aggregate(at=Max("scheduled_until"))["at"]
    slot = max(now, latest or now)
    room = int((now + timedelta(seconds=HORIZON) - slot).total_seconds() * rate)
    if room < 1 and slot <= now:  # a rate under one asset per horizon still moves on
        room = 1
    scheduled = 0
    while room > 0:
        fields = ("asset_id", "path", "name", "mime_type", "product_key")
        assets = list(_remaining(job).order_by("asset_id").values_list(*fields)[: min(room, BATCH)])
        if not assets:
            break
        events = [_event(job, asset, slot + timedelta(seconds=i / rate), now) for i, asset in enumerate(assets)]
        Event.objects.bulk_create(events, ignore_conflicts=True)
        slot += timedelta(seconds=len(assets) / rate)
        job.asset_position, job.scheduled_until = assets[-1][0], slot
        room -= len(assets)
        scheduled += len(assets)
    return scheduled


def _event(job: Job, asset: tuple, due, now) -> Event:
    asset_id, path, name, mime_type, product_key = asset
    return Event(
        event_id=f"resync:{job.pk}:{asset_id}"[:255],
        type=EventType.RESYNC,
        source="pimsync",
        time=now,
        received_at=now,
        asset_id=asset_id,
        asset_path=path,
        asset_name=name,
        mime_type=mime_type,
        product_key=product_key,
        status=Status.RECEIVED,
        next_attempt_at=due,
        payload={"job": job.pk, "why": job.why, "asset": {"id": asset_id, "path": path}},
        arrived_by=Arrival.RESYNC,
        priority=RESYNC_PRIORITY,
        job=job,
    )


def summary(job: Job) -> str:
    return (
        f"{job.done} of {job.total} done: {job.succeeded} written, {job.unchanged} unchanged, "
        f"{job.failed} failed, {job.skipped} skipped"
    )


def events_ended(job_ids: set[int]) -> None:
    """Some of these re-syncs' events just ended: step a job whose last event it was, so it is
    marked finished now rather than at the sweeper's next minute."""
    for job_id in job_ids:
        if not Event.objects.filter(job_id=job_id, status__in=(*PENDING, Status.PROCESSING)).exists():
            queue_job(job_id)


def tick() -> int:
    """Top up every active re-sync (the sweeper, every minute); return how many were stepped."""
    stepped = 0
    active = Job.objects.filter(kind=Job.Kind.RESYNC, status__in=Job.ACTIVE).order_by("created_at", "pk")
    for job_id in active.values_list("pk", flat=True)[:100]:  # oldest first: they share the rate
        run(job_id)
        stepped += 1
    return stepped


# --- marking assets stale ---------------------------------------------------------------------


def pim_changed(product_keys: list[str], *, user=None, why: str) -> Job | None:
    """The PIM says these products changed: mark their assets stale and re-sync them (None when
    pimsync knows no asset of these products)."""
    keys = sorted({key for key in product_keys if key})
    assets = Asset.objects.filter(product_key__in=keys).known()
    marked = assets.stale(StaleCause.PIM, f"PIM data changed ({why})")
    if not assets.exists():
        return None
    log.info("PIM change for %s product(s): %s asset(s) marked stale", len(keys), marked)
    covering = covering_job(keys)
    if covering is not None:
        log.info("re-sync %s already covers them; no new job", covering.pk)
        return covering
    return start(user, {"product_keys": keys}, why)


def covering_job(product_keys: list[str]) -> Job | None:
    """An active re-sync of these products' assets (and maybe more) that has started on none of
    them yet: its events read the PIM when they run, after this change, so a second job would
    only repeat them. None when every such job already read one of them (or there is none)."""
    wanted = set(product_keys)
    active = Job.objects.filter(kind=Job.Kind.RESYNC, status__in=Job.ACTIVE).order_by("-created_at", "-pk")
    for job in active[:50]:
        selected = (job.assets or {}).get("product_keys")
        if not isinstance(selected, list) or not wanted <= set(selected):
            continue
        # Waiting (received, retrying) events have not read the PIM since the change; any other has.
        if not Event.objects.filter(job=job, product_key__in=product_keys).exclude(status__in=PENDING).exists():
            return job
    return None


def mapping_changed(user=None) -> Job:
    """The mapping was saved: stop any check still running for an earlier change and start one
    that finds the assets this change affects."""
    MappingConfig.changed()
    for job in Job.objects.filter(kind=Job.Kind.AFFECTED, status__in=Job.ACTIVE):
        job.cancel()
    return start_job(
        Job(
            kind=Job.Kind.AFFECTED,
            created_by=user,
            description="find the assets the mapping change affects",
            why="the mapping was changed",
            total=Asset.objects.filter(state__in=(SyncState.IN_STEP, SyncState.STALE)).count(),
        )
    )


def find_affected(job_id: int, *, slice_seconds: float | None = None) -> str:
    """Walk the in-step and mapping-stale assets in id order: mark stale those whose applicable
    rules changed (or that hold a property pimsync wrote that no rule yields any more, when the
    mapping removes such values), and in step again those a later change put back as they were."""
    mapping.forget()
    config, rules = mapping.current()
    return jobs.run_in_slices(job_id, lambda: _check_batch(job_id, config, rules), slice_seconds=slice_seconds)


def _check_batch(job_id: int, config, rules) -> str:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status != Job.State.RUNNING:
            return job.status
        now = timezone.now()
        candidates = Asset.objects.filter(
            Q(state=SyncState.IN_STEP) | Q(state=SyncState.STALE, stale_cause=StaleCause.MAPPING),
            asset_id__gt=job.asset_position,
        ).order_by("asset_id")
        fields = ("asset_id", "path", "name", "mime_type", "state", "mapping_fingerprint", "last_written")
        batch = list(candidates.only(*fields)[:CHECK_BATCH])
        changed, restored = [], []
        for asset in batch:
            # What pimsync wrote counts: a property no rule writes any more is to be removed.
            matches = mapping.fingerprint(config, rules, asset.ref, asset.last_written) == asset.mapping_fingerprint
            if asset.state == SyncState.IN_STEP and not matches:
                changed.append(asset.pk)
            elif asset.state == SyncState.STALE and matches:
                restored.append(asset.pk)
        # When: the asset page shows `stale_since` in the dashboard's zone beside the reason.
        reason = "the mapping rules changed"
        if changed:
            Asset.objects.filter(pk__in=changed, state=SyncState.IN_STEP).stale(StaleCause.MAPPING, reason)
        if restored:
            Asset.objects.filter(pk__in=restored).back_in_step()
        job.done += len(batch)
        job.total = max(job.total, job.done)
        job.heartbeat_at = now
        if batch:
            job.asset_position = batch[-1].pk
        else:
            job.status, job.finished_at = Job.State.FINISHED, now
            job.succeeded = Asset.objects.affected_by_mapping().count()
        job.save()
        return job.status


def estimate_seconds(count: int) -> float:
    """How long re-syncing `count` assets takes at PIMSYNC_RESYNC_RATE, the pace a re-sync keeps
    when the workers keep up (at least that long: uploads go first)."""
    return count / settings.PIMSYNC_RESYNC_RATE


def affected_count() -> int:
    """Known assets the mapping changes so far left stale (what "Re-sync the affected assets" re-syncs)."""
    return select({"mapping_affected": True}).count()
