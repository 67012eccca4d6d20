"""What every failure drill runs on: the World (a private PostgreSQL, the stand-ins of
`standins/`, gunicorn, a qcluster and a fast sweeper), the Sender that delivers signed events and
redelivers as Adobe does, and the Ledger that balances what was sent against what was stored,
finished and PATCHed (`balance`). The drills themselves are the modules named after them.

Django is set up by `World.start()`, for the drill's private database chosen at run time; pimsync's
modules are imported inside the functions that need them, after that.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import django
from cryptography.hazmat.primitives import serialization
from django.core.management import call_command
from django.db import connection, connections
from django.db.models import Count

from bench.processes import ROOT, Processes, children_of, free_port, wait_port
from bench.signing import event, signed_headers, signer
from drills.postgres import PrivatePostgres
from standins.peers import State, StubServer, pimsync_environment

POISON_KEY = "SKU-999999"  # matches the demo mapping's key pattern; the PIM stand-in never answers it
POISON_ASSET = 900_000
LATENCY = 0.02  # seconds on every PIM and AEM call
SWEEP_EVERY = 1.0  # the deployed schedule sweeps once a minute; the drills compress time
BURST_RATE = 60  # deliveries per second in the first pass
# Time compressed for every process: backoff base 1 s, an event stuck in `processing` is handed out
# again after 8 s, a single HTTP call gives up after 3 s.
PIPELINE_ENV = {
    "PIMSYNC_RETRY_BASE_SECONDS": "1",
    "PIMSYNC_RETRY_MAX_SECONDS": "8",
    "PIMSYNC_TASK_TIMEOUT_SECONDS": "8",
    "PIMSYNC_HTTP_TIMEOUT_SECONDS": "3",
    "PIMSYNC_DRAIN_LINGER_SECONDS": "1",
    "PIMSYNC_WORKERS": "2",
    "PIMSYNC_WORKER_THREADS": "8",
}


def say(text: str = "") -> None:
    print(text, flush=True)


@dataclass
class Delivery:
    """One POST to the webhook: a single event or a batch, re-sent unchanged until acknowledged."""

    body: bytes
    headers: dict
    events: int
    answers: list = field(default_factory=list)  # (pass number, status or error text, accepted, duplicates)

    @property
    def acknowledged(self) -> bool:
        return any(answer[1] == 200 for answer in self.answers)

    @property
    def redeliver(self) -> bool:
        """Adobe delivers again after a 5xx, a 429, a timeout or a broken connection; never after a 4xx."""
        if self.acknowledged:
            return False
        if not self.answers:
            return True
        last = self.answers[-1][1]
        return not isinstance(last, int) or last >= 500 or last == 429


class Sender:
    """Sends deliveries from a few threads over keep-alive connections, recording every answer."""

    def __init__(self, port: int, threads: int = 8) -> None:
        self.port = port
        self.threads = threads
        self.local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        if getattr(self.local, "conn", None) is None:
            self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        return self.local.conn

    def _send(self, delivery: Delivery, number: int) -> None:
        try:
            conn = self._connection()
            conn.request("POST", "/webhooks/aem", delivery.body, delivery.headers)
            response = conn.getresponse()
            data = response.read()
            accepted = duplicates = 0
            if response.status == 200:
                body = json.loads(data)
                accepted, duplicates = body.get("accepted", 0), body.get("duplicates", 0)
            delivery.answers.append((number, response.status, accepted, duplicates))
            if response.will_close:
                self.local.conn.close()
                self.local.conn = None
        except (OSError, http.client.HTTPException) as exc:
            delivery.answers.append((number, f"connection error ({type(exc).__name__})", 0, 0))
            if getattr(self.local, "conn", None) is not None:
                self.local.conn.close()
                self.local.conn = None

    def send(self, deliveries: list[Delivery], number: int, rate: float | None = None) -> None:
        """Send each delivery once (at `rate` per second when given); pass `number` labels the answers."""
        start = time.monotonic()

        def paced(index_delivery):
            index, delivery = index_delivery
            if rate:
                delay = start + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self._send(delivery, number)

        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(paced, enumerate(deliveries)))


def _creation_order(pids: list[int]) -> list[int]:
    """Oldest first: by start time (clock ticks), then by pid, allowing for pids wrapping around."""
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    wrapped = pids and max(pids) - min(pids) > pid_max // 2

    def key(pid: int):
        # Fields after the command name: the 20th is the start time.
        started = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        return started, pid + pid_max if wrapped and pid < pid_max // 2 else pid

    return sorted(pids, key=key)


class World:
    """Everything one drill runs: private PostgreSQL, stand-ins, gunicorn, qcluster, a fast sweeper."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.monotonic()
        self.timeline: list[str] = []
        self.workdir = Path(tempfile.mkdtemp(prefix=f"pimsync-drill-{name}-"))
        self.procs = Processes()
        self.pg = self.stub = self.pim = self.sweeper = None
        self.stop_sweeping = threading.Event()
        self.sweeps = Counter()

    def start(self, env: dict | None = None) -> None:
        """Start everything; `close()` undoes whatever part of this got done."""
        self.pg = PrivatePostgres()
        self.pg.start()
        self.pg.create_database()
        pem, public = signer()
        self.key = serialization.load_pem_private_key(pem, password=None)
        self.catalog = {p["SKUID"]: p for p in json.loads((ROOT / "pimsync/demo/catalog.json").read_text())}
        self.skus = sorted(self.catalog)
        self.state = State(LATENCY, public, self.catalog)
        self.stub = StubServer(self.state).__enter__()
        # The PIM has a server of its own so that a drill can take it off the network.
        self.pim_port = free_port()
        self.pim = StubServer(self.state, self.pim_port).__enter__()
        self.env = {
            **pimsync_environment(
                stub_url=self.stub.url,
                pim_url=f"http://127.0.0.1:{self.pim_port}",
                database_url=self.pg.url,
                secret_key="drill-secret-key",
            ),
            "DJANGO_SETTINGS_MODULE": "pimsync.settings",
            **PIPELINE_ENV,
            **(env or {}),
        }
        os.environ.update(self.env)
        django.setup()
        # pimsync's modules need Django set up (just above): importable only from here on.
        from pimsync.mapping import import_config

        call_command("migrate", verbosity=0)
        # Before gunicorn starts: with DEBUG off its pages need the manifest, which it reads once
        # (a fresh checkout has none; the dashboard answered 500 on every page of the first drill).
        call_command("collectstatic", "--noinput", verbosity=0)
        import_config(json.loads((ROOT / "pimsync/demo/mappings.json").read_text()))
        self.web_port = free_port()
        self.web = self.procs.start(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "pimsync.wsgi",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--worker-class",
                "gthread",
            ],
            self.env,
            self.workdir / "gunicorn.log",
        )
        self.cluster = self.procs.start(
            [sys.executable, "manage.py", "qcluster"], self.env, self.workdir / "qcluster.log"
        )
        wait_port(self.web_port)
        self.sentinel, self.helpers = self._cluster_layout()
        self.sweeper = threading.Thread(target=self._sweep_loop, daemon=True)
        self.sweeper.start()

    # --- processes -----------------------------------------------------------------------

    def _cluster_layout(self) -> tuple[int, set[int]]:
        """The cluster's sentinel and its monitor and pusher (spawned after the workers, so the two
        newest children); everything else the sentinel runs is a worker."""
        workers = int(self.env["PIMSYNC_WORKERS"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for sentinel in children_of(self.cluster.pid):
                children = _creation_order(children_of(sentinel))
                if len(children) == workers + 2:
                    return sentinel, set(children[-2:])
            time.sleep(0.2)
        raise RuntimeError("the qcluster did not start its worker processes")

    def worker_pids(self) -> list[int]:
        """The cluster's worker processes now (django-q2 replaces dead ones)."""
        return [pid for pid in children_of(self.sentinel) if pid not in self.helpers]

    def gunicorn_workers(self) -> list[int]:
        return children_of(self.web.pid)

    def _sweep_loop(self) -> None:
        """What the sweeper schedule runs once a minute, every second (it survives database outages)."""
        from pimsync.pipeline import sweep  # needs Django set up (World.start)

        while not self.stop_sweeping.wait(SWEEP_EVERY):
            try:
                sweep()
                self.sweeps["ok"] += 1
            except Exception:  # the database is down for a moment: next round
                self.sweeps["failed"] += 1
                connection.close()

    def note(self, text: str) -> None:
        line = f"t={time.monotonic() - self.started:6.1f}s  {text}"
        self.timeline.append(line)
        say("  " + line)

    def at(self, seconds: float, action) -> threading.Thread:
        """Run `action` `seconds` from now in the background (the drill's fault)."""

        def later():
            time.sleep(seconds)
            action()

        thread = threading.Thread(target=later, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Stop everything started so far and delete the private database."""
        self.stop_sweeping.set()
        if self.sweeper:
            self.sweeper.join(timeout=5)
        for child in list(self.procs.children):
            # Killed outright: the drill's database is thrown away with them.
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=10)
        connections.close_all()
        for server in (self.pim, self.stub):
            if server:
                server.__exit__()
        if self.pg:
            self.pg.destroy()

    # --- events --------------------------------------------------------------------------

    def deliveries(self, count: int, poison: bool = False) -> tuple[list[Delivery], set[str], str | None]:
        """`count` events in single and batch (5) deliveries; every tenth event is a second event for
        an earlier asset (one PATCH must cover both). Returns the deliveries, the asset ids that need
        a PATCH and the poison event's id."""
        events, assets, poison_id = [], set(), None
        for n in range(count):
            asset = n - 4 if n % 10 == 9 else n
            if poison and n == count // 3:
                body = event(n, POISON_KEY, asset=POISON_ASSET)
                poison_id = body["eventid"]
            else:
                body = event(n, self.skus[asset % len(self.skus)], asset=asset)
                assets.add(body["data"]["assetId"])
            events.append(body)
        out, n, request = [], 0, 0
        while n < len(events):
            size = 5 if request % 8 == 7 else 1
            chunk = events[n : n + size]
            body = json.dumps(chunk if size > 1 else chunk[0]).encode()
            out.append(Delivery(body, signed_headers(self.key, body), len(chunk)))
            n += size
            request += 1
        return out, assets, poison_id

    def burst(self, deliveries: list[Delivery], redeliver_for: float = 60) -> None:
        """The first pass at BURST_RATE, then redeliveries (1 s, 2 s, 4 s … apart, like Adobe's
        retries compressed) until every delivery is acknowledged or `redeliver_for` has passed."""
        sender = Sender(self.web_port)
        events = sum(d.events for d in deliveries)
        self.note(f"burst: {events} events in {len(deliveries)} deliveries at {BURST_RATE}/s")
        sender.send(deliveries, 0, rate=BURST_RATE)
        self.note(f"burst sent; {self._answer_summary(deliveries, 0)}")
        deadline, wait, number = time.monotonic() + redeliver_for, 1.0, 0
        while time.monotonic() < deadline:
            again = [d for d in deliveries if d.redeliver]
            if not again:
                break
            time.sleep(wait)
            wait = min(wait * 2, 8)
            number += 1
            sender.send(again, number)
            self.note(f"redelivery {number}: {len(again)} deliveries; {self._answer_summary(again, number)}")

    @staticmethod
    def _answer_summary(deliveries: list[Delivery], number: int) -> str:
        counts = Counter(a[1] for d in deliveries for a in d.answers if a[0] == number)
        return "answers " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str))

    def wait_final(self, expected: int, timeout: float) -> bool:
        """Wait until `expected` events are stored and none is waiting or being processed."""
        from pimsync.models import PENDING, Event, Status  # needs Django set up (World.start)

        deadline = time.monotonic() + timeout
        last_report = time.monotonic()
        while True:
            try:
                stored = Event.objects.count()
                open_ = Event.objects.filter(status__in=[*PENDING, Status.PROCESSING]).count()
            except Exception:
                connection.close()
                stored, open_ = -1, -1
            if stored >= expected and open_ == 0:
                self.note(f"every stored event is in a final status ({stored})")
                return True
            if time.monotonic() > deadline:
                self.note(f"gave up waiting: {stored} stored, {open_} not final after {timeout:.0f} s")
                return False
            if time.monotonic() - last_report > 15:
                last_report = time.monotonic()
                self.note(f"waiting: {stored} stored, {open_} not final yet")
            time.sleep(0.5)


# --- the ledger ------------------------------------------------------------------------------


class Ledger:
    """The counts every drill must balance, plus the drill's own expectations."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, object]] = []
        self.checks: list[tuple[bool, str]] = []

    def row(self, label: str, value) -> None:
        self.rows.append((label, value))

    def expect(self, ok: bool, text: str) -> None:
        self.checks.append((bool(ok), text))

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.checks)

    def lines(self) -> list[str]:
        out = ["  LEDGER"]
        out += [f"    {label:<50} {value}" for label, value in self.rows]
        out += [f"    [{'ok' if ok else 'XX'}] {text}" for ok, text in self.checks]
        return out


def balance(world: World, deliveries: list[Delivery], assets: set[str], expected_failed: set[str]) -> Ledger:
    """Acknowledged = stored = final; PATCHes = assets that needed one, once each; no duplicates."""
    from pimsync.models import Event, Status  # needs Django set up (World.start)

    connection.close()
    ledger = Ledger()
    sent = sum(d.events for d in deliveries)
    answers = Counter(a[1] for d in deliveries for a in d.answers)
    # A delivery answered 200 acknowledges all its events: `accepted` ones stored by it, `duplicates`
    # stored earlier (by an attempt whose answer was lost on the way).
    acknowledged = sum(d.events for d in deliveries if d.acknowledged)
    accepted = sum(a[2] for d in deliveries for a in d.answers if a[1] == 200)
    duplicates_answered = sum(a[3] for d in deliveries for a in d.answers if a[1] == 200)
    unacknowledged = [d for d in deliveries if not d.acknowledged]
    stored = Event.objects.count()
    distinct_ids = Event.objects.values("event_id").distinct().count()
    statuses = dict(Event.objects.values_list("status").annotate(n=Count("id")))
    final = sum(statuses.get(s, 0) for s in (Status.SUCCEEDED, Status.UNCHANGED, Status.FAILED, Status.IGNORED))
    failed = set(Event.objects.filter(status=Status.FAILED).values_list("event_id", flat=True))
    patched = world.state.patches_per_asset
    twice = {a: n for a, n in patched.items() if n > 1}
    missing = assets - set(patched)
    unneeded = set(patched) - assets

    ledger.row("events sent (distinct)", sent)
    ledger.row("answers, every pass", ", ".join(f"{k}: {v}" for k, v in sorted(answers.items(), key=str)))
    ledger.row("events acknowledged (in deliveries answered 200)", acknowledged)
    ledger.row("  200s' accepted + duplicates", f"{accepted} + {duplicates_answered}")
    ledger.row("events stored", stored)
    ledger.row("events in a final status", f"{final}  {dict(sorted(statuses.items()))}")
    ledger.row("assets that needed a PATCH", len(assets))
    ledger.row("assets PATCHed (by the AEM stand-in)", len(patched))
    ledger.row("PATCH requests answered 2xx / other", f"{sum(patched.values())} / {faulted(world, 'aem_patch')}")
    ledger.row("stand-in calls", dict(sorted(world.state.calls.items())))
    ledger.row("sweeps run / failed (database down)", f"{world.sweeps['ok']} / {world.sweeps['failed']}")
    ledger.expect(not unacknowledged, f"every delivery acknowledged in the end ({len(unacknowledged)} not)")
    ledger.expect(acknowledged == stored == final == sent, "acknowledged = stored = final = sent")
    ledger.expect(
        accepted + duplicates_answered == acknowledged,
        "each acknowledged event accepted once or recognised as already stored",
    )
    ledger.expect(distinct_ids == stored, f"no event stored twice ({stored - distinct_ids} duplicates)")
    ledger.expect(not missing and not unneeded, f"PATCHed = needed ({len(missing)} missing, {len(unneeded)} unneeded)")
    ledger.expect(not twice, f"no asset PATCHed twice ({len(twice)} were)")
    unexpected = failed - expected_failed
    ledger.expect(
        not unexpected,
        f"no other event failed ({len(unexpected)} did"
        + (f", e.g. {_reason(next(iter(unexpected)))!r}" if unexpected else "")
        + ")",
    )
    return ledger


def faulted(world: World, kind: str) -> int:
    """Calls of this kind ("aem" for both AEM kinds) answered with an injected fault."""
    return sum(n for k, n in world.state.calls.items() if k.startswith(kind) and k.rsplit("_", 1)[-1].isdigit())


def _reason(event_id: str) -> str:
    from pimsync.models import Event  # needs Django set up (World.start)

    return Event.objects.filter(event_id=event_id).values_list("reason", flat=True).first() or ""
