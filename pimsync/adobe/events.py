"""From an authenticated webhook body to stored Event rows (docs/adobe-events.md).

`parse()` checks the shape and says exactly what is wrong; `store()` writes one transaction per
request, decides without any outbound call whether an event needs the worker, and if so makes
sure one wakes up (`pimsync.wakeups`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from pimsync import inbound, plain_sql
from pimsync.models import Arrival, Event, EventType, Status
from pimsync.wakeups import DrainPromise, wake, wake_for_new_events


class EventError(ValueError):
    """A body that is JSON but not (a batch of) Adobe events; the message says why."""


def event_id_of(event: Mapping) -> str:
    """`eventid`, with the deprecated `event_id` as fallback (https://developer.adobe.com/events/docs/support/faq/)."""
    return str(event.get("eventid") or event.get("event_id") or "")


def body_event_id(event: Mapping) -> str:
    """The id a delivered event is stored under: `eventid`, `event_id`, then the CloudEvents `id`.

    Only ids inside the signed body count. The `x-adobe-event-id` header is not signed: taking an
    id from it would let anyone replay a captured body as a new event under a new header.
    """
    return event_id_of(event) or str(event.get("id") or "")


def recipient_of(event: Mapping) -> str:
    """`recipientclientid`, with the deprecated `recipient_client_id` as fallback."""
    return str(event.get("recipientclientid") or event.get("recipient_client_id") or "")


# Adobe's events nest about five levels deep; anything far deeper is not an event.
MAX_DEPTH = 64


def _check_document(body: object) -> None:
    """Refuse bodies nested deeper than MAX_DEPTH or holding NUL (`inbound.document_problem`)."""
    problem = inbound.document_problem(body, MAX_DEPTH)
    if problem:
        raise EventError(f"the body {problem}")


def events_in(body: object) -> list[dict]:
    """The events of a body: one object, or an array (batch delivery) of objects."""
    if isinstance(body, dict):
        _check_document(body)
        return [body]
    if isinstance(body, list):
        if not body:
            raise EventError("the batch is an empty array; expected at least one event")
        if len(body) > settings.PIMSYNC_WEBHOOK_MAX_EVENTS:
            # Before walking the body: a huge array is refused without looking at its items.
            raise EventError(
                f"the batch holds {len(body)} events; at most {settings.PIMSYNC_WEBHOOK_MAX_EVENTS} are allowed"
            )
        _check_document(body)
        for index, item in enumerate(body):
            if not isinstance(item, dict):
                raise EventError(f"event [{index}] is a JSON {type(item).__name__}, not an object")
        return body
    raise EventError(f"the body is a JSON {type(body).__name__}; expected an event object or an array of events")


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: object) -> datetime | None:
    """CloudEvents `time`; Adobe sends up to nine fractional digits, Python reads six."""
    # An RFC 3339 time is about 35 characters; a longer value is not one, so it is not scanned.
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else timezone.make_aware(parsed, timezone.UTC)


@dataclass
class Incoming:
    """One event of a body, with what pimsync reads out of it."""

    event_id: str
    payload: dict
    fields: dict = field(default_factory=dict)


