"""A 429 from AEM or the PIM slows every worker: no call to that system goes out, from any process,
before its Retry-After has passed; the pause shows on the overview and in /metrics."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from werkzeug import Response

from pimsync import pipeline
from pimsync.models import Event, Pause, Status
from pimsync.outbound import http, throttle
from tests.conftest import product
from tests.test_worker_processes import ROOT, environment

pytestmark = pytest.mark.django_db

DAY = 24 * 3600.0


def later(seconds: float):
    return time_machine.travel(timezone.now() + timedelta(seconds=seconds), tick=True)


def event_of(world, n: int) -> Event:
    return Event.objects.get(asset_id=f"urn:aaid:aem:00000000-0000-4000-8000-{n:012d}")


def upload_and_drain(client, world, n: int) -> Event:
    world.pim.products[f"SKU-{100000 + n}"] = product(f"SKU-{100000 + n}")
    assert world.adobe.deliver(client, world.upload(client, n)).status_code == 200
    world.drain()
    return event_of(world, n)


def test_a_429_for_one_asset_stops_every_aem_call_until_its_retry_after(client, world):
    world.aem.faults.add("GET", 429, headers={"Retry-After": "30"})
    first = upload_and_drain(client, world, 1)
    assert (first.status, first.error_class) == (Status.RETRYING, "aem_429")
    pause_end = Pause.objects.get(name="aem").until
    assert 29 <= (pause_end - timezone.now()).total_seconds() <= 30
    calls, pim_calls = len(world.aem.calls), len(world.pim.calls)

    second = upload_and_drain(client, world, 2)
    assert len(world.aem.calls) == calls  # no AEM call at all for the other asset
    assert len(world.pim.calls) == pim_calls  # nor a PIM call whose result it could not write
    assert (second.status, second.error_class) == (Status.RETRYING, "aem_paused")
    assert second.next_attempt_at >= pause_end
    assert "AEM asked to slow down (429); no calls until" in second.reason
    assert first.next_attempt_at >= pause_end

    with later(60):  # both retries are due (30 s ± 20% backoff, at least the pause)
        pipeline.sweep()
        world.drain()
    assert {event_of(world, n).status for n in (1, 2)} == {Status.SUCCEEDED}
    assert ("PATCH", second.asset_id) in world.aem.calls[calls:]


def test_waiting_out_a_pause_uses_up_no_attempt(client, world, settings):
    """A 429 storm: each time the event's turn comes, another worker has just been told to wait
    again. Refusals send nothing, so they never use up the event's attempts."""
    settings.PIMSYNC_MAX_ATTEMPTS = 2
    world.pim.products["SKU-100001"] = product("SKU-100001")
    throttle.extend("aem", 60, reason="a 429 another worker got")
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    for cycle in range(1, 4):  # three refusals, more than the event's two attempts
        with later(cycle * 80):  # past the pause (60 s) and the spread after it (at most 16 s)
            throttle.extend("aem", 60, reason="another 429")
            pipeline.sweep()
            world.drain()
    event = event_of(world, 1)
    assert (event.status, event.error_class, event.attempts) == (Status.RETRYING, "aem_paused", 4)
    assert not [call for call in world.aem.calls if call[1] == event.asset_id]
    with later(4 * 80):
        pipeline.sweep()
        world.drain()
    assert event_of(world, 1).status == Status.SUCCEEDED


def test_a_pim_429_without_retry_after_pauses_pim_calls_for_the_default(client, world):
    world.pim.faults.add("GET", 429)
    first = upload_and_drain(client, world, 1)
    assert (first.status, first.error_class) == (Status.RETRYING, "pim_429")
    left, _ = throttle.remaining("pim")
    assert throttle.DEFAULT_SECONDS - 2 <= left <= throttle.DEFAULT_SECONDS
    pim_calls, aem_calls = len(world.pim.calls), len(world.aem.calls)

    second = upload_and_drain(client, world, 2)
    assert (second.status, second.error_class) == (Status.RETRYING, "pim_paused")
    assert (len(world.pim.calls), len(world.aem.calls)) == (pim_calls, aem_calls)
    assert not Pause.objects.filter(name="aem").exists()  # AEM was not the one that asked

    with later(throttle.DEFAULT_SECONDS + 10):
        pipeline.sweep()
        world.drain()
    assert event_of(world, 2).status == Status.SUCCEEDED
    assert world.pim.calls[pim_calls:]


