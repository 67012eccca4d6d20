"""`make bench`: start everything on loopback, run each scenario, print one line per figure with
its target and the ratio to it (issue 6). Needs PostgreSQL (DATABASE_URL, default a database
`pimsync_bench` on 127.0.0.1) and, for scale-out, Redis on 127.0.0.1:6379.

    python -m bench [scenario ...] [--events N] [--latency S] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/pimsync_bench"
CLIENT_ID = "bench-client-0123456789abcdef"
SOURCE = "acct:aem-p12345-e67890@adobe.com"
KEY_PATH = "/prod/keys/pub-key-bench.pem"
SCENARIOS = ("ingest", "batch", "e2e", "dashboard", "scaleout", "memory", "purge")
HOW_TO_READ = """\
Everything runs on the one machine at once: PostgreSQL (synchronous commit on), gunicorn
(gthread, 4 processes x 4 threads), django-q2 workers, the IMS/AEM/PIM stubs (50 ms on every call)
and the load generator. Each line: figure, value, target, ratio to the target (>= 1 meets it).
Repeated runs on this machine vary by about 10-20% (the trivial view alone measured 3,600-5,300
req/s); the single-event ingest is CPU-bound in Django (profile: py-spy on a gunicorn worker), the
end-to-end run is CPU-bound across all processes (1x32, 2x16 and 4x8 worker shapes all gave
100-103 assets/s), so the Little's-law ratio says how much of the latency-bound ceiling a 2-core
machine reaches, not how much concurrency is idle.
"""

# The purge scenario's steady webhook load, and how long it can last (the purge's time bound).
PURGE_LOAD_RATE = 400
PURGE_LOAD_SECONDS = 200

lines: list[str] = []


def report(name: str, value: float, target: str, ratio: float | None, unit: str = "") -> None:
    """One figure: its value, target and ratio (≥ 1.0 meets the target)."""
    verdict = "" if ratio is None else ("PASS" if ratio >= 1.0 else "MISS")
    text = f"{name:<44} {value:>12,.2f} {unit:<10} target {target:<14} ratio {ratio if ratio is not None else '-':>5}"
    if ratio is not None:
        text = text.replace(f"ratio {ratio}", f"ratio {ratio:.2f}")
    line = f"{text} {verdict}"
    lines.append(line)
    print(line, flush=True)


def note(text: str) -> None:
    lines.append(f"  {text}")
    print(f"  {text}", flush=True)


# --- setup ----------------------------------------------------------------------------------


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def signer():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, public


def signed_headers(key, body: bytes) -> dict[str, str]:
    """The headers Adobe I/O Events sends with `body`, signed with `key` (a loaded private key)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return {
        "Content-Type": "application/cloudevents+json; charset=UTF-8",
        "x-adobe-digital-signature-1": base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode(),
        "x-adobe-public-key1-path": KEY_PATH,
        "x-adobe-delivery-id": str(uuid.uuid4()),
    }


def _sign_chunk(args) -> list[bytes]:
    from cryptography.hazmat.primitives import serialization

    from bench.load import build_request

    pem, host, bodies = args
    key = serialization.load_pem_private_key(pem, password=None)
    return [build_request("/webhooks/aem", body, signed_headers(key, body), host) for body in bodies]


def signed_requests(pem: bytes, host: str, bodies: list[bytes]) -> list[bytes]:
    """Sign on every core before the clock starts."""
    chunks = [bodies[i : i + 500] for i in range(0, len(bodies), 500)]
    with ProcessPoolExecutor() as pool:
        return [request for chunk in pool.map(_sign_chunk, [(pem, host, c) for c in chunks]) for request in chunk]


