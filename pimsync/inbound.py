"""What every webhook endpoint shares: the JSON answer, the bounded body read, the check that a
JSON document can be kept (also run on mapping imports), the HMAC-SHA256 signatures (PIM webhook,
Akeneo notifications, the alerts' chat channel) and the count of deliveries refused as not
authentic (the "signature failures" alert reads it)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from datetime import timedelta

from django.db import DatabaseError, IntegrityError, connection, models, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from pimsync.models import SignatureRefusals

log = logging.getLogger(__name__)


def answer(status: int, error: str = "", **body) -> JsonResponse:
    """A webhook's JSON answer: `{"error": …}` first when there is one, then `body`."""
    return JsonResponse({"error": error, **body} if error else body, status=status)


def read_body(request: HttpRequest, limit: int) -> bytes | None:
    """The raw body, or None when it is over `limit` bytes (never reading more than limit + 1)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


def lowercase_headers(request: HttpRequest) -> dict[str, str]:
    """The request's headers by lower-case name, as `request.headers` gives them but lower-cased:
    read straight from the WSGI environ, without building the title-cased mapping first (2% of a
    delivery's CPU in py-spy)."""
    return {
        (name[5:] if name.startswith("HTTP_") else name).replace("_", "-").lower(): value
        for name, value in request.META.items()
        if name.startswith("HTTP_") or name in ("CONTENT_TYPE", "CONTENT_LENGTH")
    }


def document_problem(document: object, max_depth: int) -> str:
    """Why a parsed JSON document cannot be kept as it is, or "": nested more than `max_depth`
    levels deep (whatever walks it next, json, jsonb or a template, may exhaust the recursion
    limit), or a string holding NUL (PostgreSQL cannot store U+0000 in text or jsonb, so storing
    would fail every time). Walked level by level, not recursively, so any depth is safe."""
    level = [document] if isinstance(document, dict | list) else []
    depth = 0
    while level:
        if depth == max_depth:
            return f"is nested more than {max_depth} levels deep"
        depth += 1
        deeper = []
        for value in level:
            children = [*value, *value.values()] if isinstance(value, dict) else value
            for child in children:
                if isinstance(child, str):
                    if "\x00" in child:
                        return "contains the NUL character (\\u0000), which cannot be stored"
                elif isinstance(child, dict | list):
                    deeper.append(child)
        level = deeper
    return ""


def hmac_sha256(secret: str, message: bytes) -> str:
    """The hex HMAC-SHA256 of `message` keyed with `secret`."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def pimsync_signature(body: bytes, secret: str, timestamp: int) -> str:
    """pimsync's own `X-Pimsync-Signature` value, `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`:
    what a PIM signs `/webhooks/pim` with, and what the alerts' chat channel signs its posts with."""
    return f"t={timestamp},v1={hmac_sha256(secret, f'{timestamp}.'.encode() + body)}"


def signed_with_any(signature: str, message: bytes, secrets: list[str]) -> bool:
    """Whether `signature` (hex, any case) is the HMAC-SHA256 of `message` with one of `secrets`.
    Every secret is tried and compared in constant time: the time taken does not tell which matched."""
    given = signature.strip().lower().encode("utf-8", "replace")
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(hmac_sha256(secret, message).encode(), given)
    return matched


# --- refused deliveries -------------------------------------------------------------------------


class RefusalCounter:
    """Counts 401 answers in this process and adds them to the per-minute row at most every
    `flush_seconds`, so a flood of forged requests costs one write per few seconds, not one each
    (the "signature failures spiking" alert reads the rows)."""

    def __init__(self, flush_seconds: float = 5.0) -> None:
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._pending: dict = {}  # minute -> refusals not yet written
        self._flushed_at: float | None = None  # never: the first refusal is written at once
        self._timer: threading.Timer | None = None

    def add(self) -> None:
        """Count one refusal now; write the counts when the last write is old enough."""
        minute = timezone.now().replace(second=0, microsecond=0)
        with self._lock:
            self._pending[minute] = self._pending.get(minute, 0) + 1
            due = self._flushed_at is None or time.monotonic() - self._flushed_at >= self.flush_seconds
            if not due and self._timer is None:
                # Counts must not wait for the next refusal, which may never come.
                self._timer = threading.Timer(self.flush_seconds, self._flush_from_timer)
                self._timer.daemon = True
                self._timer.start()
        if due:
            self.flush()

    def flush(self) -> None:
        """Add the counts kept in memory to the database; on a database error keep them for later."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._flushed_at = time.monotonic()
        try:
            for minute in sorted(pending):
                _add_refusals(minute, pending[minute])
                del pending[minute]  # written: never added twice
        except DatabaseError:
            log.warning("cannot record webhook refusals now; keeping the count for the next write")
            with self._lock:
                for minute, count in pending.items():
                    self._pending[minute] = self._pending.get(minute, 0) + count

    def _flush_from_timer(self) -> None:
        with self._lock:
            self._timer = None
        try:
            self.flush()
        finally:
            connection.close()  # the timer's thread opened its own connection


def _add_refusals(minute, count: int) -> None:
    if SignatureRefusals.objects.filter(minute=minute).update(count=models.F("count") + count):
        return
    try:
        with transaction.atomic():
            SignatureRefusals.objects.create(minute=minute, count=count)
    except IntegrityError:  # another process created the minute's row first
        SignatureRefusals.objects.filter(minute=minute).update(count=models.F("count") + count)


REFUSALS = RefusalCounter()


def recent_refusals(since) -> int:
    """Deliveries refused as not authentic since `since` (to the minute), as far as written."""
    start = since.replace(second=0, microsecond=0)
    return SignatureRefusals.objects.filter(minute__gte=start).aggregate(n=models.Sum("count"))["n"] or 0


def forget_old_refusals(now) -> None:
    """Drop the per-minute rows older than a day; no alert window reaches that far back."""
    SignatureRefusals.objects.filter(minute__lt=now - timedelta(days=1)).delete()
