"""Django's PostgreSQL backend with a health check that costs no round trip, and statements
planned with their own parameters, except on connections that run only statements on keys.

Set as ENGINE by pimsync.settings whenever DATABASE_URL names PostgreSQL; everything else is
Django's (https://docs.djangoproject.com/en/5.2/ref/databases/#subclassing-the-built-in-database-backends).
"""

from __future__ import annotations

import select
import time

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    # A connection checked less than this long ago is trusted while its socket is quiet.
    QUIET_SECONDS = 5.0
    # Whether this connection lets PostgreSQL keep generic plans (`reuse_plans`); a new one does not.
    plans_reused = False

    def is_usable(self) -> bool:
        """Whether the persistent connection still works, asked before a request's or a task's first
        query (CONN_HEALTH_CHECKS).

        Django sends `SELECT 1` for it: one round trip on every webhook delivery and every asset,
        as many statements as the webhook's INSERT itself. A connection in steady use whose socket
        has nothing to read needs no query: a server that ended the session (a restart,
        `pg_terminate_backend`, an idle timeout) has sent its FATAL error or closed the socket,
        which makes it readable, and then Django's `SELECT 1` decides, as before. A connection
        idle for longer than QUIET_SECONDS gets `SELECT 1` anyway: a server that went away
        without a word (its address moved to a new primary, which answers with a reset only once
        something is sent) is found before the request's query, as with Django's check."""
        connection = self.connection
        if connection is None or connection.closed:
            return False
        now = time.monotonic()
        recent = now - getattr(self, "_checked_at", float("-inf")) < self.QUIET_SECONDS
        # After a failed query (errors_occurred) Django asks too: then the query decides.
        if recent and not self.errors_occurred and not _readable(connection.fileno()):
            self._checked_at = now
            return True
        usable = super().is_usable()
        if usable:
            self._checked_at = now
        return usable

    def init_connection_state(self) -> None:
        super().init_connection_state()
        self._checked_at = time.monotonic()  # a new connection is as good as a checked one
        self.plans_reused = False
        if self.settings_dict["OPTIONS"].get("prepare_threshold") is not None:
            # With prepared statements on (pimsync.settings), have PostgreSQL plan each run with
            # its parameters anyway. A prepared statement otherwise switches to a generic plan
            # after five runs, and a generic plan cannot turn `path LIKE $1` into a range of the
            # path index: the Assets list filtered by a folder took 10.8 s instead of 0.05 s at
            # 3,000,000 assets (BENCHMARKS.md). The statements stay parsed once; only the
            # planning is per run, as without them.
            with self.connection.cursor() as cursor:
                cursor.execute("SET plan_cache_mode TO force_custom_plan")
            if not self.get_autocommit():
                self.connection.commit()  # as Django does after its own settings

    def reuse_plans(self, *, in_transaction: bool = False) -> None:
        """Let PostgreSQL reuse a generic plan for prepared statements (`plan_cache_mode` back to
        `auto`) where every run of a statement needs none of its own:
        - for the rest of this connection: one that runs only statements on keys, never a user's
          filter, the worker's enrichment threads (`worker._run_one`). Planning each run of their
          handful of statements was a fifth of PostgreSQL's CPU per asset. Not inside a
          transaction, whose rollback would undo the SET unnoticed;
        - `in_transaction`: for the rest of the current transaction only (SET LOCAL), the
          retention's purge batches. Planning each run reaches the queries PostgreSQL runs inside
          a statement for each row, such as its foreign-key checks: the purge deleted 5,000-5,200
          events a second under the webhook's load with it, 9,100 without.
        (Figures: BENCHMARKS.md.)"""
        if self.settings_dict["OPTIONS"].get("prepare_threshold") is None:
            return  # no prepared statements, no generic plans: nothing to undo
        if in_transaction:
            with self.cursor() as cursor:
                cursor.execute("SET LOCAL plan_cache_mode TO auto")
            return
        if self.in_atomic_block or (self.plans_reused and self.connection is not None):
            return  # (a closed connection's flag is stale: the next one starts planning each run)
        with self.cursor() as cursor:
            cursor.execute("SET plan_cache_mode TO auto")
        self.plans_reused = True


def _readable(fd: int) -> bool:
    """Whether the socket `fd` has something to read, or is closed (poll, not select: a file
    number past 1023 is fine). Not knowing counts as readable, so Django's check decides."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True
