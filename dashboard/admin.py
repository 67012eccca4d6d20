"""The dashboard: pimsync's admin pages for events, attempts and mapping rules.

The dashboard owns no models. It reads pimsync's rows and changes them only through the
functions the management commands call too: `pipeline.retry` (as `manage.py retry_events`),
`mapping.import_config` (as `manage.py import_mappings`), and the mapping forms, which validate
with the models' `full_clean()`. Retries too large for one request become background jobs
(`pimsync.jobs`) whose progress the job pages show.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from dashboard import event_export
from dashboard.alerts_admin import AlertAdmin
from dashboard.assets_admin import AssetAdmin
from dashboard.mapping_admin import MappingConfigAdmin
from dashboard.sites import RESYNC_PERMISSION, RETRY_PERMISSION, EstimatedCountPaginator, MachineWrittenAdmin
from pimsync import jobs, pipeline, resync, selection
from pimsync.models import RETRYABLE, Alert, Asset, Event, Job, MappingConfig, Status

# A selection up to this size is retried inside the request; a larger one becomes a background job.
INLINE_RETRY_LIMIT = 100


def status_badge(status: str) -> str:
    return format_html('<span class="badge badge-{}">{}</span>', status, status)


class TypeFilter(admin.SimpleListFilter):
    """Fixed choices: Django's field filter would run SELECT DISTINCT type over the whole table."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        return [(t, t.rsplit(".", 1)[-1]) for t in selection.TYPE_CHOICES[:-1]] + [("other", "other types")]

    def queryset(self, request, queryset):
        return selection.by_type(queryset, self.value())


class ErrorClassFilter(admin.SimpleListFilter):
    title = "error class"
    parameter_name = "error"

    def lookups(self, request, model_admin):
        return list(selection.ERROR_CLASSES.items())

    def queryset(self, request, queryset):
        return selection.by_error(queryset, self.value())


