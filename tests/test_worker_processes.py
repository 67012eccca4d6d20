"""Real `manage.py qcluster` processes: a worker killed with SIGKILL mid-task, two workers racing
for one asset, two clusters sharing a burst; and a drain on its threads asking for help. The
database is the test database, committed, shared with the processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection, connections
from django_q.models import OrmQ, Schedule

from pimsync import pipeline, worker
from pimsync.models import Event, Status
from pimsync.wakeups import DRAIN
from standins.adobe import CLIENT_SECRET
from standins.pim import PimStub
from tests.conftest import make_event, product, threaded_world

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    return f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"


def environment(world, settings) -> dict[str, str]:
    """A deployment's environment for a pimsync process started by a test: the test database and
    the world's stand-ins."""
    return {
        "PATH": os.environ["PATH"],
        "PIMSYNC_READ_DOTENV": "0",
        "DJANGO_SETTINGS_MODULE": "pimsync.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": database_url(),
        "ADOBE_CLIENT_ID": settings.ADOBE_CLIENT_ID,
        "ADOBE_CLIENT_SECRET": CLIENT_SECRET,
        "ADOBE_IMS_TOKEN_URL": world.ims.url,
        "ADOBE_EVENTS_KEY_BASE_URL": settings.ADOBE_EVENTS_KEY_BASE_URL,
        "AEM_AUTHOR_URL": world.aem.url,
        "AEM_EVENT_SOURCE": settings.AEM_EVENT_SOURCE,
        "PIM_BASE_URL": world.pim.url,
        "PIM_API_TOKEN": PimStub.TOKEN,
        "PIMSYNC_TASK_TIMEOUT_SECONDS": str(settings.PIMSYNC_TASK_TIMEOUT_SECONDS),
    }


