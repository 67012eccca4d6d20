"""`/webhooks/aem`: the Adobe I/O Events webhook (SPEC §3).

Verify, store, answer; nothing here calls the PIM, AEM or IMS (only the signing-key server, and
only when a key is not cached). Answers: 200 stored, 400 not an event, 401 not authentic,
413 too large, 503 when we cannot store or verify right now (Adobe retries 5xx, not 4xx).
"""

from __future__ import annotations

import json
import logging
import math

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from pimsync import events, signatures
from pimsync.tasks import drain_will_poll, uses_orm_broker, wake

log = logging.getLogger(__name__)


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
    if request.method == "GET":
        challenge = request.GET.get("challenge")
        if challenge is None:
            return _answer(400, "expected ?challenge=… (Adobe's endpoint validation)")
        return JsonResponse({"challenge": challenge})

    body = _read_body(request)
    if body is None:
        return _answer(413, f"body is over the {settings.PIMSYNC_WEBHOOK_MAX_BYTES} byte limit")
    try:
        document = json.loads(body, parse_constant=_not_json, parse_float=_finite_float)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _answer(400, f"body is not valid JSON: {exc}")
    except ValueError as exc:
        return _answer(400, f"body is not valid JSON: {exc}")

    if isinstance(document, dict) and set(document) == {"validationUrl"}:
        # Adobe's asynchronous validation: an operator must GET this URL within 5 minutes
        # (PROTOCOLS §1.1). We only log it; we never call a URL taken from a request.
        log.warning(
            "Adobe asks for asynchronous webhook validation: open %s within 5 minutes",
            str(document["validationUrl"])[:500],
        )
        return _answer(200, received="validationUrl")

    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        batch = events.events_in(document)
    except events.EventError as exc:
        return _answer(400, str(exc))
    # The recipient first, like Adobe's SDKs: a misaddressed body costs no key fetch.
    wrong = [i for i, event in enumerate(batch) if events.recipient_of(event) != settings.ADOBE_CLIENT_ID]
    if not settings.ADOBE_CLIENT_ID or wrong:
        which = "the event" if len(batch) == 1 else f"event [{wrong[0] if wrong else 0}]"
        return _answer(401, f"{which} is not addressed to this client (recipientclientid must equal ADOBE_CLIENT_ID)")
    try:
        signatures.verify(body, headers)
    except signatures.SignatureError as exc:
        return _answer(401, str(exc))
    except signatures.KeyUnavailable as exc:
        log.error("cannot verify a delivery: %s", exc)
        return _answer(503, "signing keys are unavailable right now; deliver again later")

    try:
        incoming = events.parse(batch, headers.get("x-adobe-event-id", ""))
    except events.EventError as exc:
        return _answer(400, str(exc))

    try:
        result = events.store(incoming, headers)
    except DatabaseError:
        log.exception("cannot store a delivery; answering 503 so Adobe delivers it again")
        return _answer(503, "storage unavailable; deliver again later")
    if result.needs_worker and not uses_orm_broker() and not drain_will_poll():
        # Redis: after the commit. A wake-up lost here (broker down, process killed right now)
        # is covered by the sweeper, which wakes a worker for every due event each minute.
        wake()
    for event_id in result.accepted:
        log.info("event stored", extra={"event_id": event_id})
    return _answer(200, accepted=len(result.accepted), duplicates=result.duplicates)