@pytest.mark.django_db(transaction=True)
def test_a_shorter_retry_after_never_cuts_a_longer_pause(httpserver, settings):
    settings.AEM_AUTHOR_URL = httpserver.url_for("").rstrip("/")

    def busy(request):
        # While this call is on its way, another worker gets a 429 asking for ten minutes.
        throttle.extend("aem", 600, reason="another worker's 429")
        connection.close()  # this server thread's own connection
        return Response("slow down", status=429, headers={"Retry-After": "5"})

    httpserver.expect_request("/busy").respond_with_handler(busy)
    with pytest.raises(http.HttpError) as answered:
        http.request("GET", httpserver.url_for("/busy"), error_class="aem", pause_key="aem")
    assert (answered.value.error_class, answered.value.retry_after) == ("aem_429", 5)
    with later(10), pytest.raises(http.HttpError) as refused:
        http.request("GET", httpserver.url_for("/busy"), error_class="aem", pause_key="aem")
    assert refused.value.error_class == "aem_paused"
    assert 580 <= refused.value.retry_after <= 590
    assert Pause.objects.get(name="aem").reason == "another worker's 429"
    assert len(httpserver.log) == 1
    throttle.extend("aem", 900, reason="a longer one")
    assert 890 <= throttle.remaining("aem")[0] <= 900


@pytest.mark.parametrize(
    "headers, seconds",
    [
        ({"Retry-After": "99999999999999999999"}, DAY),  # capped at a day
        ({"Retry-After": "Fri, 27 Nov 2099 07:30:00 GMT"}, DAY),
        ({"Retry-After": "soon"}, throttle.DEFAULT_SECONDS),  # unreadable: the default
        ({"Retry-After": "x" * 10_000}, throttle.DEFAULT_SECONDS),
        ({}, throttle.DEFAULT_SECONDS),
    ],
)
def test_a_malformed_or_huge_retry_after_pauses_for_the_default_or_at_most_a_day(
    httpserver, settings, headers, seconds
):
    settings.PIM_BASE_URL = httpserver.url_for("").rstrip("/")
    httpserver.expect_request("/busy").respond_with_data("slow down", status=429, headers=headers)
    with pytest.raises(http.HttpError) as answered:
        http.request("GET", httpserver.url_for("/busy"), error_class="pim", pause_key="pim")
    assert answered.value.error_class == "pim_429"
    assert answered.value.retry_after == seconds
    with pytest.raises(http.HttpError) as refused:
        http.request("GET", httpserver.url_for("/busy"), error_class="pim", pause_key="pim")
    assert refused.value.error_class == "pim_paused" and refused.value.retryable
    assert seconds - 5 <= refused.value.retry_after <= seconds
    assert len(httpserver.log) == 1


def test_calls_without_a_pause_key_and_other_systems_are_not_paused(httpserver, settings):
    settings.PIM_BASE_URL = httpserver.url_for("").rstrip("/")
    httpserver.expect_request("/ok").respond_with_json({"ok": True})
    throttle.extend("aem", 600, reason="AEM's 429")
    assert http.request("GET", httpserver.url_for("/ok"), error_class="pim", pause_key="pim").json() == {"ok": True}
    assert http.request("GET", httpserver.url_for("/ok"), error_class="pim").status_code == 200
    assert len(httpserver.log) == 2


