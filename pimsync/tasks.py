"""django-q2 task entry points. Names are stable: queued tasks and schedules refer to them by
dotted path (`pimsync.wakeups` sends them).

Tasks carry no data: what to do is read from our own rows when a task runs, so a lost, repeated
or late task can never lose or double work.
"""

from __future__ import annotations

from django.conf import settings

from pimsync import jobs, pipeline, resync, retention, worker
from pimsync.adobe import journal
from pimsync.alerts import monitor
from pimsync.models import Job
from pimsync.pim import notifications, poll


def drain() -> str:
    """Enrich due events, many assets at once, until none are left."""
    return worker.drain()


def sweep() -> str:
    """Revive events whose worker died, wake workers for due retries and lost wake-ups, and
    queue again background jobs whose worker died."""
    summary = pipeline.sweep()
    requeued = jobs.requeue_stale()
    stepped = resync.tick()
    if stepped:
        summary += f"; topped up {stepped} re-sync(s)"
    return f"{summary}; re-queued {requeued} job(s)" if requeued else summary


def run_job(job_id: int) -> str:
    """Work on one background job: a large retry or a mapping check for a time slice (each queues
    its own continuation), or one step of a re-sync (the sweeper steps it every minute)."""
    kind = Job.objects.filter(pk=job_id).values_list("kind", flat=True).first()
    if kind == Job.Kind.RESYNC:
        return resync.run(job_id)
    if kind == Job.Kind.AFFECTED:
        return resync.find_affected(job_id)
    return jobs.run(job_id)


def purge() -> str:
    """Delete events and history past their retention, within django-q2's task timeout."""
    # Half the timeout: a purge stopped by its budget ends cleanly and the next day's run
    # continues, whereas one killed by django-q2 would be recorded as a failure.
    return retention.purge(budget_seconds=settings.PIMSYNC_TASK_TIMEOUT_SECONDS / 2).summary()


def check_alerts() -> str:
    """Open and resolve alerts and send their messages (every minute, by the schedule `migrate` creates)."""
    return monitor.check()


def pull_journal() -> str:
    """Pull the I/O Events journal when due (scheduled every minute; off without ADOBE_JOURNAL_URL)."""
    return journal.pull_if_due()


def pim_notifications() -> str:
    """Handle the change notifications the PIM pushed (queued by `/webhooks/akeneo`)."""
    return notifications.handle_pending()


def poll_pim() -> str:
    """Every few minutes: notifications left waiting, then the products changed since the last poll
    (only for a connector that can list them: PIM_CONNECTOR=akeneo)."""
    if not poll.polling():
        return "not polling: the PIM connector cannot list changed products"
    handled = notifications.handle_pending()
    return f"{handled}; {poll.poll()}"
