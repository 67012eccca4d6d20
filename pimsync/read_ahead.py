"""Reads sent before their answer is needed: an enrichment asks AEM for the asset's metadata while
it waits for the PIM, so an asset waits for two round trips instead of three.

Only in a process that enriches on a thread pool (`pimsync.worker.Threads`: a worker, or
`resync --wait`) with PIMSYNC_READ_AHEAD on. Elsewhere (PIMSYNC_WORKER_THREADS=0, a web process)
a read is sent when its answer is first asked for, as if there were no read ahead.

A read whose answer turns out not to be needed (the PIM has no such product, or failed) is
discarded: not sent if it has not started, its answer and any error dropped otherwise. A read
that was sent still did what any call does: it counts against the peer's rate limit, a 429 pauses
calls to it (`pimsync.outbound.throttle`) and a 401 renews the token.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

from django.db import connections

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_width = 0
_lock = threading.Lock()


def enable(width: int) -> None:
    """Send reads ahead on `width` threads of this process (once; later calls keep the first pool)."""
    global _pool, _width
    with _lock:
        if _pool is None and width > 0:
            _pool, _width = ThreadPoolExecutor(max_workers=width, thread_name_prefix="pimsync-read-ahead"), width


def disable() -> None:
    """Send reads when asked for again; the pool's threads end once their reads have (tests)."""
    global _pool, _width
    with _lock:
        pool, _pool, _width = _pool, None, 0
    if pool is not None:
        pool.shutdown(wait=True)


def width() -> int:
    """How many reads this process sends ahead at once (0: none, each is sent when asked for)."""
    return _width


class Read(Generic[T]):
    """`read(*args)`, sent now on a read-ahead thread when this process has them (and `ahead`),
    otherwise when the answer is first asked for. Call it for the answer, or for the error the
    read raised when that is one of `errors` (the read's own failures, which count as they are).
    Any other error of a read-ahead thread (its database connection, say) is not the read's: the
    read is sent again from the calling thread."""

    def __init__(self, read: Callable[..., T], *args, errors: tuple[type[Exception], ...] = (), ahead=True) -> None:
        self._read, self._args, self._errors = read, args, errors
        self._future: Future | None = None
        pool = _pool if ahead else None
        if pool is not None:
            try:
                self._future = pool.submit(_run, read, args)
            except RuntimeError:  # the pool was shut down meanwhile (the process is ending)
                self._future = None

    def __call__(self) -> T:
        future, self._future = self._future, None
        # Not started yet (every read-ahead thread still busy): sent from here, never later than
        # without a read ahead.
        if future is None or future.cancel():
            return self._read(*self._args)
        try:
            return future.result()
        except self._errors:
            raise
        except Exception:
            return self._read(*self._args)

    def discard(self) -> None:
        """The answer will not be asked for: not sent if it has not been yet, dropped otherwise."""
        if self._future is not None:
            self._future.cancel()


def _run(read: Callable[..., T], args: tuple) -> T:
    try:
        return read(*args)
    finally:
        # A read touches the database rarely (the pause row once a second, a token the calling
        # thread had not read): close what it opened rather than hold one idle connection per
        # read-ahead thread.
        for connection in connections.all(initialized_only=True):
            connection.close()
