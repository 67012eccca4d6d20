"""One failure drill, in a process of its own (Django is set up for that drill's private database):

    python -m drills.run NAME [--events N]

It starts a private PostgreSQL, the loopback stand-ins for IMS, the key server, AEM and the PIM
(standins/peers.py), gunicorn for the webhook and a `manage.py qcluster`, then sends a burst of signed
events while the drill's fault happens, redelivers what was not acknowledged (as Adobe does), waits
for every event to reach a final status and prints the ledger. Exit status 0 = PASS, 1 = FAIL.
"""

from __future__ import annotations

import argparse
import faulthandler
import http.client
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization

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
        import django

        django.setup()
        from django.core.management import call_command

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
        from django.db import connection

        from pimsync.pipeline import sweep

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
        from django.db import connections

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
        from pimsync.models import PENDING, Event, Status

        deadline = time.monotonic() + timeout
        last_report = time.monotonic()
        while True:
            try:
                stored = Event.objects.count()
                open_ = Event.objects.filter(status__in=[*PENDING, Status.PROCESSING]).count()
            except Exception:
                from django.db import connection

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
    from django.db import connection
    from django.db.models import Count

    from pimsync.models import Event, Status

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
    ledger.row("PATCH requests answered 2xx / other", f"{sum(patched.values())} / {_faulted(world, 'aem_patch')}")
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


def _faulted(world: World, kind: str) -> int:
    """Calls of this kind ("aem" for both AEM kinds) answered with an injected fault."""
    return sum(n for k, n in world.state.calls.items() if k.startswith(kind) and k.rsplit("_", 1)[-1].isdigit())


def _reason(event_id: str) -> str:
    from pimsync.models import Event

    return Event.objects.filter(event_id=event_id).values_list("reason", flat=True).first() or ""


# --- the drills ------------------------------------------------------------------------------


def _get_all(world: World, path: str, count: int, cookie: str) -> Counter:
    """GET `path` `count` times from 8 threads, a connection each time (any gunicorn thread answers)."""

    def get(_):
        conn = http.client.HTTPConnection("127.0.0.1", world.web_port, timeout=10)
        try:
            conn.request("GET", path, headers={"Cookie": cookie})
            response = conn.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException) as exc:
            return f"connection error ({type(exc).__name__})"
        finally:
            conn.close()

    with ThreadPoolExecutor(8) as pool:
        return Counter(pool.map(get, range(count)))


def _staff_cookie() -> str:
    """A logged-in superuser's session cookie, made directly in the database."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    user = User.objects.create_superuser("drill", "drill@example.com", "drill-password-42")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"sessionid={session.session_key}"


def postgres_restart(world: World, count: int) -> Ledger:
    """PostgreSQL stopped (-m fast) for 3 s in the middle of the burst, then started again; once
    everything finished, restarted once more under the dashboard's open connections."""
    cookie = _staff_cookie()
    deliveries, assets, _ = world.deliveries(count)

    def restart():
        world.note("PostgreSQL: pg_ctl stop -m fast")
        world.pg.stop("fast")
        time.sleep(3)
        world.pg.start()
        world.note("PostgreSQL: started again")

    fault = world.at(2.0, restart)
    world.burst(deliveries)
    fault.join()
    done = world.wait_final(count, timeout=90)
    ledger = balance(world, deliveries, assets, set())
    answers = Counter(a[1] for d in deliveries for a in d.answers)
    unavailable = answers.get(503, 0)
    ledger.expect(unavailable > 0, f"the webhook answered 503 while PostgreSQL was down ({unavailable})")
    ledger.expect(not answers.get(500), f"never a 500 ({answers.get(500, 0)})")
    ledger.expect(done, "everything finished afterwards")
    # Every gunicorn thread now holds a connection to the database; a restart breaks them all.
    pages = ("/admin/", "/admin/pimsync/event/", "/healthz")
    before = Counter()
    for path in pages:
        before.update(_get_all(world, path, 16, cookie))
    ledger.row("GETs of those pages before it", ", ".join(f"{k}: {v}" for k, v in sorted(before.items(), key=str)))
    world.pg.stop("fast")
    world.pg.start()
    world.note("PostgreSQL: restarted again (pg_ctl stop -m fast; start), nothing else running")
    for path in pages:
        statuses = _get_all(world, path, 16, cookie)
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=str))
        ledger.row(f"GET {path} x16 after the second restart", summary)
        ledger.expect(set(statuses) == {200}, f"{path} answers 200 on connections opened before the restart")
    return ledger


def _sockets(pid: int) -> int:
    try:
        return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd).startswith("socket:"))
    except OSError:
        return 0