def _text(value: object, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def parse(events: list[dict]) -> list[Incoming]:
    """Check the envelope of every event; raise EventError naming the first problem."""
    parsed = []
    for index, event in enumerate(events):
        where = f"event [{index}]" if len(events) > 1 else "the event"
        event_id = body_event_id(event)
        missing = [name for name in ("type", "source") if not isinstance(event.get(name), str) or not event.get(name)]
        if not event_id:
            missing.insert(0, "eventid")
        if missing:
            raise EventError(f"{where} has no {', '.join(missing)}")
        if len(event_id) > 255:
            raise EventError(f"{where} has an eventid longer than 255 characters")
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        repo = data.get("repositoryMetadata") if isinstance(data.get("repositoryMetadata"), dict) else {}
        path = _text(repo.get("repo:path"), 1024)
        parsed.append(
            Incoming(
                event_id=event_id,
                payload=event,
                fields={
                    "cloudevent_id": _text(event.get("id"), 255),
                    "type": event["type"][:255],
                    "source": event["source"][:255],
                    "time": parse_time(event.get("time")),
                    "asset_id": _text(data.get("assetId") or repo.get("repo:assetId"), 255),
                    "asset_path": path,
                    "asset_name": _text(repo.get("repo:name"), 255) or path.rsplit("/", 1)[-1][:255],
                    "mime_type": _text(repo.get("dc:format"), 255),
                },
            )
        )
    return parsed


def triage(fields: dict, payload: dict) -> tuple[str, str]:
    """Status and reason for a new event: does it need the worker, and if not, why not."""
    expected_source = settings.AEM_EVENT_SOURCE
    if not expected_source:
        return Status.IGNORED, "AEM_EVENT_SOURCE is not configured, so no event source is trusted"
    if fields["source"] != expected_source:
        return Status.IGNORED, f"source {fields['source']!r} is not this AEM environment ({expected_source})"
    if fields["type"] not in EventType.HANDLED:
        return Status.IGNORED, f"pimsync does not handle {fields['type']} events"
    if not fields["asset_id"]:
        return Status.IGNORED, "the event names no asset (data.assetId is missing)"
    if fields["type"] == EventType.METADATA_UPDATED and is_own_write(payload):
        return Status.IGNORED, "pimsync's own metadata write echoing back"
    return Status.RECEIVED, ""


def is_own_write(payload: dict) -> bool:
    """A change made by pimsync's technical account: AEM names the actor in `data.user`, and the API's
    writes run as the credential's technical account user."""
    account = settings.ADOBE_TECHNICAL_ACCOUNT_EMAIL.lower()
    user = (payload.get("data") or {}).get("user") or {}
    if not account or not isinstance(user, dict):
        return False
    return account in {str(user.get("principalId", "")).lower(), str(user.get("imsUserId", "")).lower()}


@dataclass
class StoreResult:
    """The ids stored as new events, and how many events of the body were already known."""

    accepted: list[str]
    duplicates: int


def _insert_new(rows: list[dict]) -> set[str]:
    """INSERT … ON CONFLICT (event_id) DO NOTHING RETURNING event_id, in one round trip (per
    `rows_per_statement()` rows).

    One statement instead of a SELECT for known ids plus an INSERT: the webhook is CPU-bound in
    Django, and this is its hottest path (bench: ingest). RETURNING names exactly the new rows,
    also when a concurrent request stores the same id at the same moment. PostgreSQL and SQLite
    (≥ 3.35) both speak this SQL. `rows` are column values by field name, the rest of the fields
    take their defaults; values go through each field's own database preparation. Plain values,
    not `Event` instances: building a model instance (its __init__ and init signals) cost a tenth
    of the request's CPU in a py-spy profile.
    """
    if not rows:
        return set()
    unknown = set().union(*rows) - plain_sql.column_names(Event)
    if unknown:  # a misspelled column would otherwise be dropped silently
        raise TypeError(f"not columns of Event: {', '.join(sorted(unknown))}")
    # The connection itself, not the `connection` proxy: each of the proxy's attribute lookups
    # goes through asgiref's thread-local (7% of a delivery's CPU in py-spy).
    db = connections[DEFAULT_DB_ALIAS]
    values = [plain_sql.prepared(Event, row, db) for row in rows]
    # A journal page can hold thousands of events: `plain_sql.insert` splits them within the database's
    # limit of bound parameters, in the caller's transaction (`store`).
    returned = plain_sql.insert(Event, values, _ON_CONFLICT)
    return {event_id for (event_id,) in returned}


# What makes the INSERT skip a known event id and name the new ones.
_ON_CONFLICT = 'ON CONFLICT ("event_id") DO NOTHING RETURNING "event_id"'


def rows_per_statement() -> int:
    """How many events one INSERT can store within the database's limit of bound parameters."""
    return plain_sql.rows_per_statement(Event)


def store(incoming: list[Incoming], headers: Mapping[str, str], arrived_by: str = Arrival.WEBHOOK) -> StoreResult:
    """Store new events, all or none, with a wake-up when one needs the worker (in the same
    transaction, unless a running or queued drain promises to look after this commit); a known
    event id is a duplicate, not new work (whether the webhook or the journal brought it first)."""
    unique: dict[str, Incoming] = {}
    for item in incoming:
        unique.setdefault(item.event_id, item)
    retry_count = headers.get("x-adobe-retry-count", "")
    delivery_retry_count = int(retry_count) if retry_count.isdigit() and len(retry_count) < 7 else None
    now = timezone.now()
    rows = []
    for event_id, item in unique.items():
        status, reason = triage(item.fields, item.payload)
        rows.append(
            {
                "event_id": event_id,
                "payload": item.payload,
                "status": status,
                "reason": reason,
                "received_at": now,
                "next_attempt_at": now if status == Status.RECEIVED else None,
                "finished_at": now if status == Status.IGNORED else None,
                "delivery_id": headers.get("x-adobe-delivery-id", "")[:255],
                "delivery_retry_count": delivery_retry_count,
                "arrived_by": arrived_by,
                **item.fields,
            }
        )

    def needs_worker(ids) -> bool:
        return any(row["status"] == Status.RECEIVED for row in rows if row["event_id"] in ids)

    must_wake = needs_worker(unique) and not DrainPromise.covers_new_events()
    if len(rows) <= rows_per_statement() and not must_wake:
        # Nothing for the worker, or a drain promises to look after this commit: the INSERT
        # alone is one statement, committed when it returns, and needs no transaction of its
        # own (opening and closing one was a tenth of the webhook's CPU in py-spy).
        new = _insert_new(rows)
        if needs_worker(new) and not DrainPromise.covers_new_events():
            wake()  # the promise ran out while the INSERT ran (the sweeper covers a failure)
    else:
        # The rows and their wake-up in one transaction: both or neither (wake_for_new_events).
        with transaction.atomic():
            new = _insert_new(rows)
            if needs_worker(new):
                wake_for_new_events()
    accepted = [row["event_id"] for row in rows if row["event_id"] in new]
    return StoreResult(accepted=accepted, duplicates=len(incoming) - len(accepted))
