"""Everything the scenarios run against: the benchmark's PostgreSQL database, the stand-ins for
IMS/AEM/PIM and the key server, and starters for gunicorn and django-q2 clusters.

Django is set up here, once, with the DATABASE_URL chosen at run time; only after `Stack()` may
pimsync's models be imported (bench/__main__.py imports the scenario modules then)."""

from __future__ import annotations

import json
import os
import sys

import django
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from bench.processes import ROOT, Processes, ensure_database, free_port, gunicorn, wait_port
from bench.signing import event, signer
from standins.peers import State, StubServer, pimsync_environment

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/pimsync_bench"


def django_ready(env: dict) -> None:
    """Set up Django in this process with `env` (the children's settings), migrate, load the demo mapping."""
    os.environ.update(env)
    django.setup()
    # pimsync's models need the app registry: importable only from here on.
    from pimsync.mapping import import_config  # noqa: PLC0415

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)  # production static files (whitenoise)
    import_config(json.loads((ROOT / "pimsync/demo/mappings.json").read_text()))


def forget_statistics(cursor, tables: str) -> None:
    """Drop the planner's statistics of `tables`, as a fresh database has none. TRUNCATE keeps
    them, and so does ANALYZE of an empty table: after the purge or the dashboard scenario, those
    of a million finished events (no event ever due) misled the plans of the next scenario, which
    then measured a third more PostgreSQL CPU per asset and 10,000 assets in 71-79 s instead of
    59-61. Needs a superuser, as the default DATABASE_URL is; otherwise the statistics stay."""
    names = [name.strip() for name in tables.split(",")]
    try:
        with transaction.atomic():
            cursor.execute("DELETE FROM pg_statistic WHERE starelid = ANY(%s::regclass[])", [names])
    except DatabaseError:
        print("bench: could not drop the planner's statistics (not a superuser); runs may differ", file=sys.stderr)


class Stack:
    """The database, the stand-ins and the processes of one benchmark run."""

    def __init__(self, args) -> None:
        self.args = args
        self.db_url = os.environ.get("DATABASE_URL") or DEFAULT_DB
        if not self.db_url.startswith("postgres"):
            raise SystemExit("make bench needs PostgreSQL: set DATABASE_URL=postgres://…")
        ensure_database(self.db_url)
        self.pem, public = signer()
        catalog = {p["SKUID"]: p for p in json.loads((ROOT / "pimsync/demo/catalog.json").read_text())}
        self.skus = sorted(catalog)
        self.state = State(args.latency, public, catalog)
        self.stub = StubServer(self.state).__enter__()
        self.procs = Processes()
        self.env = self.environment()
        django_ready(self.env)

    def environment(self) -> dict[str, str]:
        """The settings of every pimsync process: production, pointed at the stand-ins."""
        stand_ins = pimsync_environment(
            stub_url=self.stub.url, pim_url=self.stub.url, database_url=self.db_url, secret_key="bench-secret-key"
        )
        return {**stand_ins, "DJANGO_SETTINGS_MODULE": "bench.settings", "PIMSYNC_RETRY_BASE_SECONDS": "5"}

    def close(self) -> None:
        """Stop every child process and the stand-ins."""
        self.procs.stop()
        self.stub.__exit__()

    def reset(self) -> None:
        """Empty the event history, the known assets, the jobs, the queue and the stand-ins' assets and counts."""
        tables = (
            "pimsync_attempt, pimsync_event, pimsync_asset, pimsync_job, pimsync_pause, "
            "django_q_ormq, django_q_task, pimsync_accesstoken, pimsync_heartbeat"
        )
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {tables}")
            forget_statistics(cursor, tables)
        self.state.assets.clear()
        self.state.versions.clear()
        self.state.reset_counts()

    def web(self, workers: int = 0, threads: int = 0, extra_env: dict | None = None):
        """Start gunicorn (PIMSYNC_BENCH_WEB=3x8 tries another shape than 4x4); (process, port)."""
        shape = os.environ.get("PIMSYNC_BENCH_WEB", "4x4").split("x")
        workers, threads = workers or int(shape[0]), threads or int(shape[1])
        port = free_port()
        args = [*gunicorn(port, workers, threads), "--keep-alive", "5", "--backlog", "2048"]
        process = self.procs.start(args, {**self.env, **(extra_env or {})})
        wait_port(port)
        return process, port

    def worker(self, processes: int, threads: int, extra_env: dict | None = None):
        """Start a `manage.py qcluster` of `processes` × `threads`."""
        shape = {"PIMSYNC_WORKERS": str(processes), "PIMSYNC_WORKER_THREADS": str(threads)}
        return self.procs.start([sys.executable, "manage.py", "qcluster"], {**self.env, **shape, **(extra_env or {})})

    def bodies(self, count: int, per_request: int, start: int = 0, padding: int = 0) -> list[bytes]:
        """`count` events from number `start`, `per_request` to a request body."""
        out = []
        for first in range(start, start + count, per_request):
            batch = [event(n, self.skus[n % len(self.skus)], padding) for n in range(first, first + per_request)]
            out.append(json.dumps(batch if per_request > 1 else batch[0]).encode())
        return out
