"""`python -m bench cpu`: CPU milliseconds per ingested event (web processes) and per enriched
asset (worker processes), with PostgreSQL's and the stand-ins' shares apart.

Read from the processes' own CPU counters (/proc/<pid>/stat: user + system time of every
process of a tree, sampled twice a second so that one which ends still counts), so the figures
hold on a machine busy with other work: they count what our processes did, not how long it took.
"""

from __future__ import annotations

import os
import threading
import time

import psycopg
from django.db import connection

from bench.e2e import wait_until_done
from bench.load import run
from bench.processes import descendants_of
from bench.report import note, report
from bench.signing import signed_requests
from bench.stack import Stack

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the live processes `pids` used so far."""
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
        except OSError:
            continue  # ended meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICKS


def tree(process) -> list[int]:
    """A child process and everything below it."""
    return [process.pid, *descendants_of(process.pid)]


def postgres_backends(db_url: str) -> list[int]:
    """The server processes serving the benchmark's database, but this process's own connection."""
    own = connection.connection.info.backend_pid if connection.connection else 0
    name = db_url.rsplit("/", 1)[1]
    admin = db_url.rsplit("/", 1)[0].replace("postgres://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s", [name, own])
        return [row[0] for row in rows]


class Meter:
    """CPU seconds of named process groups between `start()` and `stop()`.

    The groups are sampled twice a second while the meter runs, and each process keeps the last
    CPU time seen: a process that ends meanwhile (a database connection closed after
    CONN_MAX_AGE, a worker replaced) still counts for what it used up to its last sample."""

    INTERVAL = 0.5

    def __init__(self, groups: dict) -> None:
        self.groups = groups  # name -> callable returning the pids to sample
        self.before: dict[str, dict[int, float]] = {}
        self.seen: dict[str, dict[int, float]] = {}
        self.used: dict[str, float] = {}
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> dict[str, dict[int, float]]:
        return {name: {pid: cpu_seconds([pid]) for pid in pids()} for name, pids in self.groups.items()}

    def _record(self) -> None:
        for name, now in self._sample().items():
            for pid, seconds in now.items():
                if seconds:  # 0: the process ended between listing and reading it
                    self.seen[name][pid] = max(self.seen[name].get(pid, 0.0), seconds)

    def _loop(self) -> None:
        while self._running.is_set():
            self._record()
            time.sleep(self.INTERVAL)

    def start(self) -> None:
        self.before = self._sample()
        self.seen = {name: dict(pids) for name, pids in self.before.items()}
        self._running.set()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running.clear()
        if self._thread:
            self._thread.join()
        self._record()
        # A process born during the run counts from zero.
        self.used = {
            name: sum(seconds - self.before[name].get(pid, 0.0) for pid, seconds in seen.items())
            for name, seen in self.seen.items()
        }


def _ingest(stack: Stack, label: str, per_request: int, count: int) -> None:
    stack.reset()
    web, port = stack.web()
    requests = signed_requests(stack.pem, f"127.0.0.1:{port}", stack.bodies(count, per_request))
    run("127.0.0.1", port, requests[:20], 4)  # warm up: imports, connections, the signing key
    meter = Meter(
        {
            "web": lambda: tree(web),
            "postgres": lambda: postgres_backends(stack.db_url),
            "bench": lambda: [os.getpid()],
        }
    )
    meter.start()
    seconds, _latencies, statuses = run("127.0.0.1", port, requests[20:], 32)
    meter.stop()
    stack.procs.stop(web)
    events = (len(requests) - 20) * per_request
    ok = sum(1 for status in statuses if status == 200)
    report(f"cpu.ingest_{label}.web_ms_per_event", meter.used["web"] * 1000 / events, "(info)", None, "ms")
    report(f"cpu.ingest_{label}.postgres_ms_per_event", meter.used["postgres"] * 1000 / events, "(info)", None, "ms")
    note(
        f"{events:,} events in {len(requests) - 20:,} deliveries of {per_request}, 32 clients, {seconds:.1f} s, "
        f"{ok} answered 200; the load generator (bench process) used {meter.used['bench'] * 1000 / events:.3f} ms/event"
    )


def cpu(stack: Stack) -> None:
    """CPU per single and batched ingested event, and per enriched asset."""
    count = min(stack.args.events, 10_000)
    _ingest(stack, "single", 1, count + 20)
    _ingest(stack, "batch20", 20, count + 400)

    # Enrichment: the events are stored first (no worker), then one worker drains them all.
    stack.reset()
    web, port = stack.web()
    run("127.0.0.1", port, signed_requests(stack.pem, f"127.0.0.1:{port}", stack.bodies(count, 20)), 8)
    stack.procs.stop(web)
    processes, threads = (int(n) for n in os.environ.get("PIMSYNC_BENCH_WORKERS", "2x16").split("x"))
    cluster = stack.worker(processes, threads)
    meter = Meter(
        {
            "worker": lambda: tree(cluster),
            "postgres": lambda: postgres_backends(stack.db_url),
            "bench": lambda: [os.getpid()],
        }
    )
    time.sleep(0.5)
    meter.start()
    begun = time.perf_counter()
    waiting, _ = wait_until_done(count, [cluster], sample_memory=False)
    elapsed = time.perf_counter() - begun
    meter.stop()
    stack.procs.stop(cluster)
    enriched = count - waiting
    per = 1000 / max(enriched, 1)
    report("cpu.enrich.worker_ms_per_asset", meter.used["worker"] * per, "(info)", None, "ms")
    report("cpu.enrich.postgres_ms_per_asset", meter.used["postgres"] * per, "(info)", None, "ms")
    report("cpu.enrich.standins_ms_per_asset", meter.used["bench"] * per, "(info)", None, "ms")
    note(
        f"{enriched:,} assets by {processes} worker process(es) x {threads} threads in {elapsed:.1f} s "
        f"({stack.args.latency * 1000:.0f} ms per stand-in call); the worker was started before the meter, so its "
        "start-up is not counted; the stand-ins run in the bench process, which also polls the event "
        "statuses every 0.25 s (counted with them)"
    )
