"""`/webhooks/aem`: the Adobe I/O Events webhook.

Verify, store, answer; nothing here calls the PIM, AEM or IMS (only the signing-key server, and
only when a key is not cached). Answers: 200 stored, 400 not an event, 401 not authentic,
413 too large, 503 when we cannot store or verify right now (Adobe retries 5xx, not 4xx).
What is verified and trusted is described in docs/adobe-events.md.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, models, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from pimsync.adobe import events, signatures
from pimsync.models import SignatureRefusals

log = logging.getLogger(__name__)


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


def _answer(status: int, error: str = "", **body) -> JsonResponse:
    if error:
        body = {"error": error, **body}
    return JsonResponse(body, status=status)


def _not_json(constant: str):
    """Python's json accepts NaN and Infinity; JSON (and PostgreSQL's jsonb) does not."""
    raise ValueError(f"{constant} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: a number jsonb cannot store
        raise ValueError(f"{text[:40]} is out of range")
    return value


# Adobe's asynchronous validation URL is on csm.adobe.io; see
# https://developer.adobe.com/events/docs/guides/#asynchronous-validation
ADOBE_DOMAINS = ("adobe.io", "adobe.com")


def adobe_validation_url(value: object) -> str | None:
    """`value` when it is an https URL on Adobe's own domain (adobe.io, adobe.com), else None."""
    if not isinstance(value, str) or len(value) > 2000 or not value.isprintable() or not value.isascii():
        return None  # also keeps newlines and control characters out of the log line
    if " " in value:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or parts.username is not None or port not in (None, 443):
        return None
    if not any(host == domain or host.endswith("." + domain) for domain in ADOBE_DOMAINS):
        return None
    return value


def _read_body(request: HttpRequest) -> bytes | None:
    """The raw body, or None when it is over the limit (read no more than limit + 1 bytes)."""
    limit = settings.PIMSYNC_WEBHOOK_MAX_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


@csrf_exempt
@require_http_methods(["GET", "POST"])
def aem_webhook(request: HttpRequest) -> JsonResponse:
    """Adobe's challenge (GET); a delivery (POST): verify, store, answer."""
    if request.method == "GET":
        challenge = request.GET.get("challenge")
        if challenge is None:
            return _answer(400, "expected ?challenge=… (Adobe's endpoint validation)")
        return JsonResponse({"challenge": challenge})

    body = _read_body(request)
    if body is None:
        return _answer(413, f"body is over the {settings.PIMSYNC_WEBHOOK_MAX_BYTES} byte limit")
    document = _parse_json(body)
    if isinstance(document, JsonResponse):
        return document
    if isinstance(document, dict) and set(document) == {"validationUrl"}:
        return _validation_request(document["validationUrl"])

    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        batch = events.events_in(document)
        refused = _refuse_unauthentic(batch, body, headers)
        if refused:
            if refused.status_code == 401:
                REFUSALS.add()
            return refused
        incoming = events.parse(batch)
    except events.EventError as exc:
        return _answer(400, str(exc))

    try:
        result = events.store(incoming, headers)
    except DatabaseError:
        log.exception("cannot store a delivery; answering 503 so Adobe delivers it again")
        return _answer(503, "storage unavailable; deliver again later")
    for event_id in result.accepted:
        log.info("event stored", extra={"event_id": event_id})
    return _answer(200, accepted=len(result.accepted), duplicates=result.duplicates)


def _parse_json(body: bytes) -> object:
    """The JSON document of the body, or the 400 answer that says why it is not one."""
    try:
        return json.loads(body, parse_constant=_not_json, parse_float=_finite_float)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN and 1e400 are all ValueErrors
        return _answer(400, f"body is not valid JSON: {exc}")
    except RecursionError:
        # json's parser gives up near a thousand levels; events.MAX_DEPTH refuses far less anyway.
        return _answer(400, f"the body is nested more than {events.MAX_DEPTH} levels deep; Adobe's events are not")


def _refuse_unauthentic(batch: list[dict], body: bytes, headers: dict[str, str]) -> JsonResponse | None:
    """The 401 or 503 answer for a body not addressed to us or not signed by Adobe; None when it is."""
    # The recipient first, like Adobe's SDKs: a misaddressed body costs no key fetch.
    wrong = [i for i, event in enumerate(batch) if events.recipient_of(event) != settings.ADOBE_CLIENT_ID]
    if not settings.ADOBE_CLIENT_ID or wrong:
        which = "the event" if len(batch) == 1 else f"event [{wrong[0] if wrong else 0}]"
        return _answer(401, f"{which} is not addressed to this client (recipientclientid must equal ADOBE_CLIENT_ID)")
    try:
        signatures.verify(body, headers)
    except signatures.SignatureError as exc:
        return _answer(401, str(exc))
    except signatures.KeyFetchRefused:
        # Logged once a minute by the key store; one line per forged request would flood the log.
        return _answer(503, "too many unknown signing keys were asked for in the last minute; deliver again later")
    except signatures.KeyUnavailable as exc:
        log.error("cannot verify a delivery: %s", exc)
        return _answer(503, "signing keys are unavailable right now; deliver again later")
    return None


def _validation_request(url: object) -> JsonResponse:
    """Adobe's asynchronous validation: an operator must GET the URL within 5 minutes.

    The POST is not signed, so anyone can send one: the log line that asks an operator to open a
    URL is written only for an https URL on Adobe's domain. Anything else is not Adobe's request
    and is answered 400, which also tells a prober nothing was passed on. We never call the URL.
    """
    adobe_url = adobe_validation_url(url)
    if adobe_url is None:
        log.warning("ignored a validationUrl POST: its URL is not an https URL on adobe.io or adobe.com")
        return _answer(400, "validationUrl must be an https URL on adobe.io or adobe.com; ignored")
    log.warning("Adobe asks for asynchronous webhook validation: open %s within 5 minutes", adobe_url)
    return _answer(200, received="validationUrl")
