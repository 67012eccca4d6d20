"""`manage.py retry_events` selects like the dashboard and retries through the same code path."""

import io

import pytest
from django.core.management import call_command

from pimsync.models import Event, Status
from tests.conftest import product

pytestmark = pytest.mark.django_db


def retry(*args) -> str:
    out = io.StringIO()
    call_command("retry_events", *args, stdout=out)
    return out.getvalue()


def test_it_retries_failed_events_matching_a_reason(client, world):
    world.adobe.deliver(client, [world.upload(client, n) for n in range(3)])
    world.drain()
    assert Event.objects.filter(status=Status.FAILED).count() == 3
    Event.objects.filter(asset_name__startswith="SKU-100002").update(reason="something else")
    for n in range(3):
        world.pim.products[f"SKU-{100000 + n}"] = product(f"SKU-{100000 + n}")

    assert retry("--reason", "not in the PIM", "--dry-run") == "2 event(s) would be retried.\n"
    assert Event.objects.filter(status=Status.FAILED).count() == 3
    assert "Retried 2 event(s)." in retry("--reason", "not in the PIM")
    world.drain()
    assert Event.objects.filter(status=Status.SUCCEEDED).count() == 2
    assert Event.objects.get(status=Status.FAILED).reason == "something else"


def test_it_retries_by_id_and_since(client, world):
    world.adobe.deliver(client, [world.upload(client, n) for n in range(2)])
    world.drain()
    first = Event.objects.order_by("id").first()
    assert "Retried 1 event(s)." in retry("--ids", first.event_id)
    assert "Retried 0 event(s)." in retry("--since", "2999-01-01")
    assert Event.objects.filter(status=Status.RECEIVED).count() == 1


def test_a_bad_date_is_a_clear_error():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="not an ISO date"):
        retry("--since", "yesterday")
