"""Pauses every worker honours: after a 429 from AEM or the PIM, no call to that system goes out,
from any process on any node, before its Retry-After has passed.

A pause is one `Pause` row per system in the database every process already shares (Redis is
optional, so it cannot hold this). `outbound/http.request(..., pause_key=...)` consults it before
each call and refuses to send while it runs; a 429 answer extends it. A refused call is an
ordinary retryable error, so its event waits for the pause like any retry and no worker thread
sleeps.

Each process reads a system's row at most once a second (`READ_EVERY_SECONDS`) and keeps the end
it read: four reads per asset were a quarter of a worker's statements. The process that records a
pause honours it at once; the others within a second, in which a few more calls may go out and be
answered 429 themselves (which only extends the pause).

A pause only ever moves later: one `INSERT … ON CONFLICT DO UPDATE … WHERE until < new` (the same
statement on PostgreSQL and SQLite), so two workers recording at once keep the later end and a
short Retry-After never cuts a long one.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.utils import timezone

from pimsync.models import Pause

# A 429 without a usable Retry-After pauses the system this long.
DEFAULT_SECONDS = 30.0
# How the dashboard names the systems.
LABELS = {"aem": "AEM", "pim": "The PIM", "akeneo": "Akeneo"}
# The table and its columns, quoted (`until` is a keyword in some SQL dialects).
_TABLE, _NAME, _UNTIL, _REASON, _SINCE = (
    f'"{name}"' for name in (Pause._meta.db_table, "name", "until", "reason", "since")
)


# How long a process goes by the pause end it last read before reading the row again.
READ_EVERY_SECONDS = 1.0
# This process's last read of each system's row: name -> (time.monotonic() of the read, end or None).
_read: dict[str, tuple[float, datetime | None]] = {}
# How many pauses this process recorded per system: a read that began before one is not kept.
_recorded: dict[str, int] = {}
_memo_lock = threading.Lock()


def remaining(name: str, now: datetime | None = None) -> tuple[float, datetime | None]:
    """Seconds until calls to `name` may go out again (0 when not paused), and the pause's end.

    Runs before every call to AEM and the PIM: the row is read at most once a second per process,
    and then in plain SQL, since the ORM's query building costs several times the CPU of the read
    itself (bench: throttle)."""
    read_at, until = _read.get(name, (None, None))
    if read_at is None or time.monotonic() - read_at >= READ_EVERY_SECONDS:
        read_at, recorded = time.monotonic(), _recorded.get(name, 0)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {_UNTIL} FROM {_TABLE} WHERE {_NAME} = %s", [name])
            row = cursor.fetchone()
        until = _aware(row[0]) if row is not None else None
        with _memo_lock:
            if _recorded.get(name, 0) == recorded:  # else another thread's pause may be newer
                _read[name] = (read_at, until)
    if until is None:
        return 0.0, None
    left = (until - (now or timezone.now())).total_seconds()
    return (left, until) if left > 0 else (0.0, None)


def forget() -> None:
    """Read every row again at the next call (tests: each starts from the database as it is)."""
    _read.clear()


def _aware(value) -> datetime:
    """The stored end as an aware datetime: SQLite hands plain SQL its naive UTC value (or text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


def extend(name: str, seconds: float, reason: str = "") -> datetime:
    """Pause `name` until `seconds` from now, unless it is already paused longer; the end asked for."""
    now = timezone.now()
    until = now + timedelta(seconds=max(0.0, seconds))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_TABLE} ({_NAME}, {_UNTIL}, {_REASON}, {_SINCE}) VALUES (%s, %s, %s, %s) "
            f"ON CONFLICT ({_NAME}) DO UPDATE SET {_UNTIL} = excluded.{_UNTIL}, "
            f"{_REASON} = excluded.{_REASON}, {_SINCE} = excluded.{_SINCE} "
            f"WHERE {_TABLE}.{_UNTIL} < excluded.{_UNTIL}",
            [name, _db(until), reason[:255], _db(now)],
        )
    with _memo_lock:  # this process honours its own pause from the next call on
        _recorded[name] = _recorded.get(name, 0) + 1
        _read.pop(name, None)
    return until


def _db(moment: datetime):
    """A datetime as the backend stores it (SQLite compares the stored text, so it must match the ORM's)."""
    return connection.ops.adapt_datetimefield_value(moment)


def label(name: str) -> str:
    return LABELS.get(name, name)


def active(now: datetime | None = None) -> list[dict]:
    """The pauses running now, soonest end first: label, end, seconds left, reason."""
    now = now or timezone.now()
    return [
        {
            "name": pause.name,
            "label": label(pause.name),
            "until": pause.until,
            "seconds": (pause.until - now).total_seconds(),
            "reason": pause.reason,
        }
        for pause in Pause.objects.filter(until__gt=now).order_by("until")
    ]
