"""The dashboard: pimsync's admin pages for events, attempts and mapping rules (SPEC §6).

The dashboard owns no models. It reads pimsync's rows and changes them only through the same
model methods the worker uses (`pipeline.retry`, `mapping.import_config`).
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Q
from django.http import HttpResponseRedirect, QueryDict
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from dashboard.mapping_admin import MappingConfigAdmin
from dashboard.sites import RETRY_PERMISSION
from pimsync import pipeline
from pimsync.models import RETRYABLE, Event, EventType, MappingConfig, Status


def status_badge(status: str) -> str:
    return format_html('<span class="badge badge-{}">{}</span>', status, status)


class EstimatedCountPaginator(Paginator):
    """Counts an unfiltered event list from PostgreSQL's statistics instead of COUNT(*), which
    reads the whole table (seconds at millions of rows); filtered lists are counted exactly."""

    @cached_property
    def count(self) -> int:
        query = getattr(self.object_list, "query", None)
        if connection.vendor == "postgresql" and query is not None and not query.where:
            with connection.cursor() as cursor:
                cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [Event._meta.db_table])
                row = cursor.fetchone()
            if row and row[0] > 10_000:
                return int(row[0])
        return super().count


class TypeFilter(admin.SimpleListFilter):
    """Fixed choices: Django's field filter would run SELECT DISTINCT type over the whole table."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        return [(t, t.rsplit(".", 1)[-1]) for t in EventType.HANDLED] + [("other", "other types")]

    def queryset(self, request, queryset):
        if self.value() == "other":
            return queryset.exclude(type__in=EventType.HANDLED)
        return queryset.filter(type=self.value()) if self.value() else queryset


class ErrorClassFilter(admin.SimpleListFilter):
    title = "error class"
    parameter_name = "error"

    def lookups(self, request, model_admin):
        return [
            ("pim_not_found", "product not in the PIM"),
            ("pim", "PIM errors"),
            ("aem", "AEM errors"),
            ("ims", "IMS / credentials"),
            ("mapping", "mapping rules"),
            ("config", "configuration"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value in {"pim_not_found", "mapping", "config"}:
            return queryset.filter(error_class=value)
        return queryset.filter(error_class__startswith=value)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("status_label", "asset", "product_key", "kind", "attempts", "short_reason", "received_at")
    list_display_links = ("asset",)
    list_filter = ("status", TypeFilter, ("received_at", admin.DateFieldListFilter), ErrorClassFilter)
    search_fields = ("asset_name",)  # shows the search box; the lookups are in get_search_results
    search_help_text = "Asset name, path or product key (prefix), asset id or event id (exact)"
    list_per_page = 50
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    actions = ["retry_selected"]
    change_form_template = "admin/pimsync/event/change_form.html"
    change_list_template = "admin/pimsync/event/change_list.html"

    class Media:
        css = {"all": ["dashboard/dashboard.css"]}

    # Machine-written rows: viewable, never edited, added or deleted by hand.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).defer("payload")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        # Each lookup is exact or a prefix, so each one can use its index (see Event.Meta.indexes).
        return queryset.filter(
            Q(event_id=term)
            | Q(asset_id=term)
            | Q(asset_name__startswith=term)
            | Q(asset_path__startswith=term)
            | Q(product_key__startswith=term)
        ), False

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
        if request.POST.get("confirmed") == "yes":
            count = pipeline.retry(list(queryset))
            self.message_user(request, f"{count} event(s) sent back to the worker.", messages.SUCCESS)
            return None
        retryable = queryset.filter(status__in=RETRYABLE)
        return TemplateResponse(
            request,
            "admin/pimsync/event/retry_confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": "Retry events?",
                "count": retryable.count(),
                "skipped": queryset.count() - retryable.count(),
                "selected": queryset.values_list("pk", flat=True),
                "action": "retry_selected",
                "opts": self.model._meta,
            },
        )

    def get_urls(self):
        return [
            path("<int:pk>/retry/", self.admin_site.admin_view(self.retry_one), name="pimsync_event_retry"),
            path(
                "retry-matching/", self.admin_site.admin_view(self.retry_matching), name="pimsync_event_retry_matching"
            ),
            *super().get_urls(),
        ]

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
        params = request.GET.copy() if request.method == "GET" else request.POST.copy()
        filters = params.get("filters", "")
        # The list's own filters and search, rebuilt from its query string, select the events.
        request.GET = QueryDict(filters)
        changelist: ChangeList = self.get_changelist_instance(request)
        failed = changelist.get_queryset(request).filter(status=Status.FAILED)
        if request.method == "POST":
            count = 0
            ids = list(failed.values_list("pk", flat=True))
            for start in range(0, len(ids), 500):  # bounded memory however many match
                count += pipeline.retry(list(Event.objects.filter(pk__in=ids[start : start + 500])))
            self.message_user(request, f"{count} failed event(s) sent back to the worker.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:pimsync_event_changelist") + ("?" + filters if filters else ""))
        return TemplateResponse(
            request,
            "admin/pimsync/event/retry_confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": "Retry all failed events matching this filter?",
                "count": failed.count(),
                "filters": filters,
                "opts": self.model._meta,
            },
        )

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_retry": request.user.has_perm(RETRY_PERMISSION),
            "filters": request.GET.urlencode(),
        }
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        event = get_object_or_404(Event, pk=object_id)
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


admin.site.register(MappingConfig, MappingConfigAdmin)
