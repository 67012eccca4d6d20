"""The gunicorn-kill drill: a gunicorn worker process SIGKILLed with requests in it."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

from drills.harness import Ledger, World, balance


def _sockets(pid: int) -> int:
    try:
        return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd).startswith("socket:"))
    except OSError:
        return 0


def gunicorn_kill(world: World, count: int) -> Ledger:
    """One gunicorn worker process SIGKILLed in the middle of the burst, with requests in it."""
    deliveries, assets, _ = world.deliveries(count)
    killed = []

    def kill():
        # The worker holding most of the sender's connections; frozen for half a second first
        # (SIGSTOP), so that requests are surely in flight in it when it dies.
        pids = sorted(world.gunicorn_workers(), key=_sockets)
        victim = pids[-1]
        os.kill(victim, signal.SIGSTOP)
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
        world.note(f"gunicorn worker {victim} frozen 0.5 s, then SIGKILLed ({len(pids)} were running)")

    fault = world.at(2.0, kill)
    world.burst(deliveries)
    fault.join()
    done = world.wait_final(count, timeout=90)
    ledger = balance(world, deliveries, assets, set())
    answers = Counter(a[1] for d in deliveries for a in d.answers)
    errors = sum(n for k, n in answers.items() if not isinstance(k, int))
    ledger.row("connection errors, redelivered", errors)
    ledger.expect(killed, "a gunicorn worker was killed")
    ledger.expect(errors > 0, "the kill cut requests off (connection errors)")
    ledger.expect(not answers.get(500), f"never a 500 ({answers.get(500, 0)})")
    ledger.expect(len(world.gunicorn_workers()) == 2, "gunicorn replaced the worker")
    ledger.expect(done, "every acknowledged event finished")
    return ledger
