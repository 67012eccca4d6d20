"""Reads sent before their answer is needed: an enrichment asks AEM for the asset's metadata while
it waits for the PIM, so an asset waits for two round trips instead of three.

Only in a worker process that enriches on its thread pool (`pimsync.worker.Threads` enables this
with the pool's width). Elsewhere (PIMSYNC_WORKER_THREADS=0, a web process) a read is sent when its
answer is first asked for, as if there were no read ahead.

A read whose answer turns out not to be needed (the PIM has no such product, or failed) is
discarded: its answer and any error it raised are dropped, and the caller goes on as if it had
never been sent.
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
    otherwise when the answer is first asked for. Call it for the answer (or the error the read
    raised)."""

    def __init__(self, read: Callable[..., T], *args, ahead: bool = True) -> None:
        self._read, self._args = read, args
        pool = _pool if ahead else None
        self._future: Future | None = pool.submit(_run, read, args) if pool is not None else None

    def __call__(self) -> T:
        if self._future is None:
            return self._read(*self._args)
        return self._future.result()

    def discard(self) -> None:
        """The answer will not be asked for: not sent if it has not been yet, dropped otherwise."""
        if self._future is not None:
            self._future.cancel()


def _run(read: Callable[..., T], args: tuple) -> T:
    try:
        return read(*args)
    finally:
        # A read touches the database rarely (a shared token or pause read once in a while):
        # close what it opened rather than hold one idle connection per read-ahead thread.
        for connection in connections.all(initialized_only=True):
            connection.close()
