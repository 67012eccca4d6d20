"""The job pages under Events: the history of background jobs and one job's progress (retries,
re-syncs, mapping checks), its Cancel, and the small JSON its page polls.

Every count shown comes from `jobs.progress`, so the job's header, the history row, the polled
progress and the message after a Cancel say the same thing.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse

from dashboard.sites import RESYNC_PERMISSION, RETRY_PERMISSION
from pimsync import jobs, resync, selection
from pimsync.models import Job

TEMPLATE = "admin/pimsync/event/jobs.html"
# How many jobs the history shows, newest first.
HISTORY = 20


def duration(seconds: float) -> str:
    """A rough time: "40 s", "12 min", "3.5 h"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def cancel_permission(job: Job) -> str:
    """Retries are Support's; re-syncs and mapping checks belong to whoever may re-sync."""
    return RETRY_PERMISSION if job.kind == Job.Kind.RETRY else RESYNC_PERMISSION


def shown(job: Job, progress: jobs.Progress) -> dict:
    """A job's progress in the words and numbers its page shows (and its polled JSON carries)."""
    if job.kind == Job.Kind.RESYNC:
        unit = "assets"
        outcomes = (
            f"{progress.succeeded} written, {progress.unchanged} unchanged, "
            f"{progress.failed} failed, {progress.skipped} skipped"
        )
    elif job.kind == Job.Kind.AFFECTED:
        unit, outcomes = "known assets checked", ""
    else:
        unit = "events"
        outcomes = (
            f"{progress.succeeded} sent back to the worker, "
            f"{progress.skipped} skipped (not retryable, or no longer in the selection)"
        )
    now = ", ".join(f"{count} {status}" for status, count in progress.now.items())
    eta = duration(progress.eta_seconds) if job.is_active and progress.eta_seconds is not None else ""
    return {
        "status": job.status,
        "active": job.is_active,
        "done": progress.done,
        "total": progress.total,
        "percent": progress.percent,
        "counted": f"{progress.done}/{progress.total}",
        "unit": unit,
        "outcomes": outcomes,
        "eta": eta,
        "now": now,
        "ended": f"{job.finished_at:%Y-%m-%d %H:%M:%S}" if job.finished_at else "",
        # One sentence for screen readers (the page's live region).
        "announce": f"Job {job.pk} {job.status}: {progress.done} of {progress.total} {unit} ({progress.percent}%)"
        + (f", about {eta} left" if eta else "")
        + ".",
    }


def _context(model_admin, request, **extra) -> dict:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    recent = list(Job.objects.select_related("created_by")[:HISTORY])
    history = [(job, jobs.progress(job, events_now=False)) for job in recent]
    return {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "recent": history,
        **extra,
    }


def job_list(model_admin, request):
    """The latest background jobs, newest first."""
    return TemplateResponse(request, TEMPLATE, _context(model_admin, request, title="Jobs"))


def job_detail(model_admin, request, pk):
    """One job's progress; while it runs, the page polls `job_progress` and updates its numbers."""
    if not model_admin.has_view_permission(request):  # before any counting
        raise PermissionDenied
    job = get_object_or_404(Job.objects.select_related("created_by"), pk=pk)
    context = _context(
        model_admin,
        request,
        title=f"Job {job.pk}: {job.description}",
        job=job,
        can_cancel=request.user.has_perm(cancel_permission(job)),
        progress=shown(job, jobs.progress(job)),
        retried=reverse("admin:pimsync_event_changelist") + f"?{selection.RETRY_JOB}={job.pk}",
        affected=resync.affected_count() if job.kind == Job.Kind.AFFECTED and not job.is_active else None,
    )
    return TemplateResponse(request, TEMPLATE, context)


def job_progress(model_admin, request, pk):
    """The job's progress as JSON, for its page to update itself without reloading."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    job = get_object_or_404(Job, pk=pk)
    return JsonResponse(shown(job, jobs.progress(job)))


def job_cancel(model_admin, request, pk):
    """Stop a job before its next batch (who may start it may stop it); what it already did stays
    done, and a re-sync's events still waiting are ignored."""
    job = get_object_or_404(Job, pk=pk)
    if not request.user.has_perm(cancel_permission(job)):
        raise PermissionDenied
    if job.cancel():
        progress = shown(job, jobs.progress(job))
        model_admin.message_user(
            request, f"Job {job.pk} cancelled after {progress['done']} of {progress['total']} {progress['unit']}."
        )
    else:
        model_admin.message_user(request, f"Job {job.pk} had already ended ({job.status}).", messages.WARNING)
    return HttpResponseRedirect(reverse("admin:pimsync_event_job", args=[job.pk]))