def test_a_process_reads_a_systems_pause_at_most_once_a_second(httpserver, settings, monkeypatch):
    """Four calls per asset each read the row before: a quarter of a worker's statements."""
    settings.AEM_AUTHOR_URL = httpserver.url_for("").rstrip("/")
    httpserver.expect_request("/ok").respond_with_json({"ok": True})
    # The throttle's own clock, moved by hand: ten calls on a loaded machine may take a second.
    clock = [1000.0]
    monkeypatch.setattr(throttle, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    with CaptureQueriesContext(connection) as queries:
        for _ in range(10):
            http.request("GET", httpserver.url_for("/ok"), error_class="aem", pause_key="aem")
            clock[0] += throttle.READ_EVERY_SECONDS / 20
    assert len(httpserver.log) == 10
    assert len([q for q in queries.captured_queries if "pimsync_pause" in q["sql"]]) == 1

    # Another process records a pause: this one goes by what it read until the second is over…
    Pause.objects.create(name="aem", until=timezone.now() + timedelta(seconds=60), reason="another worker's 429")
    assert throttle.remaining("aem")[0] == 0.0
    # …and then refuses to call.
    clock[0] += throttle.READ_EVERY_SECONDS
    with pytest.raises(http.HttpError) as refused:
        http.request("GET", httpserver.url_for("/ok"), error_class="aem", pause_key="aem")
    assert refused.value.error_class == "aem_paused"
    assert len(httpserver.log) == 10


def test_the_process_that_records_a_pause_honours_it_at_once():
    assert throttle.remaining("aem")[0] == 0.0  # read: no pause
    throttle.extend("aem", 60, reason="this worker's 429")
    assert 55 <= throttle.remaining("aem")[0] <= 60


@pytest.mark.django_db(transaction=True)
def test_pauses_recorded_at_once_keep_the_latest_end():
    ends = [30, 600, 5, 300, 45, 120]
    barrier = threading.Barrier(len(ends))

    def record(seconds: float) -> None:
        try:
            barrier.wait()
            throttle.extend("aem", seconds, reason=f"{seconds} s")
        finally:
            connection.close()

    threads = [threading.Thread(target=record, args=(seconds,)) for seconds in ends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Pause.objects.get(name="aem").reason == "600 s"


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_pause_recorded_by_another_process_is_honoured(client, world, settings):
    asset_id = "urn:aaid:aem:00000000-0000-4000-8000-000000000009"
    world.aem.add_asset(asset_id)
    world.aem.faults.add("GET", 429, headers={"Retry-After": "120"})
    answer = other_process(world, settings, f"aem.get_metadata({asset_id!r})")
    assert answer == "aem_429"
    assert world.aem.calls == [("GET", asset_id)]

    second = upload_and_drain(client, world, 2)
    assert world.aem.calls == [("GET", asset_id)]  # this process sent nothing to AEM
    assert (second.status, second.error_class) == (Status.RETRYING, "aem_paused")
    assert (second.next_attempt_at - timezone.now()).total_seconds() >= 100


def other_process(world, settings, call: str) -> str:
    """Run one AEM client call in another Python process on the same database; its error class."""
    script = (
        "from pimsync.adobe import aem\nfrom pimsync.outbound import http\n"
        f"try:\n    {call}\n    print('ok')\n"
        "except http.HttpError as exc:\n    print(exc.error_class)\n"
    )
    env = environment(world, settings)
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_the_overview_and_metrics_show_a_running_pause(client, world, people):
    world.aem.faults.add("PATCH", 429, headers={"Retry-After": "90"})
    upload_and_drain(client, world, 1)
    until = Pause.objects.get(name="aem").until
    client.force_login(people["Viewers"])
    page = client.get("/admin/").content.decode()
    assert f"AEM asked to slow down: no calls until {until:%H:%M:%S}" in page
    assert 60 <= paused_seconds(client.get("/metrics").content.decode(), "aem") <= 90
    with later(120):
        assert "asked to slow down" not in client.get("/admin/").content.decode()
        assert paused_seconds(client.get("/metrics").content.decode(), "aem") == 0


def paused_seconds(metrics: str, system: str) -> float:
    prefix = f'pimsync_paused_seconds{{system="{system}"}} '
    values = [float(line[len(prefix) :]) for line in metrics.splitlines() if line.startswith(prefix)]
    assert len(values) == 1, metrics
    return values[0]
