"""`/webhooks/pim`: the PIM says which products changed; their assets are marked stale and re-synced.

Signed like Stripe's webhooks (https://docs.stripe.com/webhooks#verify-manually): the header
`X-Pimsync-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, keyed with
PIM_WEBHOOK_SECRET. Several `v1=` may be sent and any one that matches passes, and the setting may
hold several secrets separated by commas, so a secret can be rotated without a window in which
either side is refused. A timestamp more than TOLERANCE seconds away from now is refused, so a
captured request cannot be replayed later; within that window a request acted on once is
remembered (`SeenSignature`, on every node), so a replay is answered as a duplicate and starts nothing.

Verify, queue, answer: the signature is checked on the raw bytes before anything is parsed, and
nothing here calls the PIM or AEM (marking stale and creating the re-sync job are a few queries).
Answers: 202 queued, 200 a duplicate (nothing done), 400 not a list of product keys, 401 not
signed by a known secret (or too old, or from the future), 404 while PIM_WEBHOOK_SECRET is unset,
413 too large, 503 when the database is unavailable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from datetime import UTC, datetime

from django.conf import settings
from django.db import DatabaseError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from pimsync import inbound, resync
from pimsync.inbound import answer, read_body, signed_with_any
from pimsync.models import SeenSignature

log = logging.getLogger(__name__)

HEADER = "X-Pimsync-Signature"
# Seconds a signed request stays valid, either side of now (Stripe's default tolerance).
TOLERANCE = 300
MAX_BODY_BYTES = 256 * 1024
MAX_KEYS = resync.MAX_PRODUCT_KEYS
MAX_KEY_LENGTH = 255
# A header longer than this, or with more signatures, is not one a PIM sends: refused unread.
MAX_HEADER_LENGTH = 2048
MAX_SIGNATURES = 8
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def secrets() -> list[str]:
    """The secrets a request may be signed with (PIM_WEBHOOK_SECRET, comma-separated); [] = off."""
    return [secret.strip() for secret in (settings.PIM_WEBHOOK_SECRET or "").split(",") if secret.strip()]


def signature(body: bytes, secret: str, timestamp: int) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` keyed with `secret`."""
    return inbound.hmac_sha256(secret, f"{timestamp}.".encode() + body)


def signed_header(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `X-Pimsync-Signature` value for `body` (what a PIM, or `simulate_pim_change`, sends)."""
    return inbound.pimsync_signature(body, secret, int(time.time()) if timestamp is None else timestamp)


class Unsigned(Exception):
    """The request is not signed with a known secret; the message says why, never with a secret."""


def verify(body: bytes, header: str, keys: list[str], now: float | None = None) -> None:
    """Return when `header` signs `body` with one of `keys` within TOLERANCE of now, else Unsigned."""
    timestamp, candidates = _parse(header)
    now = time.time() if now is None else now
    if abs(now - timestamp) > TOLERANCE:
        raise Unsigned(f"the signature's timestamp is more than {TOLERANCE} s from now (check the clocks)")
    message = f"{timestamp}.".encode() + body
    if not any(signed_with_any(given, message, keys) for given in candidates):
        raise Unsigned("no v1 signature matches this body with PIM_WEBHOOK_SECRET")


def _parse(header: str) -> tuple[int, list[str]]:
    """`t` and the `v1` values of a signature header; Unsigned when it is missing or malformed."""
    if not header:
        raise Unsigned(f"the {HEADER} header is missing")
    if len(header) > MAX_HEADER_LENGTH:
        raise Unsigned(f"the {HEADER} header is too long")
    timestamp, candidates = None, []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t":
            if timestamp is not None or not (value.isascii() and value.isdigit() and len(value) <= 12):
                raise Unsigned(f"the {HEADER} header needs one t=<unix seconds>")
            timestamp = int(value)
        elif name == "v1" and HEX64.match(value):
            candidates.append(value)
    if timestamp is None or not candidates or len(candidates) > MAX_SIGNATURES:
        raise Unsigned(f"the {HEADER} header must be t=<unix seconds>,v1=<64 hex digits> (up to {MAX_SIGNATURES} v1)")
    return timestamp, candidates


def seen_key(body: bytes, header: str) -> tuple[str, datetime]:
    """A verified request's replay key (the SHA-256 of its signed message) and when it may be forgotten."""
    timestamp, _ = _parse(header)
    digest = hashlib.sha256(f"{timestamp}.".encode() + body).hexdigest()
    return digest, datetime.fromtimestamp(timestamp + TOLERANCE, tz=UTC)


class BadBody(ValueError):
    """The body is not `{"product_keys": [...]}` as documented; the message says what is wrong."""


def product_keys(body: bytes) -> list[str]:
    """The distinct product keys of a verified body, in the order given; BadBody otherwise."""
    try:
        document = json.loads(body)
    except ValueError as exc:  # also bytes that are not UTF-8
        raise BadBody(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise BadBody('the body is nested too deep; expected {"product_keys": ["…", …]}') from None
    if not isinstance(document, dict) or set(document) != {"product_keys"}:
        raise BadBody('expected a JSON object with exactly one member, {"product_keys": ["…", …]}')
    keys = document["product_keys"]
    if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_KEYS:
        raise BadBody(f"product_keys must be a list of 1 to {MAX_KEYS} product keys")
    for index, key in enumerate(keys):
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise BadBody(
                f"product_keys[{index}] must be a non-empty string of at most {MAX_KEY_LENGTH} printable characters"
            )
    return list(dict.fromkeys(keys))


@csrf_exempt
def pim_webhook(request: HttpRequest) -> JsonResponse:
    """Verify, mark the products' assets stale and queue their re-sync, answer 202."""
    keys = secrets()
    if not keys:
        return answer(404, "not found")
    if request.method != "POST":
        return answer(405, "POST a signed JSON body")
    body = read_body(request, MAX_BODY_BYTES)
    if body is None:
        return answer(413, f"the body is over the {MAX_BODY_BYTES} byte limit")
    try:
        verify(body, request.headers.get(HEADER, ""), keys)
    except Unsigned as exc:
        log.info("PIM webhook refused: %s", exc)
        return answer(401, str(exc))
    try:
        changed = product_keys(body)
    except BadBody as exc:
        return answer(400, str(exc))
    digest, expires_at = seen_key(body, request.headers[HEADER])
    try:
        # One transaction: a request whose job could not be stored is not remembered either, so
        # the PIM's retry of it is acted on.
        with transaction.atomic():
            if not SeenSignature.first_time(digest, expires_at):
                log.info("PIM webhook: a signed request already acted on came again; ignored")
                return answer(200, accepted=0, duplicate=True, job=None)
            job = resync.pim_changed(changed, why="PIM webhook")
    except DatabaseError:
        log.exception("cannot queue a PIM change; answering 503 so the PIM sends it again")
        return answer(503, "storage unavailable; send again later")
    assets = job.total if job else 0
    log.info("PIM webhook: %s product(s) changed, %s asset(s) to re-sync, job %s", len(changed), assets, job and job.pk)
    return answer(202, accepted=len(changed), assets=assets, job=job.pk if job else None)
