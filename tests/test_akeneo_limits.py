"""Akeneo's limit of 4 calls in flight per Connection holds for all pimsync processes together
(https://api.akeneo.com/documentation/good-practices.html): real `manage.py shell` processes on the
test database against a loopback Akeneo that records the most calls it answered at once; a slot of
a process that died frees itself; a call that finds no slot free before its deadline is not sent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from pimsync.models import Lock
from pimsync.outbound import http
from pimsync.pim import akeneo as client
from pimsync.pim import connectors
from standins.akeneo import AkeneoStub
from tests.conftest import akeneo_product
from tests.test_worker_processes import ROOT, database_url

pytestmark = pytest.mark.django_db

SLOTS = client._in_flight.names


def lookup(key: str) -> dict | None:
    return connectors.connector().get_product(key)


def take_every_slot(seconds: float) -> None:
    """What a process that died mid-call leaves: every slot leased for `seconds` more."""
    Lock.create_missing(SLOTS)
    for _ in SLOTS:
        assert Lock.acquire_any(SLOTS, timedelta(seconds=seconds)) is not None
    assert Lock.acquire_any(SLOTS, timedelta(seconds=seconds)) is None


LOOKUPS = """
import os, sys, threading, time
from pimsync.pim import connectors
from pimsync.outbound import http
go, threads, each = {go!r}, {threads!r}, {each!r}
found, failed = [], []
def work():
    for _ in range(each):
        try:
            found.append(connectors.connector().get_product("SKU-1")["uuid"])
        except http.HttpError as exc:
            failed.append(exc.error_class)
print("ready", flush=True)
for _ in range(6000):  # every process set up before the first call
    if os.path.exists(go):
        break
    time.sleep(0.01)
workers = [threading.Thread(target=work) for _ in range(threads)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print(len(found), ",".join(failed))
"""


def lookups_in_processes(akeneo, settings, go, processes: int, threads: int, each: int) -> list[str]:
    """Start `processes` pimsync processes that, all at the same moment (once every one is set up),
    look a product up from `threads` threads `each` times; what each printed (lookups found, errors)."""
    env = {
        "PATH": os.environ["PATH"],
        "PIMSYNC_READ_DOTENV": "0",
        "DJANGO_SETTINGS_MODULE": "pimsync.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": database_url(),
        "PIM_CONNECTOR": "akeneo",
        "PIM_BASE_URL": akeneo.url,
        "AKENEO_CLIENT_ID": AkeneoStub.CLIENT_ID,
        "AKENEO_SECRET": AkeneoStub.SECRET,
        "AKENEO_USERNAME": AkeneoStub.USERNAME,
        "AKENEO_PASSWORD": AkeneoStub.PASSWORD,
        "LOG_LEVEL": "WARNING",
    }
    script = LOOKUPS.format(go=str(go), threads=threads, each=each)
    started = [
        subprocess.Popen(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for process in started:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
    go.touch()
    printed = []
    for process in started:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        printed.append(out.splitlines()[-1].strip())
    return printed


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_two_processes_together_never_have_more_than_four_calls_in_flight(akeneo, settings, tmp_path):
    akeneo_product(akeneo, "SKU-1")
    assert lookup("SKU-1")  # the shared token, stored for the processes
    akeneo.latency = 0.2
    printed = lookups_in_processes(akeneo, settings, tmp_path / "go", processes=2, threads=8, each=3)
    assert printed == ["24", "24"]  # every lookup answered, none refused
    # With a limit per process, 2 × 8 threads had 8 calls in flight at once.
    assert 3 <= akeneo.max_in_flight <= client.MAX_IN_FLIGHT
    assert akeneo.calls("GET", "/api/rest/v1/products-uuid") == 1 + 48
    assert not Lock.objects.filter(pk__in=SLOTS).exclude(lease_token="").exists()  # all given back


def test_a_slot_left_by_a_dead_process_frees_itself_when_its_lease_ends(akeneo):
    akeneo_product(akeneo, "SKU-1")
    lookup("SKU-1")
    take_every_slot(seconds=1.0)
    started = time.monotonic()
    assert lookup("SKU-1")["uuid"]
    assert 0.5 <= time.monotonic() - started < 5


def test_a_call_that_finds_no_free_slot_before_its_deadline_is_not_sent(akeneo, settings):
    akeneo_product(akeneo, "SKU-1")
    lookup("SKU-1")
    calls = len(akeneo.requests)
    settings.PIMSYNC_HTTP_TIMEOUT_SECONDS = 1
    take_every_slot(seconds=60)
    started = time.monotonic()
    with pytest.raises(http.HttpError) as raised:
        lookup("SKU-1")
    assert 0.9 <= time.monotonic() - started < 4
    assert (raised.value.error_class, raised.value.retryable) == ("akeneo_busy", True)
    assert "Akeneo already had 4 calls in flight (all pimsync processes together)" in raised.value.message
    assert len(akeneo.requests) == calls


def test_the_wait_for_a_slot_counts_in_the_calls_deadline(akeneo, settings):
    """A call's deadline covers its wait and the call: after a wait of about 1 s, a call to an
    Akeneo that answers in 1.5 s times out at 2 s in all, not at 1 + 2."""
    akeneo_product(akeneo, "SKU-1")
    lookup("SKU-1")
    settings.PIMSYNC_HTTP_TIMEOUT_SECONDS = 2
    take_every_slot(seconds=1.0)
    akeneo.latency = 1.5
    started = time.monotonic()
    with pytest.raises(http.HttpError) as raised:
        lookup("SKU-1")
    assert raised.value.error_class == "pim_timeout"
    assert 1.8 <= time.monotonic() - started < 4
