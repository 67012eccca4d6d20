"""Retention: finished events, their attempts and the other histories are deleted when their time
is up, in batches; pending events never; and never an id that redelivery dedupe still needs."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
import time_machine
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection
from django_q.models import Schedule, Task

from pimsync import checks, retention, tasks
from pimsync.models import Attempt, Event, Heartbeat, Job, Status
from tests.conftest import product

pytestmark = pytest.mark.django_db

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_numbers = count()


def event(status: str, *, finished: datetime | None = None, received: datetime | None = None, attempts: int = 2):
    """One stored event as the worker left it, with its attempts (PIM data and AEM's answer)."""
    received = received or finished or START
    n = next(_numbers)
    row = Event.objects.create(
        event_id=f"evt-retention-{n}",
        type="aem.assets.asset.processing_completed",
        source="acct:aem-p12345-e67890@adobe.com",
        received_at=received,
        asset_id=f"urn:aaid:aem:{n}",
        status=status,
        finished_at=finished,
        attempts=attempts,
        payload={"eventid": f"evt-retention-{n}", "data": {"assetId": f"urn:aaid:aem:{n}"}},
    )
    Attempt.objects.bulk_create(
        Attempt(event=row, number=i + 1, started_at=received, outcome="succeeded", pim_data={"SKUID": "SKU-1"})
        for i in range(attempts)
    )
    return row


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def purge_events(*args) -> str:
    out = io.StringIO()
    call_command("purge_events", *args, stdout=out)
    return out.getvalue()


def remaining() -> set[str]:
    return set(Event.objects.values_list("status", flat=True))


def test_finished_events_and_their_attempts_go_after_the_retention_and_failed_ones_later():
    for status in Status.values:
        event(status, finished=START if status not in {"received", "processing", "retrying"} else None)
    assert Attempt.objects.count() == 14

    with at(START + timedelta(days=29, hours=23)):
        retention.purge()
    assert len(remaining()) == 7

    with at(START + timedelta(days=30, minutes=1)):
        result = retention.purge()
    assert result.deleted["events"] == 3 and result.deleted["attempts"] == 6
    assert remaining() == {"received", "processing", "retrying", "failed"}
    assert Attempt.objects.count() == 8

    with at(START + timedelta(days=90, minutes=1)):
        retention.purge()
    # Events still waiting for a worker are never purged, however old.
    assert remaining() == {"received", "processing", "retrying"}
    assert Attempt.objects.count() == 6


def test_age_counts_from_when_the_event_finished():
    retried = event(Status.SUCCEEDED, received=START, finished=START + timedelta(days=20))
    legacy = event(Status.SUCCEEDED, received=START, finished=None)  # finished before finished_at was set

    with at(START + timedelta(days=31)):
        retention.purge()
    assert list(Event.objects.all()) == [retried]
    assert not Event.objects.filter(pk=legacy.pk).exists()


def test_a_dry_run_reports_the_counts_and_deletes_nothing():
    for _ in range(3):
        event(Status.SUCCEEDED, finished=START)
    event(Status.FAILED, finished=START)

    with at(START + timedelta(days=40)):
        out = purge_events("--dry-run")
    assert "Events are kept 30 days after they finish, failed ones 90." in out
    assert "events: 3 would be deleted" in out and "attempts: 6 would be deleted" in out
    assert Event.objects.count() == 4 and Attempt.objects.count() == 8
    assert not Heartbeat.objects.filter(name="purge").exists()

    with at(START + timedelta(days=40)):
        out = purge_events()
    assert "events: 3 deleted" in out and "attempts: 6 deleted" in out
    assert remaining() == {"failed"}


def test_it_deletes_more_rows_than_one_batch_and_skips_none_it_keeps():
    # Failed events, kept longer, sit between the expired successes in finished order.
    for n in range(25):
        event(Status.SUCCEEDED, finished=START + timedelta(minutes=n), attempts=1)
        if n % 4 == 0:
            event(Status.FAILED, finished=START + timedelta(minutes=n), attempts=1)
    kept = event(Status.SUCCEEDED, finished=START + timedelta(days=20), attempts=1)

    with at(START + timedelta(days=40)):
        result = retention.purge(batch=3)
    assert result.deleted["events"] == 25 and result.complete
    assert Event.objects.filter(status=Status.SUCCEEDED).get() == kept
    assert Event.objects.filter(status=Status.FAILED).count() == 7


@pytest.mark.skipif(connection.vendor != "postgresql", reason="plan_cache_mode is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_each_purge_batch_lets_postgresql_keep_its_plans_for_that_transaction_only():
    for n in range(7):
        event(Status.SUCCEEDED, finished=START + timedelta(minutes=n), attempts=1)
    executed = []

    def record(execute, sql, params, many, context):
        executed.append(sql)
        return execute(sql, params, many, context)

    with at(START + timedelta(days=40)), connection.execute_wrapper(record):
        assert retention.purge(batch=3).deleted["events"] == 7
    assert executed.count("SET LOCAL plan_cache_mode TO auto") >= 3  # one per batch of events
    with connection.cursor() as cursor:  # and the connection plans each run again afterwards
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone()[0] == "force_custom_plan"


def test_the_command_runs_batch_after_batch_until_everything_expired_is_gone():
    rows = retention.BATCH * 2 + 50
    Event.objects.bulk_create(
        Event(
            event_id=f"evt-bulk-{n}",
            type="aem.assets.asset.processing_completed",
            source="s",
            received_at=START,
            status=Status.UNCHANGED,
            finished_at=START,
            payload={},
        )
        for n in range(rows)
    )
    with at(START + timedelta(days=31)):
        out = purge_events()
    assert f"events: {rows:,} deleted" in out
    assert not Event.objects.exists()


def test_a_purge_out_of_time_stops_and_leaves_the_rest_for_the_next_run():
    event(Status.SUCCEEDED, finished=START)
    with at(START + timedelta(days=31)):
        result = retention.purge(budget_seconds=0)
        assert not result.complete and Event.objects.count() == 1
        assert "left for the next run" in Heartbeat.objects.get(name="purge").detail
        assert tasks.purge().startswith("deleted events 1, attempts 2, sessions 0,")
    assert not Event.objects.exists()


def test_expired_sessions_old_admin_log_and_old_task_history_are_bounded():
    user = User.objects.create_user("support")
    with at(START):
        for _ in range(2):
            store = SessionStore()
            store.set_expiry(60)
            store.create()
        LogEntry.objects.log_actions(user.pk, [user], ADDITION)
    for days, success in ((100, False), (40, False), (40, True), (1, True)):
        stopped = START + timedelta(days=60 - days)
        Task.objects.create(
            id=f"task-{days}-{success}",
            name="drain",
            func="pimsync.tasks.drain",
            started=stopped,
            stopped=stopped,
            success=success,
        )

    with at(START + timedelta(days=60)):
        live = SessionStore()
        live.create()
        purge_events()
    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session_key]
    assert LogEntry.objects.count() == 1  # 60 days old; the admin log is kept as long as failures
    # Successes go with the events' retention (30 days), failures with the failed one (90 days).
    assert set(Task.objects.values_list("id", flat=True)) == {"task-40-False", "task-1-True"}

    with at(START + timedelta(days=91)):
        purge_events()
    assert not LogEntry.objects.exists()


def test_finished_background_jobs_go_with_the_admin_log_and_running_ones_stay():
    with at(START):
        old = Job.objects.create(status=Job.State.FINISHED, finished_at=START, ids=list(range(5000)))
        running = Job.objects.create(status=Job.State.RUNNING)
    with at(START + timedelta(days=89)):
        purge_events()
    assert set(Job.objects.values_list("pk", flat=True)) == {old.pk, running.pk}
    with at(START + timedelta(days=91)):
        purge_events()
    assert list(Job.objects.values_list("pk", flat=True)) == [running.pk]


def test_a_retention_below_eight_days_is_a_configuration_error(client, settings):
    settings.PIMSYNC_RETENTION_DAYS = 3
    settings.PIMSYNC_RETENTION_FAILED_DAYS = 7
    problems = {p.id: p for p in checks.configuration(None)}
    assert problems["pimsync.E020"].msg == "PIMSYNC_RETENTION_DAYS=3 is below 8 days: 8 is used meanwhile"
    assert "pimsync.E021" in problems
    client.force_login(User.objects.create_superuser("admin", password="pw-for-tests-1"))
    page = client.get("/admin/").content.decode()
    assert "PIMSYNC_RETENTION_DAYS=3 is below 8 days" in page and "Events kept 8 days (failed 8)" in page
    settings.PIMSYNC_RETENTION_DAYS = settings.PIMSYNC_RETENTION_FAILED_DAYS = 8
    assert not {"pimsync.E020", "pimsync.E021"} & {p.id for p in checks.configuration(None)}


def test_a_week_old_event_is_never_purged_so_its_redelivery_is_still_a_duplicate(client, world, settings):
    settings.PIMSYNC_RETENTION_DAYS = settings.PIMSYNC_RETENTION_FAILED_DAYS = 1
    world.pim.products["SKU-100001"] = product("SKU-100001")
    delivery = [world.upload(client, 1), world.upload(client, 2)]  # one succeeds, one fails
    with at(START):
        assert world.adobe.deliver(client, delivery).status_code == 200
        world.drain()
    assert remaining() == {"succeeded", "failed"}

    # Adobe's journal replays a week: the same ids arrive again and are recognised.
    with at(START + timedelta(days=7, hours=23)):
        retention.purge()
        assert world.adobe.deliver(client, delivery).status_code == 200
    assert Event.objects.count() == 2 and remaining() == {"succeeded", "failed"}
    assert not world.drain()  # no wake-up: nothing new was stored

    with at(START + timedelta(days=8, minutes=1)):
        assert retention.purge().deleted["events"] == 2


def test_migrate_creates_the_daily_purge_schedule():
    schedule = Schedule.objects.get(func="pimsync.tasks.purge")
    assert schedule.schedule_type == Schedule.DAILY and schedule.repeats == -1


def test_the_overview_shows_the_retention_and_the_last_purge(client, settings):
    settings.PIMSYNC_RETENTION_DAYS = 14
    client.force_login(User.objects.create_superuser("admin", password="pw-for-tests-1"))
    page = client.get("/admin/").content.decode()
    assert "Events kept 14 days (failed 90); no purge has run yet." in page

    event(Status.SUCCEEDED, finished=START)
    with at(START + timedelta(days=15)):
        retention.purge()
    page = client.get("/admin/").content.decode()
    assert "Events kept 14 days (failed 90); last purge" in page
    assert "deleted events 1, attempts 2," in page


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_a_row_locked_by_a_retry_is_skipped_not_waited_for():
    """A purge never waits on (or deletes under) an event that a Retry is changing right now."""
    import threading

    locked = event(Status.SUCCEEDED, finished=START)
    other = event(Status.SUCCEEDED, finished=START)
    holding, release = threading.Event(), threading.Event()

    def hold_the_row():
        from django.db import connections, transaction

        with transaction.atomic():
            Event.objects.select_for_update().get(pk=locked.pk)
            holding.set()
            release.wait(10)
        connections.close_all()

    thread = threading.Thread(target=hold_the_row)
    thread.start()
    holding.wait(10)
    try:
        with at(START + timedelta(days=31)):
            result = retention.purge()
    finally:
        release.set()
        thread.join()
    assert result.deleted["events"] == 1
    assert list(Event.objects.values_list("pk", flat=True)) == [locked.pk]
    assert not Event.objects.filter(pk=other.pk).exists()
