"""What every stand-in answers with: JSON bodies, the injected faults a test or drill queues
instead of the real answer, and a count of the calls answered at once."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from werkzeug import Response


class Faults:
    """Answers to give instead of the real one: `add(status, times, headers)` per method."""

    def __init__(self) -> None:
        self._queue: dict[str, deque] = {}

    def add(self, method: str, status: int, times: int = 1, headers: dict | None = None, delay: float = 0) -> None:
        self._queue.setdefault(method, deque()).extend([(status, headers or {}, delay)] * times)

    def take(self, method: str):
        queue = self._queue.get(method)
        return queue.popleft() if queue else None


class InFlight:
    """The calls a stand-in is answering now, and the most it answered at once (`most`): how many
    calls a client keeps open together."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self._lock = threading.Lock()

    @contextmanager
    def answering(self, latency: float = 0) -> Iterator[None]:
        """One call answered within the block, after `latency` seconds."""
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            if latency:
                time.sleep(latency)
            yield
        finally:
            with self._lock:
                self.now -= 1


def json_response(status: int, body=None, headers: dict | None = None) -> Response:
    """`body` as JSON with `status`; no body at all when it is None (a 204, a bare 201)."""
    if body is None:
        return Response(status=status, headers=headers or {})
    return Response(json.dumps(body), status=status, headers=headers or {}, content_type="application/json")