@admin.register(Event)
class EventAdmin(MachineWrittenAdmin):
    list_display = ("status_label", "asset", "product_key", "kind", "attempts", "short_reason", "received_at")
    list_display_links = ("asset",)
    list_filter = ("status", TypeFilter, ("received_at", admin.DateFieldListFilter), ErrorClassFilter, "arrived_by")
    search_fields = ("asset_name",)  # shows the search box; the lookups are in get_search_results
    search_help_text = "Asset name, path or product key (prefix), asset id or event id (exact)"
    list_per_page = 50
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    # Facets would count every filter choice over the whole table on each page view.
    show_facets = admin.ShowFacets.NEVER
    actions = ["retry_selected"]
    change_form_template = "admin/pimsync/event/change_form.html"
    change_list_template = "admin/pimsync/event/change_list.html"

    class Media:
        css = {"all": ["dashboard/dashboard.css"]}

    def get_queryset(self, request):
        return super().get_queryset(request).defer("payload")

    def lookup_allowed(self, lookup, value, request=None):
        """Only the declared list filters: Django would allow any lookup on a local field
        (`?payload__icontains=…`, `?reason__regex=…`), each a full scan any viewer could start.
        Anything else raises DisallowedModelAdminLookup, which answers 400 before any query."""
        return lookup in selection.FILTER_PARAMS

    def get_search_results(self, request, queryset, search_term):
        return selection.search(queryset, search_term), False

    @admin.display(description="status", ordering="status")
    def status_label(self, event):
        return status_badge(event.status)

    @admin.display(description="asset", ordering="asset_name")
    def asset(self, event):
        return format_html(
            "{}<br><small class='quiet'>{}</small>", event.asset_name or event.asset_id or "—", event.asset_path
        )

    @admin.display(description="type", ordering="type")
    def kind(self, event):
        return event.short_type

    @admin.display(description="reason")
    def short_reason(self, event):
        return event.reason if len(event.reason) <= 90 else event.reason[:87] + "…"

    # --- retry ---------------------------------------------------------------------------

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.has_perm(RETRY_PERMISSION):
            actions.pop("retry_selected", None)
        return actions

    @admin.action(description="Retry selected events")
    def retry_selected(self, request, queryset):
        if not request.user.has_perm(RETRY_PERMISSION):
            raise PermissionDenied
        across = request.POST.get("select_across") == "1"
        filters = selection.filters_only(request.GET)
        if request.POST.get("confirmed") == "yes":  # a confirmation that posted the selection back
            ids = None if across else list(queryset.values_list("pk", flat=True))
            return self._retry(request, query=filters, ids=ids)
        total = queryset.count()
        retryable = queryset.filter(status__in=RETRYABLE).count()
        # The confirmation carries the selection in one field, however many events it holds: all
        # events matching the list's filters, or the ids ticked on the page.
        if across:
            fields = {"filters": filters, "select_across": "1"}
        else:
            fields = {"filters": filters, "ids": ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))}
        url_name = "pimsync_event_retry_selection"
        return self._confirm(request, "Retry events?", retryable, total - retryable, fields, url_name)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/retry/", view(self.retry_one), name="pimsync_event_retry"),
            path("retry-matching/", view(self.retry_matching), name="pimsync_event_retry_matching"),
            path("retry-selection/", view(require_POST(self.retry_selection)), name="pimsync_event_retry_selection"),
            path("jobs/", view(self.job_list), name="pimsync_event_jobs"),
            path("export.csv", view(self.export_csv), name="pimsync_event_export"),
            path("jobs/<int:pk>/", view(self.job_detail), name="pimsync_event_job"),
            path("jobs/<int:pk>/cancel/", view(require_POST(self.job_cancel)), name="pimsync_event_job_cancel"),
            *super().get_urls(),
        ]

    def export_csv(self, request):
        """The list's rows as CSV (dashboard.event_export), for whoever may view the list."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return event_export.export(request, self)

    def retry_one(self, request, pk):
        """The Retry button of the detail page (POST only, CSRF-protected, permission-checked)."""
        return require_POST(self._retry_one)(request, pk)

    def _retry_one(self, request, pk):
        if not request.user.has_perm(RETRY_PERMISSION):
            raise PermissionDenied
        event = get_object_or_404(Event, pk=pk)
        if pipeline.retry([event]):
            self.message_user(request, "Retry queued: the worker will pick the event up in a moment.", messages.SUCCESS)
        else:
            self.message_user(request, f"A {event.status} event cannot be retried.", messages.WARNING)
        return HttpResponseRedirect(reverse("admin:pimsync_event_change", args=[pk]))

    def retry_matching(self, request):
        """Retry every failed event that matches the list's current filters, after a confirmation."""
        if not request.user.has_perm(RETRY_PERMISSION):
            raise PermissionDenied
        params = request.GET if request.method == "GET" else request.POST
        filters = params.get("filters", "")
        if request.method == "POST":
            return self._retry(request, query=filters, only_status=Status.FAILED)
        try:
            failed = selection.select(filters).filter(status=Status.FAILED)
        except selection.SelectionError as exc:
            return self._not_understood(request, exc)
        return self._confirm(
            request,
            "Retry all failed events matching this filter?",
            failed.count(),
            0,
            {"filters": filters},
            "pimsync_event_retry_matching",
        )

    def retry_selection(self, request):
        """The confirmation of "Retry selected events": the ids ticked, or all events matching."""
        if not request.user.has_perm(RETRY_PERMISSION):
            raise PermissionDenied
        ids = None
        if request.POST.get("select_across") != "1":
            try:
                ids = [int(pk) for pk in request.POST.get("ids", "").split(",") if pk.strip()]
            except ValueError:
                return self._not_understood(request, selection.SelectionError("the selected ids are not numbers"))
        return self._retry(request, query=request.POST.get("filters", ""), ids=ids)

    def _confirm(self, request, title, count, skipped, fields, url_name):
        return TemplateResponse(
            request,
            "admin/pimsync/event/retry_confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "count": count,
                "skipped": skipped,
                "fields": fields,
                "form_action": reverse(f"admin:{url_name}"),
                "filters": fields.get("filters", ""),
                "background": count > INLINE_RETRY_LIMIT,
                "opts": self.model._meta,
            },
        )

    def _not_understood(self, request, exc):
        """A filter the list does not offer: say so, change nothing."""
        return TemplateResponse(
            request,
            "admin/pimsync/event/retry_confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": "This filter is not understood",
                "error": f"This filter is not understood: {exc}. Nothing was retried.",
                "opts": self.model._meta,
            },
            status=400,
        )

    def _retry(self, request, *, query: str, only_status: str = "", ids: list[int] | None = None):
        """Retry a small selection now; hand a large one to a background job and show its page."""
        back = reverse("admin:pimsync_event_changelist") + (f"?{query}" if query else "")
        try:
            events = Event.objects.filter(pk__in=ids) if ids is not None else selection.select(query)
        except selection.SelectionError as exc:
            return self._not_understood(request, exc)
        if only_status:
            events = events.filter(status=only_status)
        first = list(events.defer("payload").order_by("pk")[: INLINE_RETRY_LIMIT + 1])
        if len(first) <= INLINE_RETRY_LIMIT:
            count = pipeline.retry(first)
            what = "failed event(s)" if only_status == Status.FAILED else "event(s)"
            self.message_user(request, f"{count} {what} sent back to the worker.", messages.SUCCESS)
            return HttpResponseRedirect(back)
        try:
            job = jobs.start_retry(request.user, query=query if ids is None else "", only_status=only_status, ids=ids)
        except selection.SelectionError as exc:
            return self._not_understood(request, exc)
        self.message_user(
            request, f"Retrying {job.total} events in the background: this page shows how far it is.", messages.SUCCESS
        )
        return HttpResponseRedirect(reverse("admin:pimsync_event_job", args=[job.pk]))

    # --- background jobs -------------------------------------------------------------------

    def _jobs_context(self, request, **extra):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "recent": Job.objects.select_related("created_by")[:20],
            **extra,
        }

    def job_list(self, request):
        """The latest background jobs, newest first."""
        return TemplateResponse(request, "admin/pimsync/event/jobs.html", self._jobs_context(request, title="Jobs"))

    def job_detail(self, request, pk):
        """One job's progress; the page reloads itself until the job has ended."""
        if not self.has_view_permission(request):  # before any counting
            raise PermissionDenied
        job = get_object_or_404(Job.objects.select_related("created_by"), pk=pk)
        # A re-sync counts its events' outcomes now; the job row holds those of its last step.
        progress = resync.progress(job) if job.kind == Job.Kind.RESYNC else None
        context = self._jobs_context(
            request,
            title=f"Job {job.pk}: {job.description}",
            job=job,
            can_cancel=request.user.has_perm(_cancel_permission(job)),
            progress=progress,
            eta=_duration(progress.eta_seconds) if progress and progress.eta_seconds is not None else "",
            affected=resync.affected_count() if job.kind == Job.Kind.AFFECTED and not job.is_active else None,
        )
        return TemplateResponse(request, "admin/pimsync/event/jobs.html", context)

    def job_cancel(self, request, pk):
        """Stop a job before its next batch (who may start it may stop it); what it already did stays
        done, and a re-sync's events still waiting are ignored."""
        job = get_object_or_404(Job, pk=pk)
        if not request.user.has_perm(_cancel_permission(job)):
            raise PermissionDenied
        if job.cancel():
            what = "events" if job.kind == Job.Kind.RETRY else "assets"
            self.message_user(request, f"Job {job.pk} cancelled after {job.done} of {job.total} {what}.")
        else:
            self.message_user(request, f"Job {job.pk} had already ended ({job.status}).", messages.WARNING)
        return HttpResponseRedirect(reverse("admin:pimsync_event_job", args=[job.pk]))

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_retry": request.user.has_perm(RETRY_PERMISSION),
            "filters": selection.filters_only(request.GET),
        }
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        event = self.shown_object(request, object_id)
        attempts = list(event.attempt_set.all())
        extra_context = {
            **(extra_context or {}),
            "event": event,
            "badge": status_badge(event.status),
            "attempts": attempts,
            "payload": json.dumps(event.payload, indent=2, ensure_ascii=False),
            "pim_data": next(
                (json.dumps(a.pim_data, indent=2, ensure_ascii=False) for a in reversed(attempts) if a.pim_data), ""
            ),
            "can_retry": request.user.has_perm(RETRY_PERMISSION) and event.status in RETRYABLE,
        }
        return super().change_view(request, object_id, form_url, extra_context)


def _duration(seconds: float) -> str:
    """A rough time left: "40 s", "12 min", "3.5 h"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _cancel_permission(job: Job) -> str:
    """Retries are Support's; re-syncs and mapping checks belong to whoever may re-sync."""
    return RETRY_PERMISSION if job.kind == Job.Kind.RETRY else RESYNC_PERMISSION


admin.site.register(MappingConfig, MappingConfigAdmin)
admin.site.register(Alert, AlertAdmin)
admin.site.register(Asset, AssetAdmin)