def event(n: int, sku: str, padding: int = 0, asset: int | None = None) -> dict:
    """A `processing_completed` event for asset number `asset` (default `n`), named after `sku`."""
    asset = n if asset is None else asset
    asset_id = f"urn:aaid:aem:{uuid.UUID(int=asset + 1, version=4)}"
    name = f"{sku}_{asset:06d}.png"
    data = {
        "assetId": asset_id,
        "repositoryMetadata": {
            "repo:assetId": asset_id,
            "repo:name": name,
            "repo:path": f"/content/dam/pimsync-demo/products/{name}",
            "dc:format": "image/png",
            "aem:assetState": "processed",
        },
    }
    if padding:
        data["assetMetadata"] = {"xcm:machineKeywords": "x" * padding}
    event_id = str(uuid.uuid4())
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": SOURCE,
        "type": "aem.assets.asset.processing_completed",
        "time": datetime.now(UTC).isoformat(),
        "eventid": event_id,
        "recipientclientid": CLIENT_ID,
        "data": data,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Processes:
    """Child processes in their own groups, stopped together."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []

    def start(self, args: list[str], env: dict, log: Path | None = None) -> subprocess.Popen:
        """Start `args` in a new process group; its output goes to `log` (appended) or nowhere."""
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
        child = subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        if log:
            out.close()
        self.children.append(child)
        return child

    def stop(self, child: subprocess.Popen | None = None) -> None:
        for process in [child] if child else list(self.children):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
            if process in self.children:
                self.children.remove(process)


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def descendants_of(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


# --- the bench ------------------------------------------------------------------------------


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.db_url = os.environ.get("DATABASE_URL") or DEFAULT_DB
        if not self.db_url.startswith("postgres"):
            raise SystemExit("make bench needs PostgreSQL: set DATABASE_URL=postgres://…")
        ensure_database(self.db_url)
        self.pem, public = signer()
        catalog = {p["SKUID"]: p for p in json.loads((ROOT / "pimsync/demo/catalog.json").read_text())}
        from bench.stubs import State, StubServer

        self.state = State(args.latency, public, catalog)
        self.stub = StubServer(self.state).__enter__()
        self.skus = sorted(catalog)
        self.procs = Processes()
        self.env = {
            "PATH": os.environ["PATH"],
            "PIMSYNC_READ_DOTENV": "0",
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DEBUG": "0",
            "SECRET_KEY": "bench-secret-key",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.db_url,
            "LOG_LEVEL": "WARNING",
            "ADOBE_CLIENT_ID": CLIENT_ID,
            "ADOBE_CLIENT_SECRET": "bench-secret",
            "ADOBE_IMS_TOKEN_URL": self.stub.url + "/ims/token/v3",
            "ADOBE_EVENTS_KEY_BASE_URL": self.stub.url + "/keys",
            "AEM_AUTHOR_URL": self.stub.url,
            "AEM_EVENT_SOURCE": SOURCE,
            "PIM_BASE_URL": self.stub.url + "/pim",
            "PIM_PRODUCT_PATH": "/products/{key}",
            "PIMSYNC_RETRY_BASE_SECONDS": "5",
        }
        os.environ.update(self.env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("collectstatic", "--noinput", verbosity=0)  # production static files (whitenoise)
        from pimsync.mapping import import_config

        import_config(json.loads((ROOT / "pimsync/demo/mappings.json").read_text()))

    def close(self) -> None:
        self.procs.stop()
        self.stub.__exit__()

    def reset(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE pimsync_attempt, pimsync_event, pimsync_assetstate, django_q_ormq, "
                "django_q_task, pimsync_accesstoken, pimsync_heartbeat"
            )
        self.state.assets.clear()
        self.state.reset_counts()

    def promise_drain(self) -> None:
        """What a drain running on a worker node keeps in the heartbeat row (pimsync.wakeups.DrainPromise)."""
        from django.utils import timezone

        from pimsync.models import Heartbeat

        Heartbeat.objects.update_or_create(name="drain", defaults={"at": timezone.now() + timedelta(hours=1)})
        time.sleep(1)  # the web processes' cached read of the promise expires

    def web(self, workers: int = 0, threads: int = 0, extra_env: dict | None = None):
        # gunicorn processes × threads; PIMSYNC_BENCH_WEB=3x8 tries another shape.
        shape = os.environ.get("PIMSYNC_BENCH_WEB", "4x4").split("x")
        workers, threads = workers or int(shape[0]), threads or int(shape[1])
        port = free_port()
        process = self.procs.start(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "pimsync.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--worker-class",
                "gthread",
                "--keep-alive",
                "5",
                "--backlog",
                "2048",
            ],
            {**self.env, **(extra_env or {})},
        )
        wait_port(port)
        return process, port

    def worker(self, processes: int, threads: int, extra_env: dict | None = None):
        return self.procs.start(
            [sys.executable, "manage.py", "qcluster"],
            {
                **self.env,
                "PIMSYNC_WORKERS": str(processes),
                "PIMSYNC_WORKER_THREADS": str(threads),
                **(extra_env or {}),
            },
        )

    def bodies(self, count: int, per_request: int, start: int = 0, padding: int = 0) -> list[bytes]:
        out = []
        for first in range(start, start + count, per_request):
            batch = [event(n, self.skus[n % len(self.skus)], padding) for n in range(first, first + per_request)]
            out.append(json.dumps(batch if per_request > 1 else batch[0]).encode())
        return out

    # --- scenarios ---------------------------------------------------------------------------

    def ingest(self) -> None:
        from bench.load import build_request, percentile, run

        self.reset()
        web, port = self.web()
        host = f"127.0.0.1:{port}"
        noop = [build_request("/bench/noop", b"{}", {"Content-Type": "application/json"}, host)] * 20000
        run("127.0.0.1", port, noop[:2000], 32)  # warm up
        seconds, _, statuses = run("127.0.0.1", port, noop, 32)
        ceiling = len(noop) / seconds
        count = self.args.events
        requests = signed_requests(self.pem, host, self.bodies(count + 1000, 1))
        run("127.0.0.1", port, requests[:1000], 32)  # warm up (key fetch, connections)
        seconds, latencies, statuses = run("127.0.0.1", port, requests[1000:], 32)
        assert all(s == 200 for s in statuses), {s for s in statuses}
        rate = count / seconds
        report("ingest.single.events_per_s, no worker anywhere", rate, "(info)", None, "ev/s")
        note("with no worker running, every request also queues a wake-up in the same transaction")
        # The production case: workers drain on other nodes while the burst arrives, and their
        # promise (pimsync.wakeups.DrainPromise) spares each request its wake-up.
        self.promise_drain()
        requests = signed_requests(self.pem, host, self.bodies(count, 1, start=20_000_000))
        seconds, latencies, statuses = run("127.0.0.1", port, requests, 32)
        assert all(s == 200 for s in statuses), {s for s in statuses}
        rate = count / seconds
        report("ingest.single.events_per_s (32 clients)", rate, "≥ 800/s", rate / 800, "ev/s")
        report("ingest.single.p99_ms at full speed", percentile(latencies, 0.99) * 1000, "(info)", None, "ms")
        report("ingest.single.ratio_to_trivial_view", rate / ceiling, "(info)", None, "×")
        note(f"trivial Django view on the same gunicorn: {ceiling:,.0f} req/s; workers draining elsewhere")
        half = signed_requests(self.pem, host, self.bodies(count // 2, 1, start=10_000_000))
        seconds, latencies, statuses = run("127.0.0.1", port, half, 32, rate=400)
        p99 = percentile(latencies, 0.99) * 1000
        report("ingest.single.p99_ms at 400 ev/s", p99, "≤ 50 ms", 50 / p99, "ms")
        from pimsync.models import Event

        stored = Event.objects.count()
        expected = 2 * count + 1000 + count // 2
        report("ingest.single.stored (acknowledged = stored)", stored, f"= {expected}", stored / expected, "rows")
        self.procs.stop(web)

    def batch(self) -> None:
        from bench.load import run

        self.reset()
        web, port = self.web()
        count = self.args.events * 3
        requests = signed_requests(self.pem, f"127.0.0.1:{port}", self.bodies(count + 2000, 20))
        self.promise_drain()
        run("127.0.0.1", port, requests[:100], 16)
        seconds, _, statuses = run("127.0.0.1", port, requests[100:], 16)
        assert all(s == 200 for s in statuses), {s for s in statuses}
        rate = count / seconds
        report("ingest.batch20.events_per_s", rate, "≥ 6000/s", rate / 6000, "ev/s")
        self.procs.stop(web)

    def _drain_run(
        self,
        count: int,
        workers: list[tuple[int, int]],
        extra_env: dict | None = None,
        start: int = 0,
        sample_memory: bool = False,
    ) -> dict:
        """Deliver `count` events in batches while the workers run; wait until all finish."""
        from django.db.models import Count

        from bench.load import run
        from pimsync.models import PENDING, Event, Status

        web, port = self.web(extra_env=extra_env)
        requests = signed_requests(self.pem, f"127.0.0.1:{port}", self.bodies(count, 20, start=start))
        clusters = [self.worker(p, t, extra_env) for p, t in workers]
        time.sleep(3)  # let the clusters start before the clock does
        begun = time.perf_counter()
        run("127.0.0.1", port, requests, 8)
        ingested = time.perf_counter() - begun
        samples = []
        deadline = time.monotonic() + 600
        while True:
            waiting = Event.objects.filter(status__in=[*PENDING, Status.PROCESSING]).count()
            if sample_memory:
                pids = [c for cluster in clusters for c in descendants_of(cluster.pid)]
                samples.append((count - waiting, {p: rss_kb(p) for p in pids}))
            if waiting == 0:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        elapsed = time.perf_counter() - begun
        for cluster in clusters:
            self.procs.stop(cluster)
        self.procs.stop(web)
        statuses = dict(Event.objects.filter(asset_id__gt="").values_list("status").annotate(n=Count("id")))
        return {"elapsed": elapsed, "ingested": ingested, "statuses": statuses, "samples": samples, "waiting": waiting}

    def e2e(self) -> None:
        from pimsync.models import Status

        self.reset()
        # The worker shape the README recommends for one 2-core machine; PIMSYNC_BENCH_WORKERS=3x12 tries another.
        processes, threads = (int(n) for n in os.environ.get("PIMSYNC_BENCH_WORKERS", "2x16").split("x"))
        count = self.args.events
        result = self._drain_run(count, [(processes, threads)], sample_memory=True)
        done = result["statuses"].get(Status.SUCCEEDED, 0)
        rate = done / result["elapsed"]
        report(
            f"e2e.assets_per_s ({count:,} events, {self.args.latency * 1000:.0f} ms per call)",
            rate,
            "≥ 100/s",
            rate / 100,
            "assets/s",
        )
        report("e2e.seconds_to_all_succeeded", result["elapsed"], "≤ 100 s", 100 / result["elapsed"], "s")
        bound = processes * threads / (3 * self.args.latency)
        report("e2e.ratio_to_littles_law_bound", rate / bound, "(info)", None, "×")
        note(
            f"{processes} worker processes × {threads} threads; bound {bound:.0f} assets/s "
            f"(3 calls × {self.args.latency * 1000:.0f} ms each); statuses {result['statuses']}; "
            f"ingest took {result['ingested']:.1f} s"
        )
        calls = dict(self.state.calls)
        report(
            "e2e.ims_token_requests_per_1000_events",
            calls.get("ims", 0) * 1000 / count,
            "≤ 1",
            1 / max(calls.get("ims", 0) * 1000 / count, 1e-9),
            "req",
        )
        per_changed = (calls.get("aem_get", 0) + calls.get("aem_patch", 0)) / max(done, 1)
        report("e2e.aem_calls_per_changed_asset", per_changed, "≤ 2", 2 / per_changed, "calls")
        duplicates = sum(1 for n in self.state.patches_per_asset.values() if n > 1)
        report("e2e.duplicate_patches", duplicates, "= 0", None if duplicates else 1.0, "assets")
        samples = [s for s in result["samples"] if s[1]]
        if samples:
            # Per process: RSS once 10% of the events are done (imports and pools warmed up)
            # against its peak from then on; the worst process is reported.
            warm = next((s for s in samples if s[0] >= count * 0.1), samples[0])
            later_samples = samples[samples.index(warm) :]
            drifts = {}
            for pid, start_kb in warm[1].items():
                seen = [s[1][pid] for s in later_samples if s[1].get(pid)]
                if start_kb and seen:
                    drifts[pid] = ((max(seen) - start_kb) / start_kb * 100, start_kb, max(seen))
            pid, (drift, start_kb, peak_kb) = max(drifts.items(), key=lambda item: item[1][0])
            report("memory.worker_rss_drift_percent", drift, "≤ 10 %", 10 / max(drift, 0.01), "%")
            note(
                f"{len(drifts)} worker-cluster processes sampled {len(later_samples)} times; the largest drift: "
                f"{start_kb / 1024:.0f} MB at 10% done, peak {peak_kb / 1024:.0f} MB after"
            )
        # Scenario 4, second half: the same assets again, now already up to date.
        self.state.reset_counts()
        again = self._drain_run(count // 5, [(processes, threads)], start=0)
        unchanged = again["statuses"].get(Status.UNCHANGED, 0)
        per_unchanged = self.state.calls.get("aem_get", 0) / max(unchanged, 1) + self.state.calls.get(
            "aem_patch", 0
        ) / max(unchanged, 1)
        report("e2e.aem_calls_per_unchanged_asset", per_unchanged, "≤ 1", 1 / max(per_unchanged, 1e-9), "calls")

    def scaleout(self) -> None:
        import redis

        from pimsync.models import Status

        redis_env = {"PIMSYNC_BROKER_URL": "redis://127.0.0.1:6379/7"}
        count, threads = self.args.events // 2, 8
        rates = []
        for nodes in (1, 2):
            redis.from_url(redis_env["PIMSYNC_BROKER_URL"]).flushdb()
            self.reset()
            result = self._drain_run(count, [(1, threads)] * nodes, redis_env)
            done = result["statuses"].get(Status.SUCCEEDED, 0)
            rates.append(done / result["elapsed"])
            lost = count - done
            duplicates = sum(1 for n in self.state.patches_per_asset.values() if n > 1)
            note(
                f"{nodes} node(s), Redis broker, 1 process × {threads} threads each: {rates[-1]:.0f} assets/s, "
                f"lost {lost}, duplicate PATCHes {duplicates}, statuses {result['statuses']}"
            )
            report(f"scaleout.{nodes}_node.lost_events", lost, "= 0", None if lost else 1.0, "events")
            report(f"scaleout.{nodes}_node.duplicate_patches", duplicates, "= 0", None if duplicates else 1.0, "")
        speedup = rates[1] / rates[0]
        report("scaleout.two_nodes_speedup", speedup, "≥ 1.7×", speedup / 1.7, "×")

    def memory(self) -> None:
        from bench.load import run

        self.reset()
        web, port = self.web(workers=1, threads=1)
        pid = children_of(web.pid)[0]
        warm = signed_requests(self.pem, f"127.0.0.1:{port}", self.bodies(40, 20))
        run("127.0.0.1", port, warm, 1)
        before = rss_kb(pid)
        body = self.bodies(20, 20, start=5000, padding=100_000)[0]
        requests = signed_requests(self.pem, f"127.0.0.1:{port}", [body])
        _, _, statuses = run("127.0.0.1", port, requests, 1)
        peak = rss_kb(pid, "VmHWM")
        extra = (peak - before) / 1024
        report("memory.web_extra_mb_for_2mb_batch", extra, "≤ 50 MB", 50 / max(extra, 0.01), "MB")
        note(
            f"batch body {len(body) / 1e6:.2f} MB answered {statuses[0]}; web worker RSS {before / 1024:.0f} MB "
            f"before, peak {peak / 1024:.0f} MB"
        )
        self.procs.stop(web)

    def dashboard(self) -> None:
        from bench.dataset import measure_pages

        measure_pages(report, note, rows=self.args.dashboard_rows)

    def purge(self) -> None:
        """`purge_events` deletes a large expired history while the webhook takes single-event
        deliveries at a steady rate: the webhook's p99 during the purge, and the purge's rate."""
        from django.db import connection
        from django.utils import timezone

        from bench.dataset import build
        from bench.load import percentile, run
        from pimsync.models import Event

        self.reset()
        rows, rate = self.args.purge_rows, PURGE_LOAD_RATE
        connection.ensure_connection()
        connection.connection.autocommit = True  # VACUUM cannot run in a transaction
        build(rows, note, now=timezone.now() - timedelta(days=100))  # all past the 90-day failed retention
        with connection.cursor() as cursor:
            # Write out the freshly generated history now, so that the baseline and the purge are
            # not measured against the checkpoint of 4 million new rows.
            cursor.execute("CHECKPOINT")
        web, port = self.web()
        host = f"127.0.0.1:{port}"
        self.promise_drain()
        requests = signed_requests(self.pem, host, self.bodies(rate * PURGE_LOAD_SECONDS, 1, start=30_000_000))
        warm, baseline, during = requests[:1000], requests[1000 : 1000 + rate * 15], requests[1000 + rate * 15 :]
        run("127.0.0.1", port, warm, 32)
        _, latencies, statuses = run("127.0.0.1", port, baseline, 32, rate=rate)
        assert all(s == 200 for s in statuses), {s for s in statuses}
        before = percentile(latencies, 0.99) * 1000

        purge = subprocess.Popen(
            [sys.executable, "manage.py", "purge_events"],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        began = time.perf_counter()
        latencies, chunk = [], rate * 5  # check every 5 s whether the purge has finished
        timeline = []
        while purge.poll() is None and during:
            _, measured, statuses = run("127.0.0.1", port, during[:chunk], 32, rate=rate)
            assert all(s == 200 for s in statuses), {s for s in statuses}
            latencies += measured
            during = during[chunk:]
            timeline.append(f"{percentile(measured, 0.99) * 1000:.0f}/{max(measured) * 1000:.0f}")
        if purge.poll() is None:  # bounded: the load ran out first; what was deleted so far counts
            os.killpg(purge.pid, signal.SIGTERM)
            note(f"purge stopped after {PURGE_LOAD_SECONDS} s of load; the daily schedule would continue")
        output = purge.communicate()[0]
        elapsed = time.perf_counter() - began
        self.procs.stop(web)
        left = Event.objects.filter(event_id__startswith="bench-").count()
        deleted = rows - left
        p99 = percentile(latencies, 0.99) * 1000
        report(f"purge.webhook_p99_ms at {rate} ev/s during the purge", p99, "≤ 50 ms", 50 / p99, "ms")
        report(f"purge.webhook_p99_ms at {rate} ev/s, no purge", before, "(info)", None, "ms")
        report("purge.events_per_s (3 attempts each)", deleted / elapsed, "(info)", None, "ev/s")
        report("purge.deleted (all expired events)", deleted, f"= {rows}", deleted / rows, "rows")
        load = os.getloadavg()[0]
        note(
            f"purge_events deleted {deleted:,} events in {elapsed:.0f} s while the webhook stored "
            f"{len(latencies):,} new ones (p50 {percentile(latencies, 0.5) * 1000:.1f} ms); "
            + " ".join(line.strip() for line in output.splitlines() if line.startswith("events:"))
            + f"; load average {load:.1f} on {os.cpu_count()} cores at the end"
        )
        note("p99/max ms per 5 s: " + " ".join(timeline))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "scenarios", nargs="*", metavar="scenario", help=f"any of {', '.join(SCENARIOS)} (default: all)"
    )
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--dashboard-rows", type=int, default=1_000_000)
    parser.add_argument("--purge-rows", type=int, default=1_000_000)
    parser.add_argument("--write", help="also write the results as markdown to this file")
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    sys.path.insert(0, str(ROOT))
    bench = Bench(args)
    started = time.time()
    try:
        for name in args.scenarios or SCENARIOS:
            print(f"== {name}", flush=True)
            lines.append(f"== {name}")
            getattr(bench, name)()
    finally:
        bench.close()
    if args.write:
        machine = (
            f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}, Python "
            f"{platform.python_version()}, PostgreSQL at {bench.db_url.rsplit('@', 1)[-1]}"
        )
        Path(args.write).write_text(
            "# pimsync benchmarks\n\n"
            f"Run with `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {time.time() - started:.0f} s.\n"
            f"Machine: {machine}.\n\n{HOW_TO_READ}\n```\n" + "\n".join(lines) + "\n```\n"
        )


if __name__ == "__main__":
    main()
