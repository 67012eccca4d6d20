"""Reads sent ahead: a worker enriching on threads asks AEM for an asset's metadata while the PIM
answers, and what AEM said counts only once the PIM's answer is known."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError
from werkzeug import Request, Response

from pimsync import read_ahead, worker
from pimsync.models import Event, Status
from pimsync.outbound.http import HttpError
from standins.pim import PimStub
from tests.conftest import product, threaded_world

# The read-ahead thread opens a database connection of its own: it must see what the test wrote.
pytestmark = pytest.mark.django_db(transaction=True)


class PimAnsweringAfterAem(PimStub):
    """A PIM that holds each answer until AEM has been called since `mark()`, or `patience`
    seconds passed; `answered_after_aem` says for each call which came first."""

    aem = None  # the AEM stand-in whose calls it watches

    def __init__(self, server) -> None:
        super().__init__(server)
        self.answered_after_aem: list[bool] = []
        self.aem_calls_before = 0
        self.patience = 10.0

    def mark(self, patience: float = 10.0) -> None:
        """From now on, wait for AEM's next call up to `patience` seconds: long where a read ahead
        is due (a slow machine must not fail the test), short where none should come."""
        self.aem_calls_before, self.patience = len(self.aem.calls), patience

    def handle(self, request: Request) -> Response:
        deadline = time.monotonic() + self.patience
        while len(self.aem.calls) == self.aem_calls_before and time.monotonic() < deadline:
            time.sleep(0.01)
        self.answered_after_aem.append(len(self.aem.calls) > self.aem_calls_before)
        return super().handle(request)


@pytest.fixture
def reading_ahead():
    """This process reads ahead, as a worker process enriching on two threads does."""
    read_ahead.enable(2)
    yield
    read_ahead.disable()


@pytest.fixture
def world(adobe, settings, reading_ahead):
    """The stand-ins on a server that answers calls at once, as real peers do."""
    with threaded_world(adobe, settings, PimAnsweringAfterAem) as world:
        world.pim.aem = world.aem
        yield world


def enrich_upload(client, world, n: int, sku: str = "SKU-100001", read_ahead_due: bool = True) -> Event:
    """Deliver an upload of asset `n` named for `sku`, run the worker, return the stored event."""
    world.pim.mark(10.0 if read_ahead_due else 0.5)
    event = world.upload(client, n, sku=sku)
    assert world.adobe.deliver(client, event).status_code == 200
    world.drain()
    return Event.objects.get(asset_id=event["data"]["assetId"])


def test_aem_is_asked_for_the_metadata_while_the_pim_answers(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    upload = world.upload(client, 1, sku="SKU-100001")
    etag_read = world.aem.etag(upload["data"]["assetId"])
    world.pim.mark()

    world.adobe.deliver(client, upload)
    world.drain()

    assert world.pim.answered_after_aem == [True]
    event = Event.objects.get()
    assert event.status == Status.SUCCEEDED
    assert [method for method, _ in world.aem.calls] == ["GET", "PATCH"]
    [patch] = world.aem.patches
    assert patch["if_match"] == etag_read  # the PATCH is conditional on what was read ahead
    assert {op["path"] for op in patch["operations"]} >= {"/wknd-skuid", "/dc:title"}


def test_a_product_the_pim_lacks_fails_with_the_pims_reason_whatever_aem_answered(client, world):
    world.aem.faults.add("GET", 500)

    event = enrich_upload(client, world, 1)

    assert event.status == Status.FAILED
    assert event.error_class == "pim_not_found"
    assert event.reason == "product 'SKU-100001' is not in the PIM"
    assert [method for method, _ in world.aem.calls] == ["GET"]  # asked ahead; its answer dropped
    assert world.aem.patches == []


def test_a_failing_pim_is_the_reason_when_aem_fails_too(client, world):
    world.pim.faults.add("GET", 503)
    world.aem.faults.add("GET", 502)

    event = enrich_upload(client, world, 1)

    assert [method for method, _ in world.aem.calls] == ["GET"]  # AEM was asked ahead and failed
    assert event.status == Status.RETRYING
    assert event.error_class == "pim_503"
    assert event.attempt_set.get().aem_status is None


def test_aems_refusal_to_read_counts_once_the_product_is_known(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.aem.faults.add("GET", 503)

    event = enrich_upload(client, world, 1)

    assert world.pim.answered_after_aem == [True]
    assert event.status == Status.RETRYING
    assert event.error_class == "aem_503"
    attempt = event.attempt_set.get()
    assert attempt.aem_status == 503
    assert attempt.pim_data["SKUID"] == "SKU-100001"
    assert world.aem.patches == []


def test_while_the_pim_fails_aem_is_not_asked_ahead_and_once_it_answers_it_is_again(client, world):
    world.pim.products.update({sku: product(sku) for sku in ("SKU-1", "SKU-2", "SKU-3", "SKU-4")})
    world.pim.faults.add("GET", 503, times=2)

    first = enrich_upload(client, world, 1, sku="SKU-1")
    second = enrich_upload(client, world, 2, sku="SKU-2", read_ahead_due=False)
    third = enrich_upload(client, world, 3, sku="SKU-3", read_ahead_due=False)
    fourth = enrich_upload(client, world, 4, sku="SKU-4")

    assert [e.status for e in (first, second, third, fourth)] == [Status.RETRYING, Status.RETRYING] + [
        Status.SUCCEEDED
    ] * 2
    # The first failure was not foreseen; after it, AEM waits until the PIM has answered a product.
    assert world.pim.answered_after_aem == [True, False, False, True]
    assert [call for call in world.aem.calls if call[1] == second.asset_id] == []


def test_after_a_product_the_pim_lacks_the_next_asset_is_read_after_the_pim_answers(client, world):
    world.pim.products["SKU-2"] = product("SKU-2")

    missing = enrich_upload(client, world, 1, sku="SKU-1")
    found = enrich_upload(client, world, 2, sku="SKU-2", read_ahead_due=False)

    assert (missing.error_class, found.status) == ("pim_not_found", Status.SUCCEEDED)
    assert world.pim.answered_after_aem == [True, False]


@pytest.mark.parametrize(("setting", "width"), [(True, 3), (False, 0)])
def test_a_worker_enriching_on_threads_reads_ahead_on_as_many_unless_turned_off(monkeypatch, settings, setting, width):
    settings.PIMSYNC_READ_AHEAD = setting
    read_ahead.disable()
    monkeypatch.setattr(worker.Threads, "_pool", None)
    worker.Threads(3)
    try:
        assert read_ahead.width() == width
    finally:
        worker.Threads._pool.shutdown()
        read_ahead.disable()


def test_a_read_no_thread_has_started_is_sent_by_the_thread_that_wants_it(reading_ahead):
    release = threading.Event()
    busy = [read_ahead.Read(release.wait, 10), read_ahead.Read(release.wait, 10)]  # both threads taken
    try:
        read = read_ahead.Read(threading.get_ident)
        assert read() == threading.get_ident()
    finally:
        release.set()
    assert [b() for b in busy] == [True, True]


def test_a_read_ahead_thread_failing_for_its_own_reasons_has_the_read_sent_again(reading_ahead):
    caller = threading.get_ident()

    def read() -> str:
        if threading.get_ident() != caller:
            raise OperationalError("connection to server failed")  # the thread's, not the read's
        return "answer"

    assert read_ahead.Read(read, errors=(HttpError,))() == "answer"


def test_the_reads_own_errors_count_as_they_are(reading_ahead):
    def read():
        raise HttpError("GET … answered 503", retryable=True, status=503, error_class="aem_503")

    with pytest.raises(HttpError) as raised:
        read_ahead.Read(read, errors=(HttpError,))()
    assert raised.value.error_class == "aem_503"


def test_a_discarded_read_that_has_not_started_is_never_sent(reading_ahead):
    release, sent = threading.Event(), []
    busy = [read_ahead.Read(release.wait, 10), read_ahead.Read(release.wait, 10)]
    read_ahead.Read(sent.append, "sent").discard()
    release.set()
    assert [b() for b in busy] == [True, True]
    read_ahead.disable()  # waits for every read the pool still holds
    assert sent == []
