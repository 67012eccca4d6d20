"""`POST /webhooks/akeneo`: Akeneo's change notifications: verify, store, answer.

Akeneo wants an answer within 5 seconds, so nothing here calls Akeneo, AEM or IMS: the
notifications are stored (`PimNotification`, unique by id: Akeneo delivers at least once) and a
task handles them (`pimsync.pim.notifications`).

Two formats, told apart by their signature headers:
- the Event Platform (https://api.akeneo.com/event-platform/concepts.html): one CloudEvent per
  request, `X-AKENEO-SIGNATURE-PRIMARY` / `-SECONDARY` = hex HMAC-SHA256 of the raw body with the
  subscription's primary / secondary secret; the signature covers no time of delivery, so the
  CloudEvent's own `time` must be within the days its id is remembered (MAX_EVENT_AGE);
- the legacy Events API (https://api.akeneo.com/events-api/security.html): `{"events": […]}` with
  up to 10 events, `X-Akeneo-Request-Signature` = hex HMAC-SHA256 of "<timestamp>.<raw body>",
  refused when `X-Akeneo-Request-Timestamp` is more than 5 minutes away from now.

Any secret in AKENEO_EVENT_SECRETS may have signed (so a secret can be rotated). Without any the
endpoint answers 503 with Retry-After, never 404: the Event Platform suspends a subscription at
once on a 404 (https://api.akeneo.com/event-platform/key-platform-behaviors.html), while a 503 is
retried. Bodies are limited by AKENEO_EVENT_MAX_BYTES, sized for legacy requests of 10 full
products, apart from the limit of Adobe's batches.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from pimsync import inbound, wakeups
from pimsync.inbound import answer, read_body, signed_with_any
from pimsync.models import PimNotification

log = logging.getLogger(__name__)

MAX_LEGACY_EVENTS = 10
TIMESTAMP_TOLERANCE_SECONDS = 300
# How long the 503 of an endpoint without secrets asks Akeneo to wait before delivering again.
NOT_CONFIGURED_RETRY_AFTER_SECONDS = 300
# A CloudEvent is deduplicated by its id while the row of its first delivery is kept; an older
# signed body could be a replay of one whose row is gone, so it is refused. A day short of the
# rows' age covers the senders' clocks being ahead of ours.
MAX_EVENT_AGE = PimNotification.KEEP - timedelta(days=1)
# Notifications pimsync acts on: a product's assets are re-synced. Legacy "removed" is "deleted".
PRODUCT_KINDS = ("product.created", "product.updated", "product.deleted", "product.removed")


class NotificationError(ValueError):
    """A body that is not an Akeneo notification; the message says why (answered 400)."""


@dataclass(frozen=True)
class Notice:
    notification_id: str
    kind: str
    author: str = ""
    product_key: str = ""
    product_uuid: str = ""


@csrf_exempt
@require_POST
def akeneo_webhook(request: HttpRequest) -> JsonResponse:
    """A signed notification (or a legacy batch): stored and acknowledged, handled by a task."""
    if not settings.AKENEO_EVENT_SECRETS:
        refused = answer(503, "Akeneo notifications are not configured here yet (AKENEO_EVENT_SECRETS)")
        refused["Retry-After"] = str(NOT_CONFIGURED_RETRY_AFTER_SECONDS)
        return refused
    body = read_body(request, settings.AKENEO_EVENT_MAX_BYTES)
    if body is None:
        return answer(413, f"body is over the {settings.AKENEO_EVENT_MAX_BYTES} byte limit (AKENEO_EVENT_MAX_BYTES)")
    headers = inbound.lowercase_headers(request)
    problem = unsigned(body, headers, settings.AKENEO_EVENT_SECRETS)
    if problem:
        inbound.REFUSALS.add()
        return answer(401, problem)
    try:
        notices = parse(json.loads(body))
    except (ValueError, RecursionError) as exc:  # NotificationError, bad JSON or UTF-8, absurd nesting
        return answer(400, str(exc)[:300] if isinstance(exc, NotificationError) else "body is not valid JSON")
    try:
        accepted, duplicates = store(notices)
    except DatabaseError:
        log.exception("cannot store an Akeneo notification; answering 503 so Akeneo delivers it again")
        return answer(503, "storage unavailable; deliver again later")
    return answer(200, accepted=accepted, duplicates=duplicates)


# --- signatures -------------------------------------------------------------------------------


def unsigned(body: bytes, headers: dict[str, str], secrets: list[str]) -> str | None:
    """Why the body is not signed by Akeneo with one of `secrets` (None: it is)."""
    legacy = headers.get("x-akeneo-request-signature")
    if legacy is not None:
        stamp = headers.get("x-akeneo-request-timestamp", "").strip()
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) < 16):
            return "X-Akeneo-Request-Timestamp is missing or not a Unix time"
        if abs(time.time() - int(stamp)) > TIMESTAMP_TOLERANCE_SECONDS:
            return "X-Akeneo-Request-Timestamp is more than 5 minutes away from now"
        return (
            None if signed_with_any(legacy, stamp.encode() + b"." + body, secrets) else "the signature does not match"
        )
    algorithm = headers.get("x-akeneo-signature-algorithm")
    if algorithm is not None and algorithm.strip().lower() != "hmacsha256":
        return f"X-AKENEO-SIGNATURE-ALGORITHM must be HmacSHA256, not {algorithm[:40]!r}"
    given = [headers.get(f"x-akeneo-signature-{which}") for which in ("primary", "secondary")]
    given = [signature for signature in given if signature]
    if not given:
        return "no X-AKENEO-SIGNATURE-PRIMARY or -SECONDARY header (nor X-Akeneo-Request-Signature)"
    return (
        None
        if any(signed_with_any(signature, body, secrets) for signature in given)
        else "the signature does not match"
    )


# --- the body ---------------------------------------------------------------------------------


def parse(document: object) -> list[Notice]:
    """The notifications in a verified body: one CloudEvent, or a legacy batch of up to 10."""
    if isinstance(document, dict) and isinstance(document.get("events"), list):
        events = document["events"]
        if not 1 <= len(events) <= MAX_LEGACY_EVENTS:
            raise NotificationError(f"an Events API body holds 1 to {MAX_LEGACY_EVENTS} events, not {len(events)}")
        return [_legacy(index, event) for index, event in enumerate(events)]
    if isinstance(document, dict) and "specversion" in document:
        return [_cloud_event(document)]
    raise NotificationError("the body is neither an Event Platform CloudEvent nor an Events API batch")


def _text(value: object, limit: int = 255) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _author(value: object) -> str:
    """Who made the change, as Akeneo names it: a user name (Events API), or the Event Platform's
    `{"identifier": <user uuid>, "type": "api" | "ui" | …}` shown as "<identifier> (<type>)"."""
    if isinstance(value, dict):
        identifier, kind = _text(value.get("identifier"), 200), _text(value.get("type"), 40)
        return f"{identifier} ({kind})" if identifier and kind else identifier or kind
    return _text(value)


def _cloud_event(event: dict) -> Notice:
    event_id, kind = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 255:
        raise NotificationError("the CloudEvent has no id (a string of at most 255 characters)")
    if not isinstance(kind, str) or not kind:
        raise NotificationError("the CloudEvent has no type")
    _check_time(event.get("time"))
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    product = data.get("product") if isinstance(data.get("product"), dict) else {}
    return Notice(
        notification_id=event_id,
        kind=_text(kind.removeprefix("com.akeneo.pim.v1."), 100),
        author=_author(data.get("author") or event.get("author")),
        product_key=_text(product.get("identifier")),
        product_uuid=_text(product.get("uuid"), 64),
    )


def _check_time(stamp: object) -> None:
    """NotificationError unless the CloudEvent's `time` is within MAX_EVENT_AGE before now and not
    more than TIMESTAMP_TOLERANCE_SECONDS after it."""
    if not isinstance(stamp, str) or not stamp:
        raise NotificationError("the CloudEvent has no time; a signed body without one could be replayed at any time")
    try:
        when = datetime.fromisoformat(stamp[:64])
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise NotificationError(f"the CloudEvent's time {stamp[:64]!r} is not an RFC 3339 time with its offset")
    now = timezone.now()
    if when < now - MAX_EVENT_AGE:
        raise NotificationError(
            f"the CloudEvent's time {stamp[:64]} is more than {MAX_EVENT_AGE.days} days ago: "
            "too old to tell from a replay"
        )
    if when > now + timedelta(seconds=TIMESTAMP_TOLERANCE_SECONDS):
        raise NotificationError(
            f"the CloudEvent's time {stamp[:64]} is more than 5 minutes ahead of now (check the clocks)"
        )


def _legacy(index: int, event: object) -> Notice:
    if not isinstance(event, dict):
        raise NotificationError(f"events[{index}] is not an object")
    event_id, action = event.get("event_id"), event.get("action")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 255:
        raise NotificationError(f"events[{index}] has no event_id")
    if not isinstance(action, str) or not action:
        raise NotificationError(f"events[{index}] has no action")
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    resource = data.get("resource") if isinstance(data.get("resource"), dict) else {}
    return Notice(
        notification_id=event_id,
        kind=_text(action, 100),
        author=_author(event.get("author")),
        product_key=_text(resource.get("identifier")),
        product_uuid=_text(resource.get("uuid"), 64),
    )


def store(notices: list[Notice]) -> tuple[int, int]:
    """Store new notifications and queue their handling, in one transaction; (accepted, duplicates)."""
    unique = {notice.notification_id: notice for notice in notices}
    with transaction.atomic():
        known = set(
            PimNotification.objects.filter(notification_id__in=list(unique)).values_list("notification_id", flat=True)
        )
        rows = [_row(notice) for key, notice in unique.items() if key not in known]
        PimNotification.objects.bulk_create(rows, ignore_conflicts=True)
        if any(row.status == PimNotification.State.RECEIVED for row in rows):
            wakeups.queue_pim_notifications()
    return len(rows), len(notices) - len(rows)


def _row(notice: Notice) -> PimNotification:
    row = PimNotification(
        notification_id=notice.notification_id,
        kind=notice.kind,
        author=notice.author,
        product_key=notice.product_key,
        product_uuid=notice.product_uuid,
    )
    if notice.kind not in PRODUCT_KINDS:
        row.status, row.reason = PimNotification.State.IGNORED, "not about a product"
    elif not (notice.product_key or notice.product_uuid):
        row.status, row.reason = PimNotification.State.IGNORED, "names no product (neither identifier nor uuid)"
    return row
