"""Leases: a row that one process at a time may hold, across every node.

A lease is two columns on the row it guards, `lease_token` and `lease_until`, taken with one
conditional UPDATE (free, or expired) so two processes never both win, and given back or extended
only by the token that took it. A holder that dies loses nothing but time: its lease runs out.
Assets, the journal's cursor, the PIM poll's cursor and the write-back's per-product lock carry
their own lease; work with no row of its own (the re-sync scheduler) takes a named `Lock`. A set
of rows leased one at a time by many holders (`acquire_any`) is a semaphore across nodes: the
calls in flight to Akeneo (`pimsync.outbound.slots`).
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, models, transaction
from django.utils import timezone

from pimsync import plain_sql

# How often a waiting `acquire` asks again.
WAIT_STEP_SECONDS = 0.05


class Leased:
    """Mixin for a model whose rows carry `lease_token` and `lease_until` (declared by the model)."""

    @classmethod
    def acquire(cls, pk, duration: timedelta | None = None, *, wait: float = 0.0) -> str | None:
        """Take the lease of row `pk` (created when missing) for `duration`, by default a task's
        timeout (a holder that outlived its task is dead); its token, or None while another
        holder's lease runs (after waiting up to `wait` seconds for it to end)."""
        if duration is None:
            duration = timedelta(seconds=settings.PIMSYNC_TASK_TIMEOUT_SECONDS)
        deadline = time.monotonic() + wait
        while True:
            taken = cls._take(pk, duration)
            if taken is not None or time.monotonic() >= deadline:
                return taken[0] if taken else None
            time.sleep(WAIT_STEP_SECONDS)

    @classmethod
    def acquire_and_read(cls, pk, duration: timedelta | None = None) -> tuple[str, models.Model] | None:
        """`acquire(pk, duration)` without waiting, and the row as the lease found it: (token,
        row), or None while another holder's lease runs. The worker used to take the lease and
        then SELECT the same row for every asset."""
        if duration is None:
            duration = timedelta(seconds=settings.PIMSYNC_TASK_TIMEOUT_SECONDS)
        return cls._take(pk, duration)

    @classmethod
    def _take(cls, pk, duration: timedelta) -> tuple[str, models.Model] | None:
        """The lease of row `pk` and the row as taken, or None while another holder's lease runs."""
        now, token = timezone.now(), uuid.uuid4().hex
        row = cls._take_free(pk, token, now, now + duration)
        if row is not None:
            return token, row
        if cls.objects.filter(pk=pk).exists():
            # Held, or created free by another process a moment ago (a cursor's `load()`): once more.
            row = cls._take_free(pk, token, now, now + duration)
            return (token, row) if row is not None else None
        # No row yet: creating it takes the lease. If another process created it first, the
        # primary key says so, and the row may be free: ask once more.
        try:
            if connection.in_atomic_block:  # keep the caller's transaction usable on a conflict
                with transaction.atomic():
                    row = cls.objects.create(pk=pk, lease_token=token, lease_until=now + duration)
            else:
                row = cls.objects.create(pk=pk, lease_token=token, lease_until=now + duration)
        except IntegrityError:
            row = cls._take_free(pk, token, now, now + duration)
        return (token, row) if row is not None else None

    @classmethod
    def _take_free(cls, pk, token: str, now, until) -> models.Model | None:
        """Row `pk` with its lease given to `token` until `until`, if no lease ran at `now`; the row
        as updated, in one `UPDATE … RETURNING` (PostgreSQL and SQLite ≥ 3.35)."""
        quote, adapt = connection.ops.quote_name, connection.ops.adapt_datetimefield_value
        token_column, until_column = quote("lease_token"), quote("lease_until")
        sql = (
            f"UPDATE {quote(cls._meta.db_table)} SET {token_column} = %s, {until_column} = %s "
            f"WHERE {quote(cls._meta.pk.column)} = %s AND ({until_column} IS NULL OR {until_column} < %s) "
            f"RETURNING {plain_sql.columns(cls)}"
        )
        pk = cls._meta.pk.get_db_prep_value(pk, connection)
        rows = plain_sql.instances(cls, sql, [token, adapt(until), pk, adapt(now)])
        return rows[0] if rows else None

    @classmethod
    def acquire_any(cls, pks: list, duration: timedelta) -> str | None:
        """Take the lease of any one free row among `pks` for `duration`, with one conditional
        UPDATE (a random free row, so takers spread over them); its token, or None while every row
        is held or none exists (`create_missing`). Give it back with `release_any(pks, token)`."""
        now, token = timezone.now(), uuid.uuid4().hex
        free = models.Q(lease_until__isnull=True) | models.Q(lease_until__lt=now)
        one = cls.objects.filter(free, pk__in=pks).order_by("?").values("pk")[:1]
        # `free` again on the row updated: of two takers that picked the same row, the one that
        # updates it second finds it held (PostgreSQL re-checks the condition once the first one
        # committed; SQLite runs one writer at a time) and updates nothing.
        taken = cls.objects.filter(free, pk__in=models.Subquery(one)).update(
            lease_token=token, lease_until=now + duration
        )
        return token if taken else None

    @classmethod
    def release_any(cls, pks: list, token: str) -> None:
        """Give back the row among `pks` that `token` holds (nothing if its lease was lost)."""
        cls.objects.filter(pk__in=pks, lease_token=token).update(lease_token="", lease_until=None)

    @classmethod
    def create_missing(cls, pks: list) -> None:
        """Create the rows among `pks` that do not exist yet, free (one round trip; existing rows stay).

        Plain SQL (`pimsync.plain_sql`): the drain runs it for every batch of assets it hands out,
        and bulk_create's model instances and column arrays were 4.7% of a worker's CPU in py-spy."""
        db = connections[DEFAULT_DB_ALIAS]
        pk = cls._meta.pk
        rows = [plain_sql.prepared(cls, {pk.attname: value}, db) for value in pks]
        plain_sql.insert_each(cls, rows, "ON CONFLICT DO NOTHING")

    @classmethod
    def unleased(cls, pk) -> models.QuerySet:
        """Row `pk` while no lease on it runs."""
        free = models.Q(lease_until__isnull=True) | models.Q(lease_until__lt=timezone.now())
        return cls.objects.filter(free, pk=pk)

    @classmethod
    def held(cls, pk, token: str) -> models.QuerySet:
        """Row `pk` while `token` still holds its lease (empty once it passed to another holder)."""
        return cls.objects.filter(pk=pk, lease_token=token)

    @classmethod
    def renew(cls, pk, token: str, duration: timedelta, **changes) -> bool:
        """Extend the lease and write `changes` in the same UPDATE; False when the lease was lost."""
        return bool(cls.held(pk, token).update(lease_until=timezone.now() + duration, **changes))

    @classmethod
    def release(cls, pk, token: str, **changes) -> None:
        """Give the lease back, writing `changes` in the same UPDATE (nothing if it was lost).

        Plain SQL: every asset ends with it, and the ORM's UPDATE compiled a statement of several
        times the CPU of running it (5% of a worker's CPU in py-spy)."""
        quote = connection.ops.quote_name
        fields = [cls._meta.get_field(name) for name in changes]
        assignments = [f"{quote('lease_token')} = ''", f"{quote('lease_until')} = NULL"]
        assignments += [f"{quote(field.column)} = %s" for field in fields]
        params = [field.get_db_prep_save(changes[field.name], connection) for field in fields]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {quote(cls._meta.db_table)} SET {', '.join(assignments)} "
                f"WHERE {quote(cls._meta.pk.column)} = %s AND {quote('lease_token')} = %s",
                [*params, cls._meta.pk.get_db_prep_value(pk, connection), token],
            )


class Lock(Leased, models.Model):
    """A named lease for work that has no row of its own to carry one (the re-sync scheduler)."""

    name = models.CharField(max_length=64, primary_key=True)
    lease_token = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"lock {self.name}"
