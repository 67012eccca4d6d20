"""Django's PostgreSQL backend with a health check that costs no round trip, and statements
planned with their own parameters.

Set as ENGINE by pimsync.settings whenever DATABASE_URL names PostgreSQL; everything else is
Django's (https://docs.djangoproject.com/en/5.2/ref/databases/#subclassing-the-built-in-database-backends).
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        """Whether the persistent connection still works, asked before a request's or a task's first
        query (CONN_HEALTH_CHECKS).

        Django sends `SELECT 1` for it: one round trip on every webhook delivery and every asset,
        as many statements as the webhook's INSERT itself. An idle connection has nothing to
        read, so a socket with nothing to read needs no query. A server that ended the session
        (a restart, `pg_terminate_backend`, an idle timeout) has sent its FATAL error or closed
        the socket, which makes it readable: then Django's `SELECT 1` decides, as before. A
        session that died without a word from the server (a host gone from the network) is not
        caught here, but nor was it by `SELECT 1` sooner than its own timeout."""
        connection = self.connection
        if connection is None or connection.closed:
            return False
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):  # the socket is gone
            return False
        return not readable or super().is_usable()

    def init_connection_state(self) -> None:
        super().init_connection_state()
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