class Worker:
    """`manage.py qcluster` in its own process group, configured like a deployment."""

    def __init__(self, world, settings, workers: int = 1, **extra_env: str) -> None:
        env = {**environment(world, settings), "PIMSYNC_WORKERS": str(workers), **extra_env}
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        """SIGKILL the whole cluster: guard, pusher, workers and monitor."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
        # The guard may exit before its workers: end the whole group, so that no straggler keeps
        # a database session open (PostgreSQL then cannot drop the test database).
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def short_timeout(settings):
    settings.PIMSYNC_TASK_TIMEOUT_SECONDS = 4
    return settings


def test_an_event_survives_its_worker_being_killed_mid_task(client, world, short_timeout):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    event = world.upload(client, 1)
    world.aem.faults.add("PATCH", 503, delay=3)  # the first PATCH hangs: the worker is killed inside it
    first = Worker(world, short_timeout)
    second = None
    try:
        assert world.adobe.deliver(client, event).status_code == 200
        wait_for(lambda: Event.objects.filter(status=Status.PROCESSING).exists(), what="the worker to claim it")
        wait_for(lambda: ("PATCH", event["data"]["assetId"]) in world.aem.calls, what="the PATCH to start")
        first.kill()
        assert Event.objects.get().status == Status.PROCESSING

        second = Worker(world, short_timeout)
        # The sweeper (scheduled every minute in production) hands the event out again once the
        # dead worker's lease has expired.
        wait_for(lambda: "revived 1" in pipeline.sweep(), timeout=15, what="the lease to expire")
        wait_for(lambda: Event.objects.get().status == Status.SUCCEEDED, what="the event to succeed")
    finally:
        first.stop()
        if second:
            second.stop()
    assert world.aem.assets[event["data"]["assetId"]]["wknd-skuid"] == "SKU-100001"
    assert Event.objects.get().attempts == 2


def test_an_event_whose_worker_is_killed_every_time_ends_failed(client, world, short_timeout):
    short_timeout.PIMSYNC_MAX_ATTEMPTS = 2
    world.pim.products["SKU-100001"] = product("SKU-100001")
    event = world.upload(client, 1)
    asset_id = event["data"]["assetId"]
    world.aem.faults.add("PATCH", 503, times=2, delay=3)  # each PATCH hangs: the worker dies inside it
    assert world.adobe.deliver(client, event).status_code == 200
    for attempt, sweeper_says in ((1, "revived 1"), (2, "failed 1")):
        worker = Worker(world, short_timeout, PIMSYNC_MAX_ATTEMPTS="2")
        try:
            wait_for(
                lambda: world.aem.calls.count(("PATCH", asset_id)) == attempt,  # noqa: B023 (waited on at once)
                what=f"PATCH number {attempt} to start",
            )
            worker.kill()
        finally:
            worker.stop()
        assert Event.objects.get().status == Status.PROCESSING
        wait_for(lambda: sweeper_says in pipeline.sweep(), timeout=15, what=f"the sweeper to say {sweeper_says!r}")  # noqa: B023
    stored = Event.objects.get()
    assert stored.status == Status.FAILED
    assert stored.reason.startswith("its worker stopped 2 times before finishing (PIMSYNC_MAX_ATTEMPTS=2)")
    assert [a.error_class for a in stored.attempt_set.all()] == ["worker_stopped", "worker_stopped"]
    assert "revived 0" in pipeline.sweep()  # it stays failed


def test_two_workers_never_enrich_one_asset_at_once(client, world, short_timeout):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    first = world.upload(client, 1)
    asset_id = first["data"]["assetId"]
    world.pim.faults.add("GET", 0, times=8, delay=0.5)  # a slow PIM widens the window for a race
    worker = Worker(world, short_timeout, workers=2)
    try:
        for n in range(8):
            event = make_event(500 + n, name="SKU-100001_front.png", asset_id=asset_id)
            assert world.adobe.deliver(client, event).status_code == 200
        wait_for(
            lambda: Event.objects.filter(status__in=[Status.SUCCEEDED, Status.UNCHANGED]).count() == 8,
            what="all eight events to finish",
        )
    finally:
        worker.stop()
    assert len(world.aem.patches) == 1


def test_a_resync_survives_its_worker_being_killed(client, world, short_timeout):
    """A re-sync of 12 assets at 4 assets/s; the worker is killed a few assets in, a new one
    finishes the job: every asset is written, none is left stale, the job counts each once."""
    from pimsync import resync
    from pimsync.models import Asset, Job, SyncState

    assets = []
    for n in range(12):
        sku = f"SKU-{100000 + n}"
        world.pim.products[sku] = product(sku)
        event = world.upload(client, n, sku=sku)
        world.adobe.deliver(client, event)
        assets.append(event["data"]["assetId"])
    world.drain()
    assert Asset.objects.filter(state=SyncState.IN_STEP).count() == 12
    for n in range(12):
        world.pim.products[f"SKU-{100000 + n}"] = product(f"SKU-{100000 + n}", name="Trail backpack 40L")
    world.aem.patches.clear()
    world.aem.faults.add("PATCH", 0, times=100, delay=0.2)  # slow enough to be killed in the middle

    job = resync.pim_changed([f"SKU-{100000 + n}" for n in range(12)], why="supplier renamed")
    first = Worker(world, short_timeout, PIMSYNC_RESYNC_RATE="4")
    second = None
    try:
        wait_for(lambda: len(world.aem.patches) >= 3, what="a few assets to be written")
        first.kill()
        assert len(world.aem.patches) < 12
        second = Worker(world, short_timeout, PIMSYNC_RESYNC_RATE="4")

        def finished() -> bool:
            pipeline.sweep()  # every minute in production: revives what the dead worker held, wakes workers
            resync.run(job.pk)
            return not Job.objects.get(pk=job.pk).is_active

        wait_for(finished, timeout=60, what="the re-sync to finish")
        # The job ends with its last event; that asset's state is recorded just after, by the
        # worker that ran it (a moment later on a busy machine).
        in_step = Asset.objects.filter(state=SyncState.IN_STEP)
        wait_for(lambda: in_step.count() == 12, timeout=10, what="every asset's state to be recorded")
    finally:
        first.stop()
        if second:
            second.stop()
    job.refresh_from_db()
    assert (job.status, job.total, job.done, job.failed) == (Job.State.FINISHED, 12, 12, 0)
    # The asset whose PATCH the kill interrupted may have been written before the worker died:
    # its second run finds the values there (unchanged).
    assert job.succeeded + job.unchanged == 12
    assert {patch["asset_id"] for patch in world.aem.patches} == set(assets)
    assert all(world.aem.assets[a]["dc:title"] == "Trail backpack 40L" for a in assets)
    assert Asset.objects.filter(state=SyncState.IN_STEP).count() == 12


def test_a_drain_keeps_the_promise_of_the_wake_up_that_started_it(client, world, short_timeout):
    """A delivery that queues a wake-up promises a drain to the deliveries of the next seconds, so
    they queue none; the drain it starts (lingering 0 s of its own here) looks until that promise
    has passed."""
    from django_q.models import OrmQ, Schedule

    Schedule.objects.all().delete()  # no sweeper: only the kept promise can bring the second event
    short_timeout.PIMSYNC_DRAIN_LINGER_SECONDS = 12  # the web's promise; room for a slow start
    first, second = world.upload(client, 1), world.upload(client, 2)
    for event in (first, second):
        sku = event["data"]["repositoryMetadata"]["repo:name"].split("_")[0]
        world.pim.products[sku] = product(sku)
    worker = Worker(world, short_timeout, PIMSYNC_DRAIN_LINGER_SECONDS="0")
    try:
        assert world.adobe.deliver(client, first).status_code == 200
        assert OrmQ.objects.count() == 1
        wait_for(lambda: Event.objects.filter(status=Status.SUCCEEDED).count() == 1, what="the first event")
        queued = OrmQ.objects.count()  # the running drain's own task, until it ends
        assert world.adobe.deliver(client, second).status_code == 200
        assert OrmQ.objects.count() == queued  # covered: no wake-up of its own
        wait_for(lambda: Event.objects.filter(status=Status.SUCCEEDED).count() == 2, what="the second event")
    finally:
        worker.stop()


@pytest.fixture
def slow_world(adobe, settings):
    """The stand-ins answering calls at once, the PIM taking 0.8 s over each; no sweeper, so only
    the drains themselves can wake another worker."""
    with threaded_world(adobe, settings) as world:
        world.pim.latency = 0.8
        Schedule.objects.all().delete()
        yield world


def burst(client, world, assets: int, first: int = 1) -> list[str]:
    """`assets` new assets (at most a delivery's 20) numbered from `first`, their products in the
    PIM, delivered at once."""
    numbers = range(first, first + assets)
    events = [world.upload(client, n) for n in numbers]
    for n in numbers:
        world.pim.products[f"SKU-{100000 + n}"] = product(f"SKU-{100000 + n}")
    assert world.adobe.deliver(client, events).status_code == 200
    return [event["data"]["assetId"] for event in events]


def test_a_burst_brings_a_second_cluster_to_work_at_once(client, slow_world, settings):
    """A burst's deliveries queue one wake-up between them, and a busy cluster's pusher may take
    the next ones ahead of its free processes. The drain with more due assets than threads asks
    for another drain, so the second cluster joins the burst (more PIM calls at once than one
    cluster's two threads make) rather than idling until the sweeper's next minute."""
    world = slow_world
    asset_ids = burst(client, world, 20)
    assert OrmQ.objects.count() == 1
    clusters = [Worker(world, settings, PIMSYNC_WORKER_THREADS="2") for _ in range(2)]
    try:
        wait_for(
            lambda: Event.objects.filter(status=Status.SUCCEEDED).count() == 20,
            timeout=60,
            what="all 20 events to succeed",
        )
    finally:
        for cluster in clusters:
            cluster.stop()
    assert world.pim.max_in_flight > 2
    assert sorted(patch["asset_id"] for patch in world.aem.patches) == sorted(asset_ids)  # each once


@pytest.fixture
def drain_on_threads(settings, monkeypatch):
    """This process's drain on a pool of two threads, as a worker process runs it."""
    settings.PIMSYNC_WORKER_THREADS = 2
    settings.PIMSYNC_READ_AHEAD = False
    settings.PIMSYNC_DRAIN_LINGER_SECONDS = 0
    monkeypatch.setattr(worker.Threads, "_pool", None)
    yield
    pool = worker.Threads._pool
    if pool is not None:
        # Each thread closes its database connection (a barrier makes both threads take one
        # task), or the test database could not be dropped.
        together = threading.Barrier(settings.PIMSYNC_WORKER_THREADS)

        def close() -> None:
            connections.close_all()
            together.wait(timeout=10)

        for _ in range(settings.PIMSYNC_WORKER_THREADS):
            pool.submit(close)
        pool.shutdown()


def drains_queued() -> int:
    return sum(1 for task in OrmQ.objects.all() if task.func() == DRAIN)


def test_a_drain_asks_for_help_only_with_more_assets_than_threads_and_once_while_its_call_waits(
    client, slow_world, drain_on_threads
):
    """Two assets for two threads: no help asked. Twelve, six rounds of two threads: the drain asks
    once, and not again while the drain task it queued is still waiting in the broker (no worker
    here takes it)."""
    burst(client, slow_world, 2)
    OrmQ.objects.all().delete()  # the delivery's own wake-up: this test runs the drain itself
    assert worker.drain() == "drained 2 asset(s)"
    assert drains_queued() == 0
    burst(client, slow_world, 12, first=3)
    OrmQ.objects.all().delete()
    assert worker.drain() == "drained 12 asset(s)"
    assert drains_queued() == 1
