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
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from pimsync import inbound
from pimsync.adobe import events, signatures
from pimsync.inbound import answer, read_body

log = logging.getLogger(__name__)


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


@csrf_exempt
@require_http_methods(["GET", "POST"])
def aem_webhook(request: HttpRequest) -> JsonResponse:
    """Adobe's challenge (GET); a delivery (POST): verify, store, answer."""
    if request.method == "GET":
        challenge = request.GET.get("challenge")
        if challenge is None:
            return answer(400, "expected ?challenge=… (Adobe's endpoint validation)")
        return JsonResponse({"challenge": challenge})

    body = read_body(request, settings.PIMSYNC_WEBHOOK_MAX_BYTES)
    if body is None:
        return answer(413, f"body is over the {settings.PIMSYNC_WEBHOOK_MAX_BYTES} byte limit")
    document = _parse_json(body)
    if isinstance(document, JsonResponse):
        return document
    if isinstance(document, dict) and set(document) == {"validationUrl"}:
        return _validation_request(document["validationUrl"])

    headers = inbound.lowercase_headers(request)
    try:
        batch = events.events_in(document)
        refused = _refuse_unauthentic(batch, body, headers)
        if refused:
            if refused.status_code == 401:
                inbound.REFUSALS.add()
            return refused
        incoming = events.parse(batch)
    except events.EventError as exc:
        return answer(400, str(exc))

    try:
        result = events.store(incoming, headers)
    except DatabaseError:
        log.exception("cannot store a delivery; answering 503 so Adobe delivers it again")
        return answer(503, "storage unavailable; deliver again later")
    for event_id in result.accepted:
        log.info("event stored", extra={"event_id": event_id})
    return answer(200, accepted=len(result.accepted), duplicates=result.duplicates)


def _parse_json(body: bytes) -> object:
    """The JSON document of the body, or the 400 answer that says why it is not one."""
    try:
        return json.loads(body, parse_constant=_not_json, parse_float=_finite_float)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN and 1e400 are all ValueErrors
        return answer(400, f"body is not valid JSON: {exc}")
    except RecursionError:
        # json's parser gives up near a thousand levels; events.MAX_DEPTH refuses far less anyway.
        return answer(400, f"the body is nested more than {events.MAX_DEPTH} levels deep; Adobe's events are not")


def _refuse_unauthentic(batch: list[dict], body: bytes, headers: dict[str, str]) -> JsonResponse | None:
    """The 401 or 503 answer for a body not addressed to us or not signed by Adobe; None when it is."""
    # The recipient first, like Adobe's SDKs: a misaddressed body costs no key fetch.
    wrong = [i for i, event in enumerate(batch) if events.recipient_of(event) != settings.ADOBE_CLIENT_ID]
    if not settings.ADOBE_CLIENT_ID or wrong:
        which = "the event" if len(batch) == 1 else f"event [{wrong[0] if wrong else 0}]"
        return answer(401, f"{which} is not addressed to this client (recipientclientid must equal ADOBE_CLIENT_ID)")
    try:
        signatures.verify(body, headers)
    except signatures.SignatureError as exc:
        return answer(401, str(exc))
    except signatures.KeyFetchRefused:
        # Logged once a minute by the key store; one line per forged request would flood the log.
        return answer(503, "too many unknown signing keys were asked for in the last minute; deliver again later")
    except signatures.KeyUnavailable as exc:
        log.error("cannot verify a delivery: %s", exc)
        return answer(503, "signing keys are unavailable right now; deliver again later")
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
        return answer(400, "validationUrl must be an https URL on adobe.io or adobe.com; ignored")
    log.warning("Adobe asks for asynchronous webhook validation: open %s within 5 minutes", adobe_url)
    return answer(200, received="validationUrl")
