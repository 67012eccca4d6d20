"""The poison drill: an event whose enrichment kills its worker processes, every time."""

from __future__ import annotations

import os
import re
import signal
import time

from django.db import connection
from django.utils import timezone

from drills.harness import POISON_KEY, Ledger, World, balance


def _neighbours_finish(poison_id: str, since, limit: float) -> str:
    """Wait until no event but the poison one is being processed by a live worker (claimed after
    the last kill: older claims died with their worker), or `limit` seconds; say which."""
    from pimsync.models import Event, Status  # needs Django set up (World.start)

    deadline = time.monotonic() + limit
    live = Event.objects.filter(status=Status.PROCESSING).exclude(event_id=poison_id)
    if since is not None:
        live = live.filter(claimed_at__gt=since)
    try:
        while True:
            busy = live.count()
            if not busy:
                return "no other event was in progress"
            if time.monotonic() > deadline:
                return f"{busy} other events still in progress after {limit:.0f} s"
            time.sleep(0.1)
    finally:
        connection.close()  # this stand-in thread's own connection


def poison(world: World, count: int) -> Ledger:
    """Every worker process SIGKILLed each time one starts enriching the poison event."""
    from pimsync.models import Event  # needs Django set up (World.start)

    deliveries, assets, poison_id = world.deliveries(count, poison=True)
    kills: list[list[int]] = []
    killed_at: list = []

    def fault(kind: str, key: str):
        if kind == "pim" and key == POISON_KEY:
            # Let the other events being processed right now finish first: the drill is about the
            # poison event, not about its neighbours' attempt budgets. At most 2 s, within the 3 s
            # HTTP timeout, so that the poison's call is still open when its workers die.
            waited = _neighbours_finish(poison_id, killed_at[-1] if killed_at else None, 2.0)
            pids = world.worker_pids()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            kills.append(pids)
            killed_at.append(timezone.now())
            world.note(f"PIM saw the poison key: SIGKILLed worker processes {pids} (kill {len(kills)}; {waited})")
            return 503, {"Connection": "close"}
        return None

    world.state.fault = fault
    world.burst(deliveries)
    max_attempts = int(world.env["PIMSYNC_MAX_ATTEMPTS"])
    # Each round costs the task timeout (8 s) before the sweeper hands the event out again.
    done = world.wait_final(count, timeout=(max_attempts + 3) * 12)
    ledger = balance(world, deliveries, assets, {poison_id})
    row = Event.objects.filter(event_id=poison_id).values("status", "reason", "attempts").first() or {}
    ledger.row("poison event", f"{row.get('status')} after {row.get('attempts')} claims: {row.get('reason')!r}")
    ledger.row("times its workers were SIGKILLed", len(kills))
    match = re.search(r"worker stopped (\d+)( of \d+)? times", row.get("reason") or "")
    ledger.expect(kills, "the poison event's workers were killed")
    ledger.expect(row.get("status") == "failed", f"the poison event ended failed (it is {row.get('status')})")
    ledger.expect(match, "its reason says its worker stopped N times")
    alive = len(world.worker_pids())
    ledger.expect(alive == int(world.env["PIMSYNC_WORKERS"]), f"django-q2 replaced the killed workers ({alive} run)")
    ledger.expect(len(kills) <= max_attempts, f"killed at most PIMSYNC_MAX_ATTEMPTS = {max_attempts} times")
    ledger.expect(done, "every event reached a final status")
    return ledger
