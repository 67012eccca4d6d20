"""The job pages agree with themselves: one count for the header, the history, the polled progress
and the message after a Cancel; every retry is listed; a re-sync from the mapping page asks first."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from pimsync import resync
from pimsync.models import Asset, Event, Job, Status, SyncState

pytestmark = pytest.mark.django_db

JOBS = "/admin/pimsync/event/jobs/"
OFFER = "/admin/pimsync/mappingconfig/resync-affected/"


@pytest.fixture
def resync_job(settings) -> Job:
    """A running re-sync of 61 assets whose events are all scheduled, 33 of them already written
    by the worker since the job's last step."""
    settings.PIMSYNC_RESYNC_RATE = 1000
    Asset.objects.bulk_create(
        Asset(asset_id=f"urn:aaid:aem:job-{n:03d}", path=f"/content/dam/p/{n}.png", state=SyncState.IN_STEP)
        for n in range(61)
    )
    job = resync.start(None, {"all": True}, why="a test")
    resync.run(job.pk)
    written = Event.objects.filter(job=job).order_by("pk").values_list("pk", flat=True)[:33]
    Event.objects.filter(pk__in=list(written)).update(status=Status.SUCCEEDED)
    return Job.objects.get(pk=job.pk)


def history_row(page: str, job: Job) -> str:
    row = re.search(rf'<tr><td><a href="{JOBS}{job.pk}/">{job.pk}</a>.*?</tr>', page, re.S)
    return row.group(0)


def test_the_header_and_the_history_show_the_same_count_of_a_running_resync(client, people, resync_job):
    client.force_login(people["Viewers"])
    page = client.get(f"{JOBS}{resync_job.pk}/").content.decode()
    assert 'id="job-done">33/61<' in page
    assert "<td>33/61</td>" in history_row(page, resync_job)
    assert "<td>33/61</td>" in history_row(client.get(JOBS).content.decode(), resync_job)


def test_the_polled_progress_says_what_the_page_says(client, people, resync_job):
    client.force_login(people["Viewers"])
    progress = client.get(reverse("admin:pimsync_event_job_progress", args=[resync_job.pk])).json()
    assert (progress["status"], progress["counted"], progress["percent"], progress["active"]) == (
        "running",
        "33/61",
        54,
        True,
    )
    assert progress["outcomes"] == "33 written, 0 unchanged, 0 failed, 0 skipped"
    assert progress["announce"].startswith(f"Job {resync_job.pk} running: 33 of 61 assets (54%)")


def test_the_progress_is_for_people_who_may_see_the_jobs(client, resync_job):
    url = reverse("admin:pimsync_event_job_progress", args=[resync_job.pk])
    assert client.get(url).status_code == 302  # to the login page


def test_the_job_page_updates_itself_in_place_and_tells_screen_readers(client, people, resync_job):
    client.force_login(people["Viewers"])
    page = client.get(f"{JOBS}{resync_job.pk}/").content.decode()
    assert 'http-equiv="refresh"' not in page  # no whole-page reload
    assert f'data-poll="{reverse("admin:pimsync_event_job_progress", args=[resync_job.pk])}"' in page
    assert 'aria-live="polite"' in page


def test_after_a_cancel_the_message_the_bar_and_the_history_agree(client, people, resync_job):
    client.force_login(people["Support"])
    response = client.post(reverse("admin:pimsync_event_job_cancel", args=[resync_job.pk]), follow=True)
    page = response.content.decode()
    # The 28 waiting events are ignored by the cancel: all 61 have ended.
    assert f"Job {resync_job.pk} cancelled after 61 of 61 assets." in page
    assert 'id="job-done">61/61<' in page
    assert "<td>61/61</td>" in history_row(page, resync_job)
    assert "33 written, 0 unchanged, 0 failed, 28 skipped" in page


def test_the_resync_of_the_affected_assets_asks_first_with_a_time_estimate(client, people, settings):
    settings.PIMSYNC_RESYNC_RATE = 2
    Asset.objects.bulk_create(
        Asset(
            asset_id=f"urn:aaid:aem:stale-{n:03d}",
            path=f"/content/dam/p/{n}.png",
            state=SyncState.STALE,
            stale_cause="mapping",
        )
        for n in range(240)
    )
    client.force_login(people["Mapping editors"])
    page = client.get(OFFER).content.decode()
    assert '<strong id="resync-count">240</strong> assets will be re-synced' in page
    assert '<strong id="resync-estimate">2 min</strong>' in page and "PIMSYNC_RESYNC_RATE" in page
    assert not Job.objects.exists()  # asking changes nothing

    response = client.post(OFFER, {"why": "supplier names lower-cased"})
    job = Job.objects.get()
    assert response["Location"] == reverse("admin:pimsync_event_job", args=[job.pk])
    assert (job.kind, job.total, job.why) == (Job.Kind.RESYNC, 240, "supplier names lower-cased")


def test_a_viewer_is_not_asked_to_resync(client, people):
    client.force_login(people["Viewers"])
    assert client.get(OFFER).status_code == 403