def gunicorn_kill(world: World, count: int) -> Ledger:
    """One gunicorn worker process SIGKILLed in the middle of the burst, with requests in it."""
    deliveries, assets, _ = world.deliveries(count)
    killed = []

    def kill():
        # The worker holding most of the sender's connections; frozen for half a second first
        # (SIGSTOP), so that requests are surely in flight in it when it dies.
        pids = sorted(world.gunicorn_workers(), key=_sockets)
        victim = pids[-1]
        os.kill(victim, signal.SIGSTOP)
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
        world.note(f"gunicorn worker {victim} frozen 0.5 s, then SIGKILLed ({len(pids)} were running)")

    fault = world.at(2.0, kill)
    world.burst(deliveries)
    fault.join()
    done = world.wait_final(count, timeout=90)
    ledger = balance(world, deliveries, assets, set())
    answers = Counter(a[1] for d in deliveries for a in d.answers)
    errors = sum(n for k, n in answers.items() if not isinstance(k, int))
    ledger.row("connection errors, redelivered", errors)
    ledger.expect(killed, "a gunicorn worker was killed")
    ledger.expect(errors > 0, "the kill cut requests off (connection errors)")
    ledger.expect(not answers.get(500), f"never a 500 ({answers.get(500, 0)})")
    ledger.expect(len(world.gunicorn_workers()) == 2, "gunicorn replaced the worker")
    ledger.expect(done, "every acknowledged event finished")
    return ledger


def _neighbours_finish(poison_id: str, since, limit: float) -> str:
    """Wait until no event but the poison one is being processed by a live worker (claimed after
    the last kill: older claims died with their worker), or `limit` seconds; say which."""
    from django.db import connection

    from pimsync.models import Event, Status

    deadline = time.monotonic() + limit
    live = Event.objects.filter(status=Status.PROCESSING).exclude(event_id=poison_id)
    if since is not None:
        live = live.filter(claimed_at__gt=since)
    try:
        while True:
            busy = live.count()
            if not busy:
                return "no other event was in progress"
            if time.monotonic() > deadline:
                return f"{busy} other events still in progress after {limit:.0f} s"
            time.sleep(0.1)
    finally:
        connection.close()  # this stand-in thread's own connection


def poison(world: World, count: int) -> Ledger:
    """Every worker process SIGKILLed each time one starts enriching the poison event."""
    deliveries, assets, poison_id = world.deliveries(count, poison=True)
    from django.utils import timezone

    kills: list[list[int]] = []
    killed_at: list = []

    def fault(kind: str, key: str):
        if kind == "pim" and key == POISON_KEY:
            # Let the other events being processed right now finish first: the drill is about the
            # poison event, not about its neighbours' attempt budgets. At most 2 s, within the 3 s
            # HTTP timeout, so that the poison's call is still open when its workers die.
            waited = _neighbours_finish(poison_id, killed_at[-1] if killed_at else None, 2.0)
            pids = world.worker_pids()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            kills.append(pids)
            killed_at.append(timezone.now())
            world.note(f"PIM saw the poison key: SIGKILLed worker processes {pids} (kill {len(kills)}; {waited})")
            return 503, {"Connection": "close"}
        return None

    world.state.fault = fault
    world.burst(deliveries)
    max_attempts = int(world.env["PIMSYNC_MAX_ATTEMPTS"])
    # Each round costs the task timeout (8 s) before the sweeper hands the event out again.
    done = world.wait_final(count, timeout=(max_attempts + 3) * 12)
    ledger = balance(world, deliveries, assets, {poison_id})
    from pimsync.models import Event

    row = Event.objects.filter(event_id=poison_id).values("status", "reason", "attempts").first() or {}
    ledger.row("poison event", f"{row.get('status')} after {row.get('attempts')} claims: {row.get('reason')!r}")
    ledger.row("times its workers were SIGKILLed", len(kills))
    match = re.search(r"worker stopped (\d+)( of \d+)? times", row.get("reason") or "")
    ledger.expect(kills, "the poison event's workers were killed")
    ledger.expect(row.get("status") == "failed", f"the poison event ended failed (it is {row.get('status')})")
    ledger.expect(match, "its reason says its worker stopped N times")
    alive = len(world.worker_pids())
    ledger.expect(alive == int(world.env["PIMSYNC_WORKERS"]), f"django-q2 replaced the killed workers ({alive} run)")
    ledger.expect(len(kills) <= max_attempts, f"killed at most PIMSYNC_MAX_ATTEMPTS = {max_attempts} times")
    ledger.expect(done, "every event reached a final status")
    return ledger


