"""`python -m bench cpu`: CPU milliseconds per ingested event (web processes) and per enriched
asset (worker processes), with PostgreSQL's and the stand-ins' shares apart.

Read from the processes' own CPU counters (/proc/<pid>/stat: user + system time of every live
process of a tree, sampled before the tree stops), so the figures hold on a machine busy with
other work: they count what our processes did, not how long it took.
"""

from __future__ import annotations

import os
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
    """CPU seconds of named process groups between `start()` and `stop()`."""

    def __init__(self, groups: dict) -> None:
        self.groups = groups  # name -> callable returning the pids to sample
        self.before: dict[str, dict[int, float]] = {}
        self.used: dict[str, float] = {}

    def _sample(self) -> dict[str, dict[int, float]]:
        return {name: {pid: cpu_seconds([pid]) for pid in pids()} for name, pids in self.groups.items()}

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> None:
        after = self._sample()
        # A process born during the run counts from zero; one that ended is lost (none should).
        self.used = {
            name: sum(seconds - self.before[name].get(pid, 0.0) for pid, seconds in after[name].items())
            for name in after
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
