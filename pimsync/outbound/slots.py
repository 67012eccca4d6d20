"""Calls in flight at once to a system, counted across every process on every node.

Akeneo allows 4 concurrent API calls per Connection
(https://api.akeneo.com/documentation/good-practices.html), however many worker processes and
nodes share that Connection. So the limit lives in the database every process already shares
(Redis is optional): a system allowing N calls has N named leases (`Lock` rows `<system>-call:0` …
`<system>-call:N-1`). A call takes a free one with one conditional UPDATE (`Leased.acquire_any`),
holds it while it runs and gives it back. A process that dies mid-call loses nothing but time: the
lease runs out at the call's deadline plus LEASE_MARGIN.

Before the database, each process passes a gate of N of its own, so no more than N threads per
process ask the table while they wait. Waiting is part of the call's deadline: a slot that does
not come free before it is a retryable `<system>_busy` error, and the call is not sent.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from pimsync.models import Lock
from pimsync.outbound import throttle
from pimsync.outbound.http import HttpError

# A slot's lease outlives its call's deadline by this much: clocks of two nodes may differ a little.
LEASE_MARGIN = timedelta(seconds=5)
# A waiter asks again after FIRST_WAIT seconds, then twice as long each time up to MAX_WAIT
# (jittered, so waiters of several processes do not ask in step).
FIRST_WAIT = 0.005
MAX_WAIT = 0.1


class Slots:
    """At most `size` calls to `system` in flight, from all processes together."""

    def __init__(self, system: str, size: int) -> None:
        self.system = system
        self.size = size
        self.names = [f"{system}-call:{number}" for number in range(size)]
        self._gate = threading.BoundedSemaphore(size)

    @contextmanager
    def held(self, deadline: float, call: str) -> Iterator[None]:
        """Run the block holding one of the system's slots; `deadline` (time.monotonic()) bounds
        the wait. Raises the retryable `<system>_busy` HttpError, nothing sent, when no slot came
        free in time (`call` says what was not sent)."""
        started = time.monotonic()
        if not self._gate.acquire(timeout=max(0.0, deadline - started)):
            raise self._busy(call, started)
        try:
            token = self._take(deadline, call, started)
            try:
                yield
            finally:
                Lock.release_any(self.names, token)
        finally:
            self._gate.release()

    def _take(self, deadline: float, call: str, started: float) -> str:
        # The call ends by its deadline; the lease ends LEASE_MARGIN after it.
        lease = timedelta(seconds=max(0.0, deadline - time.monotonic())) + LEASE_MARGIN
        wait, created = FIRST_WAIT, False
        while True:
            token = Lock.acquire_any(self.names, lease)
            if token is not None:
                return token
            if not created:  # the rows' first use (or a test database emptied since)
                Lock.create_missing(self.names)
                created = True
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._busy(call, started)
            time.sleep(min(left, wait * random.uniform(0.5, 1.0)))
            wait = min(MAX_WAIT, wait * 2)

    def _busy(self, call: str, started: float) -> HttpError:
        label = throttle.LABELS.get(self.system, self.system)
        return HttpError(
            f"{call} not sent: {label} already had {self.size} calls in flight (all pimsync processes "
            f"together) for {time.monotonic() - started:.1f}s, until the call's deadline",
            retryable=True,
            error_class=f"{self.system}_busy",
        )