def pim_down(world: World, count: int) -> Ledger:
    """The PIM refuses connections for 10 s, answers 503 for 10 s more, then comes back."""
    deliveries, assets, _ = world.deliveries(count)
    phase = {"now": "refusing"}

    def fault(kind: str, key: str):
        if kind == "pim" and phase["now"] != "up":
            return 503, {"Connection": "close"}  # kept-alive connections: a 503 and the socket closed
        return None

    world.state.fault = fault
    world.pim.__exit__()  # new connections are refused from now on
    world.note("PIM: stopped listening (connections refused)")

    def answer_503():
        world.pim = StubServer(world.state, world.pim_port).__enter__()
        phase["now"] = "503"
        world.note("PIM: listening again, answering 503 to every lookup")

    def back():
        phase["now"] = "up"
        world.note("PIM: back to normal")

    world.at(10, answer_503)
    fault_end = world.at(20, back)
    world.burst(deliveries)
    fault_end.join()
    done = world.wait_final(count, timeout=100)
    ledger = balance(world, deliveries, assets, set())
    from django.db.models import Max

    from pimsync.models import Attempt, Event

    retried = Attempt.objects.filter(outcome="retrying").values("event").distinct().count()
    most = Event.objects.aggregate(m=Max("attempts"))["m"]
    ledger.row("events that were retried / most attempts", f"{retried} / {most}")
    ledger.expect(_faulted(world, "pim") > 0, f"the workers met the outage ({_faulted(world, 'pim')} PIM calls failed)")
    ledger.expect(retried > 0, "events were retried with backoff")
    ledger.expect(done, "every event ended after the PIM came back")
    return ledger


def aem_429(world: World, count: int) -> Ledger:
    """AEM answers every call 429 with Retry-After: 2 for 15 s, then normally."""
    deliveries, assets, _ = world.deliveries(count)
    limited = {"on": True}

    def fault(kind: str, key: str):
        if kind.startswith("aem") and limited["on"]:
            return 429, {"Retry-After": "2"}
        return None

    world.state.fault = fault
    world.note("AEM: answering 429 with Retry-After: 2 to every call")

    def back():
        limited["on"] = False
        world.note("AEM: back to normal")

    fault_end = world.at(15, back)
    world.burst(deliveries)
    fault_end.join()
    done = world.wait_final(count, timeout=100)
    ledger = balance(world, deliveries, assets, set())
    from pimsync.models import Attempt

    # Retry-After honoured: after an attempt that met a 429, the next one starts 2 s later or more.
    early, gaps = 0, 0
    previous = {}
    for attempt in Attempt.objects.order_by("event_id", "number").values(
        "event_id", "started_at", "duration_ms", "aem_status"
    ):
        before = previous.get(attempt["event_id"])
        if before and before["aem_status"] == 429:
            gaps += 1
            ended = before["started_at"].timestamp() + before["duration_ms"] / 1000
            if attempt["started_at"].timestamp() - ended < 1.9:
                early += 1
        previous[attempt["event_id"]] = attempt
    ledger.row("retries after a 429 / started before Retry-After", f"{gaps} / {early}")
    ledger.expect(_faulted(world, "aem") > 0, f"the workers met the 429s ({_faulted(world, 'aem')} AEM calls)")
    ledger.expect(gaps > 0 and early == 0, "every retry after a 429 waited for Retry-After")
    ledger.expect(done, "every event ended after AEM stopped limiting")
    return ledger


def webhook_down(world: World, count: int) -> Ledger:
    """The webhook answers 503 to the whole burst and every redelivery; the journal recovers every event."""
    from django.conf import settings
    from django.db import connection

    from drills.journal import Down
    from pimsync.adobe import journal
    from standins.journal import ThreadedJournal

    deliveries, assets, _ = world.deliveries(count)
    carried = [e for d in deliveries for e in (json.loads(d.body) if d.body.startswith(b"[") else [json.loads(d.body)])]
    registry, down = ThreadedJournal(carried), Down()
    # Only this process pulls (as the schedule would, every second instead of every minute).
    settings.ADOBE_JOURNAL_URL, settings.ADOBE_IMS_ORG_ID = registry.url, "D8111000000000000000000@AdobeOrg"
    web_port, world.web_port = world.web_port, down.port
    world.note("webhook: every POST answered 503 (a broken proxy in front of it)")
    try:
        world.burst(deliveries, redeliver_for=10)
    finally:
        world.web_port = web_port
    stop, pulls = threading.Event(), Counter()

    def pull_loop() -> None:
        while not stop.wait(1.0):
            try:
                pulls[journal.pull().outcome.split(":")[0]] += 1
            except Exception:  # noqa: BLE001 - a drill's background loop must keep going
                pulls["raised"] += 1
                connection.close()

    puller = threading.Thread(target=pull_loop, daemon=True)
    puller.start()
    world.note("journal: pulling every second")
    try:
        done = world.wait_final(count, timeout=150)
    finally:
        stop.set()
        puller.join(timeout=10)
        registry.close()
        down.close()
    return _journal_ledger(world, deliveries, assets, registry, pulls, done)


