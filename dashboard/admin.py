"""The dashboard: pimsync's admin pages for events, attempts and mapping rules.

The dashboard owns no models. It reads pimsync's rows and changes them only through the
functions the management commands call too: `EventQuerySet.retry` (through `pimsync.jobs`; `manage.py
retry_events` through `pipeline.retry`), `mapping.import_config` (as `manage.py import_mappings`), and
the mapping forms, which validate with the models' `full_clean()`. Every retry is recorded as a job
(`pimsync.jobs`): a small one is done in the request, a larger one in the background, and the job
pages show their progress and where the retried events are now.
"""

from __future__ import annotations

import json
from functools import partial

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from dashboard import event_export, job_pages
from dashboard.alerts_admin import AlertAdmin
from dashboard.assets_admin import AssetAdmin
from dashboard.mapping_admin import MappingConfigAdmin
from dashboard.sites import RETRY_PERMISSION, EstimatedCountPaginator, MachineWrittenAdmin
from pimsync import failures, jobs, selection
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


class RetryJobFilter(admin.SimpleListFilter):
    """The events one retry sent back to the worker (linked from its job page and its message);
    shown only while it is in use."""

    title = "retried by"
    parameter_name = selection.RETRY_JOB

    def lookups(self, request, model_admin):
        value = self.value()
        return [(value, f"job {value}")] if value and value.isdigit() else []

    def queryset(self, request, queryset):
        return selection.by_retry_job(queryset, self.value() if (self.value() or "").isdigit() else None)


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
    list_filter = (
        "status",
        TypeFilter,
        ("received_at", admin.DateFieldListFilter),
        ErrorClassFilter,
        "arrived_by",
        RetryJobFilter,
    )
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
        # The cell shows the first lines (dashboard.css clamps them); hovering shows it all.
        shown = event.reason if len(event.reason) <= 300 else event.reason[:299] + "…"
        return format_html('<span class="reason" title="{}">{}</span>', event.reason, shown)

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
        action = reverse("admin:pimsync_event_retry_selection")
        return self._confirm(request, "Retry events?", queryset, retryable, total - retryable, fields, action)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/retry/", view(self.retry_one), name="pimsync_event_retry"),
            path("retry-matching/", view(self.retry_matching), name="pimsync_event_retry_matching"),
            path("retry-selection/", view(require_POST(self.retry_selection)), name="pimsync_event_retry_selection"),
            path("jobs/", view(partial(job_pages.job_list, self)), name="pimsync_event_jobs"),
            path("export.csv", view(self.export_csv), name="pimsync_event_export"),
            path("jobs/<int:pk>/", view(partial(job_pages.job_detail, self)), name="pimsync_event_job"),
            path(
                "jobs/<int:pk>/progress/",
                view(partial(job_pages.job_progress, self)),
                name="pimsync_event_job_progress",
            ),
            path(
                "jobs/<int:pk>/cancel/",
                view(require_POST(partial(job_pages.job_cancel, self))),
                name="pimsync_event_job_cancel",
            ),
            *super().get_urls(),
        ]

    def export_csv(self, request):
        """The list's rows as CSV (dashboard.event_export), for whoever may view the list."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return event_export.export(request, self)

    def retry_one(self, request, pk):
        """The Retry button of the detail page: a confirmation (GET) that says when a retry cannot
        help, then the retry (POST, CSRF-protected), recorded as a job; permission-checked."""
        if not request.user.has_perm(RETRY_PERMISSION):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        event = get_object_or_404(Event.objects.defer("payload"), pk=pk)
        page = reverse("admin:pimsync_event_change", args=[pk])
        if request.method != "POST":
            one = Event.objects.filter(pk=pk)
            retryable = int(event.status in RETRYABLE)
            action = reverse("admin:pimsync_event_retry", args=[pk])
            return self._confirm(request, "Retry this event?", one, retryable, 1 - retryable, {}, action, back=page)
        if event.status not in RETRYABLE:
            self.message_user(request, f"A {event.status} event cannot be retried.", messages.WARNING)
            return HttpResponseRedirect(page)
        job = jobs.retry_now(request.user, [event], ids=[event.pk])
        self.message_user(
            request,
            format_html(
                "Retry queued: the worker picks the event up in a moment; this page shows how it ends "
                '(<a href="{}">job {}</a>).',
                reverse("admin:pimsync_event_job", args=[job.pk]),
                job.pk,
            ),
            messages.SUCCESS,
        )
        return HttpResponseRedirect(page)

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
            failed,
            failed.count(),
            0,
            {"filters": filters},
            reverse("admin:pimsync_event_retry_matching"),
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

    def _confirm(self, request, title, events, count, skipped, fields, form_action, back=""):
        """Ask before a retry: how many events, and which of them failed for a reason a retry does not
        change, with what would help (`pimsync.failures`)."""
        filters = fields.get("filters", "")
        cannot_help = _cannot_help(events)
        return TemplateResponse(
            request,
            "admin/pimsync/event/retry_confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "count": count,
                "skipped": skipped,
                "fields": fields,
                "form_action": form_action,
                "back": back or reverse("admin:pimsync_event_changelist") + (f"?{filters}" if filters else ""),
                "cannot_help": cannot_help,
                "hopeless": sum(group["count"] for group in cannot_help),
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
        try:
            events = Event.objects.filter(pk__in=ids) if ids is not None else selection.select(query)
        except selection.SelectionError as exc:
            return self._not_understood(request, exc)
        if only_status:
            events = events.filter(status=only_status)
        first = list(events.defer("payload").order_by("pk")[: INLINE_RETRY_LIMIT + 1])
        if len(first) <= INLINE_RETRY_LIMIT:
            job = jobs.retry_now(request.user, first, query=query, only_status=only_status, ids=ids)
            what = "failed event(s)" if only_status == Status.FAILED else "event(s)"
            self.message_user(
                request,
                format_html(
                    '{} {} sent back to the worker (<a href="{}">job {}</a>). This list shows them as they are '
                    "now: they leave the failed ones as soon as they are retried, and come back if they fail again.",
                    job.succeeded,
                    what,
                    reverse("admin:pimsync_event_job", args=[job.pk]),
                    job.pk,
                ),
                messages.SUCCESS,
            )
            return HttpResponseRedirect(_retried_list(job))
        try:
            job = jobs.start_retry(request.user, query=query if ids is None else "", only_status=only_status, ids=ids)
        except selection.SelectionError as exc:
            return self._not_understood(request, exc)
        self.message_user(
            request, f"Retrying {job.total} events in the background: this page shows how far it is.", messages.SUCCESS
        )
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
            "failure": failures.lookup(event.error_class) if event.status in (Status.FAILED, Status.RETRYING) else None,
        }
        return super().change_view(request, object_id, form_url, extra_context)


def _retried_list(job: Job) -> str:
    """The event list showing the events a retry sent back, wherever they are now."""
    return reverse("admin:pimsync_event_changelist") + f"?{selection.RETRY_JOB}={job.pk}"


def _cannot_help(events) -> list[dict]:
    """Which of these events failed for a reason a retry does not change, grouped by what would
    help, each with a few asset names (one GROUP BY, then one short query per group)."""
    groups: dict[failures.Failure, list[str]] = {}
    counts: dict[failures.Failure, int] = {}
    for error_class, count in events.failed_by_error_class().items():
        failure = failures.lookup(error_class)
        if failure is None or failure.retry_helps:
            continue
        groups.setdefault(failure, []).append(error_class)
        counts[failure] = counts.get(failure, 0) + count
    return [
        {
            "failure": failure,
            "count": counts[failure],
            "examples": list(
                events.filter(status=Status.FAILED, error_class__in=classes)
                .order_by("-pk")
                .values_list("asset_name", flat=True)[:3]
            ),
        }
        for failure, classes in groups.items()
    ]


admin.site.register(MappingConfig, MappingConfigAdmin)
admin.site.register(Alert, AlertAdmin)
admin.site.register(Asset, AssetAdmin)
