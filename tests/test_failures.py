"""Failures as the people reading them meet them: a plain reason on the event, the technical message on
the attempt, a "what to do" line on the event page, and the same list in docs/operations.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from pimsync import failures
from pimsync.models import Event, Status
from tests.conftest import product

pytestmark = pytest.mark.django_db

OPERATIONS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def test_an_asset_aem_does_not_have_fails_with_a_plain_reason_and_keeps_aems_answer_on_the_attempt(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.aem.faults.add("GET", 404)
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()

    event = Event.objects.get()
    assert (event.status, event.error_class) == (Status.FAILED, "aem_404")
    assert event.reason == "AEM has no asset with this id (deleted, or a wrong id in a backfill)"
    attempt = event.attempt_set.get()
    assert attempt.message.startswith("GET http://") and attempt.message.endswith("/metadata answered 404")
    assert attempt.aem_status == 404


def test_a_server_error_reads_plainly_with_its_status_and_the_retry_note(client, world):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.aem.faults.add("GET", 503)
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()

    event = Event.objects.get()
    assert event.status == Status.RETRYING
    assert event.reason.startswith("AEM had a server error (503) (attempt 1 of ")
    assert "answered 503" in event.attempt_set.get().message


def test_the_event_page_says_what_to_do_for_its_error_class(client, world, people):
    world.adobe.deliver(client, world.upload(client, 1))  # its product is not in the PIM
    world.drain()
    event = Event.objects.get(status=Status.FAILED)
    client.force_login(people["Viewers"])

    page = client.get(f"/admin/pimsync/event/{event.pk}/change/").content.decode()

    assert "is not in the PIM" in page
    action = failures.lookup("pim_not_found").action.replace("'", "&#x27;")
    assert f'<td id="what-to-do">{action}' in page
    assert "A retry alone does not change this." in page


def test_a_succeeded_event_has_no_what_to_do_line(client, world, people):
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, world.upload(client, 1))
    world.drain()
    client.force_login(people["Viewers"])
    page = client.get(f"/admin/pimsync/event/{Event.objects.get().pk}/change/").content.decode()
    assert 'id="what-to-do"' not in page


@pytest.mark.parametrize(
    ("error_class", "expected"),
    [
        ("aem_404", "aem_404"),
        ("aem_409", "aem_4xx"),
        ("aem_502", "aem_5xx"),
        ("pim_403", "pim_401"),
        ("ims_503", "ims"),
        ("akeneo_paused", "pim_429"),
    ],
)
def test_an_error_class_finds_its_entry_exactly_then_by_status_family(error_class, expected):
    assert failures.lookup(error_class).classes[0] == expected


def test_an_unknown_error_class_keeps_its_message_and_may_be_retried():
    assert failures.lookup("webhook_500") is None
    assert failures.reason("webhook_500", "POST http://x answered 500") == "POST http://x answered 500"
    assert failures.retry_helps("webhook_500")


def test_every_error_class_is_in_the_operations_page_with_the_same_text():
    # After a change of the list: `python -m pimsync.failures` prints the table for the page.
    assert failures.markdown_table() in OPERATIONS.read_text()