def _journal_ledger(world, deliveries, assets, registry, pulls, done) -> Ledger:
    from django.db import connection
    from django.db.models import Count

    from pimsync.models import Arrival, Event, JournalCursor, Status

    connection.close()
    ledger = Ledger()
    sent = sum(d.events for d in deliveries)
    answers = Counter(a[1] for d in deliveries for a in d.answers)
    stored = Event.objects.count()
    by_journal = Event.objects.filter(arrived_by=Arrival.JOURNAL).count()
    distinct_ids = Event.objects.values("event_id").distinct().count()
    statuses = dict(Event.objects.values_list("status").annotate(n=Count("id")))
    final = sum(statuses.get(s, 0) for s in (Status.SUCCEEDED, Status.UNCHANGED, Status.FAILED, Status.IGNORED))
    patched = world.state.patches_per_asset
    twice = {a: n for a, n in patched.items() if n > 1}
    missing, unneeded = assets - set(patched), set(patched) - assets
    cursor = JournalCursor.load()
    ledger.row("events sent (distinct)", sent)
    ledger.row("webhook answers, every pass", ", ".join(f"{k}: {v}" for k, v in sorted(answers.items(), key=str)))
    ledger.row("journal pages served 200 / 204", f"{registry.pages['200']} / {registry.pages['204']}")
    ledger.row("journal pulls by outcome", dict(sorted(pulls.items())))
    ledger.row("journal events read (cursor)", cursor.pulled_total)
    ledger.row("events stored / arrived by the journal", f"{stored} / {by_journal}")
    ledger.row("events in a final status", f"{final}  {dict(sorted(statuses.items()))}")
    ledger.row("assets that needed a PATCH / PATCHed", f"{len(assets)} / {len(patched)}")
    ledger.expect(answers and set(answers) == {503}, "the webhook acknowledged nothing (503 every time)")
    ledger.expect(stored == by_journal == final == sent, "stored = arrived by the journal = final = sent")
    ledger.expect(distinct_ids == stored, f"no event stored twice ({stored - distinct_ids} duplicates)")
    ledger.expect(not missing and not unneeded, f"PATCHed = needed ({len(missing)} missing, {len(unneeded)} unneeded)")
    ledger.expect(not twice, f"no asset PATCHed twice ({len(twice)} were)")
    ledger.expect(not statuses.get(Status.FAILED), f"no event failed ({statuses.get(Status.FAILED, 0)} did)")
    ledger.expect(cursor.caught_up_at is not None and not cursor.last_error, "the cursor reached the journal's end")
    ledger.expect(done, "every event ended")
    return ledger


DRILLS = {
    "postgres-restart": (postgres_restart, {}),
    "gunicorn-kill": (gunicorn_kill, {}),
    # A small attempt budget keeps the drill short: each kill costs a task timeout.
    "poison": (poison, {"PIMSYNC_MAX_ATTEMPTS": "4"}),
    "pim-down": (pim_down, {}),
    "aem-429": (aem_429, {}),
    "webhook-down": (webhook_down, {}),
}


def _interrupted(signum, frame):
    """A SIGTERM (the runner's time limit) still tears the private database down."""
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(DRILLS))
    parser.add_argument("--events", type=int, default=600)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupted)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` shows where a stuck drill is
    function, env = DRILLS[args.name]
    say(f"== drill {args.name}: {' '.join(function.__doc__.split())}")
    world = World(args.name)
    ledger = Ledger()
    try:
        world.start(env)
        world.note(
            f"running: private PostgreSQL on :{world.pg.port}, gunicorn 2x4 on :{world.web_port}, "
            f"qcluster {world.env['PIMSYNC_WORKERS']}x{world.env['PIMSYNC_WORKER_THREADS']}, "
            f"sweeper every {SWEEP_EVERY:.0f} s, {LATENCY * 1000:.0f} ms per PIM/AEM call"
        )
        ledger = function(world, args.events)
    except Exception as exc:
        import traceback

        traceback.print_exc()
        ledger.expect(False, f"the drill itself broke: {type(exc).__name__}: {exc}")
    finally:
        world.close()
    for line in ledger.lines():
        say(line)
    if ledger.passed:
        shutil.rmtree(world.workdir, ignore_errors=True)
    else:
        say(f"  logs of gunicorn and qcluster: {world.workdir}")
    say(f"  {args.name}: {'PASS' if ledger.passed else 'FAIL'}")
    return 0 if ledger.passed else 1


if __name__ == "__main__":
    sys.exit(main())
