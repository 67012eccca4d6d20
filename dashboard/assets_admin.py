"""The Assets pages: every AEM asset pimsync knows, whether AEM holds what the PIM and the mapping
say it should, and the ways to re-sync them (`pimsync.resync.start`): the Re-sync button of an
asset's page, the action on ticked assets, and "Re-sync all matching" for the list's filter.

The list stays fast at millions of assets the way the event list does: every filter and the
search is an exact or prefix lookup served by an index of `Asset`, anything else answers 400,
and an unfiltered list is counted from PostgreSQL's statistics.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR
from django.core.exceptions import PermissionDenied
from django.db.models import F, OrderBy
from django.http import HttpResponseRedirect, QueryDict
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from dashboard import asset_filters, job_pages, overview
from dashboard.sites import RESYNC_PERMISSION, EstimatedCountPaginator, MachineWrittenAdmin
from pimsync import mapping, resync
from pimsync.models import Asset, Event, MappingConfig, SyncState

# The newest events shown on an asset's page; the rest are a link to the event list.
ASSET_EVENTS = 50


def state_badge(state: str) -> str:
    label = SyncState(state).label if state in SyncState.values else state
    return format_html('<span class="badge badge-asset-{}">{}</span>', state, label)


def job_url(job) -> str:
    return reverse("admin:pimsync_event_job", args=[job.pk])


class PrefixIndexOrder(OrderBy):
    """Ascending path in the byte order of the prefix index (`path USING ~<~` on PostgreSQL), so a
    filtered list's page is read straight from that index. In the path index's order PostgreSQL
    estimates a prefix's rows as spread over the whole table, when they are next to each other,
    and walks that index from its start to find them (0.6 s for a prefix at the end of a million
    assets; 0.3 ms this way). Other databases: the plain order."""

    def as_postgresql(self, compiler, connection):
        # Django's compiler finds each ORDER BY term's direction word to drop duplicate terms;
        # `USING` has none, so the comment carries it.
        return self.as_sql(compiler, connection, template="%(expression)s USING ~<~ /* ASC */")


class InputFilter(admin.SimpleListFilter):
    """A filter typed into a box (one value among millions), not picked from a list of choices."""

    template = "admin/pimsync/asset/input_filter.html"
    placeholder = ""

    def lookups(self, request, model_admin):
        return [("", "")]  # one box; a filter without choices would not be shown

    def choices(self, changelist):
        skip = (self.parameter_name, PAGE_VAR, ERROR_FLAG)
        yield {
            "value": self.value() or "",
            "placeholder": self.placeholder,
            "hidden": [(k, v) for k, values in changelist.filter_params.items() if k not in skip for v in values],
            "clear": changelist.get_query_string(remove=[self.parameter_name]) if self.value() else "",
        }


class ProductKeyFilter(InputFilter):
    title = "product key"
    parameter_name = asset_filters.PRODUCT_KEY
    placeholder = "SKU-100234"

    def queryset(self, request, queryset):
        return queryset.filter(product_key=self.value()) if self.value() else queryset


class PathPrefixFilter(InputFilter):
    title = "path prefix"
    parameter_name = asset_filters.PREFIX
    placeholder = "/content/dam/…"

    def queryset(self, request, queryset):
        return queryset.filter(path__startswith=self.value()) if self.value() else queryset


class AssetAdmin(MachineWrittenAdmin):
    list_display = ("asset_path", "asset_name", "key", "state_label", "outcome", "synced", "known")
    list_display_links = ("asset_path",)
    list_filter = ("state", ProductKeyFilter, PathPrefixFilter)
    search_fields = ("name",)  # shows the search box; the lookups are in get_search_results
    search_help_text = "Asset name, path or product key (prefix), or asset id (exact)"
    list_per_page = 50
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    show_facets = admin.ShowFacets.NEVER
    # No column to sort by: the list is in path order, the order its indexes serve.
    sortable_by = ()
    actions = ["resync_selected"]
    change_form_template = "admin/pimsync/asset/change_form.html"
    change_list_template = "admin/pimsync/asset/change_list.html"

    class Media:
        css = {"all": ["dashboard/dashboard.css"]}

    def get_queryset(self, request):
        return super().get_queryset(request).defer("last_written")

    def get_ordering(self, request):
        """By path; under a path prefix, in the order of the prefix index (see PrefixIndexOrder)."""
        if request.GET.get(asset_filters.PREFIX, "").startswith("/"):
            return [PrefixIndexOrder(F("path")), "asset_id"]
        return super().get_ordering(request)

    def lookup_allowed(self, lookup, value, request=None):
        """Only the declared filters (see asset_filters): any other lookup answers 400."""
        return lookup in asset_filters.FILTER_PARAMS

    def get_search_results(self, request, queryset, search_term):
        return asset_filters.search(queryset, search_term), False

    @admin.display(description="path", ordering="path")
    def asset_path(self, asset):
        return asset.path or asset.asset_id

    @admin.display(description="name")
    def asset_name(self, asset):
        return asset.name or "—"

    @admin.display(description="product key")
    def key(self, asset):
        return asset.product_key or "—"

    @admin.display(description="state")
    def state_label(self, asset):
        return state_badge(asset.state)

    @admin.display(description="last outcome")
    def outcome(self, asset):
        if not asset.last_outcome:
            return "—"
        return format_html('<span class="badge badge-{}">{}</span>', asset.last_outcome, asset.last_outcome)

    @admin.display(description="last synchronised")
    def synced(self, asset):
        return asset.last_synced_at or "—"

    @admin.display(description="known from")
    def known(self, asset):
        return asset.known_from

    def changelist_view(self, request, extra_context=None):
        try:
            asset_filters.check(request.GET)
        except asset_filters.FilterError as exc:
            return self._refuse(request, f"This filter is not understood: {exc}.")
        extra_context = {
            **(extra_context or {}),
            "can_resync": request.user.has_perm(RESYNC_PERMISSION),
            "filters": asset_filters.filters_only(request.GET),
        }
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        asset = self.shown_object(request, object_id)
        events = Event.objects.filter(asset_id=asset.asset_id).defer("payload").order_by("-received_at", "-id")
        shown = list(events[: ASSET_EVENTS + 1])
        extra_context = {
            **(extra_context or {}),
            "asset": asset,
            "badge": state_badge(asset.state),
            "events": shown[:ASSET_EVENTS],
            "more_events": len(shown) > ASSET_EVENTS,
            "last_written": json.dumps(asset.last_written, indent=2, ensure_ascii=False) if asset.last_written else "",
            **_unmapped(asset),
            "can_resync": request.user.has_perm(RESYNC_PERMISSION) and asset.state != SyncState.DELETED,
            "resync_url": reverse("admin:pimsync_asset_resync", args=[quote(asset.pk)]),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    # --- re-sync -------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("resync/", view(self.resync_confirm), name="pimsync_asset_resync_confirm"),
            path("<path:object_id>/resync/", view(require_POST(self.resync_one)), name="pimsync_asset_resync"),
            *super().get_urls(),
        ]

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.has_perm(RESYNC_PERMISSION):
            actions.pop("resync_selected", None)
        return actions

    @admin.action(description="Re-sync selected assets")
    def resync_selected(self, request, queryset):
        """Ticked assets by id; "select all N" across pages by the list's filter."""
        if not request.user.has_perm(RESYNC_PERMISSION):
            raise PermissionDenied
        if request.POST.get("select_across") == "1":
            return self._confirm_matching(request, request.GET)
        ids = list(queryset.values_list("pk", flat=True)[: resync.MAX_ASSET_IDS + 1])
        return self._confirm(request, {"asset_ids": ids}, {"ids": json.dumps(ids)})

    def resync_one(self, request, object_id):
        """The Re-sync button of an asset's page (POST only, CSRF-protected, permission-checked)."""
        if not request.user.has_perm(RESYNC_PERMISSION):
            raise PermissionDenied
        asset = get_object_or_404(Asset, pk=unquote(object_id))
        return self._start(request, {"asset_ids": [asset.pk]}, request.POST.get("why", ""))

    def resync_confirm(self, request):
        """ "Re-sync all matching" (GET: the confirmation for the list's filter) and the
        confirmation's "Yes" (POST: the ticked ids, or the filter, and why)."""
        if not request.user.has_perm(RESYNC_PERMISSION):
            raise PermissionDenied
        if request.method != "POST":
            return self._confirm_matching(request, _query(request.GET.get("filters", "")))
        if "ids" in request.POST:
            try:
                ids = json.loads(request.POST["ids"])
            except json.JSONDecodeError:
                return self._refuse(request, "The selected assets were not understood. Nothing was re-synced.")
            spec = {"asset_ids": ids}
        else:
            try:
                spec = asset_filters.resync_spec(_query(request.POST.get("filters", "")))
            except asset_filters.FilterError as exc:
                return self._refuse(request, f"{exc}. Nothing was re-synced.")
        return self._start(request, spec, request.POST.get("why", ""))

    def _confirm_matching(self, request, params):
        try:
            spec = asset_filters.resync_spec(params)
        except asset_filters.FilterError as exc:
            return self._refuse(request, f"These assets cannot be re-synced together: {exc}.")
        return self._confirm(request, spec, {"filters": asset_filters.filters_only(params)})

    def _confirm(self, request, spec: dict, fields: dict):
        """How many assets, a box for why, and Yes/No; the selection travels in one field."""
        try:
            selected = resync.select(spec)
        except resync.SelectionError as exc:
            return self._refuse(request, f"These assets cannot be re-synced together: {exc}.")
        counted = _count(selected, spec)
        return TemplateResponse(
            request,
            "admin/pimsync/asset/resync_confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": "Re-sync assets?",
                **counted,
                "estimate": job_pages.duration(resync.estimate_seconds(counted["count"])) if counted["count"] else "",
                "rate": settings.PIMSYNC_RESYNC_RATE,
                "what": resync.describe(spec),
                "fields": fields,
                "filters": fields.get("filters", ""),
                "form_action": reverse("admin:pimsync_asset_resync_confirm"),
                "opts": self.model._meta,
            },
        )

    def _start(self, request, spec: dict, why: str):
        try:
            job = resync.start(request.user, spec, why=why.strip())
        except resync.SelectionError as exc:
            return self._refuse(request, f"These assets cannot be re-synced: {exc}. Nothing was re-synced.")
        message = f"Re-syncing {job.total} asset(s) in the background: this page shows how far it is."
        self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(job_url(job))

    def _refuse(self, request, message: str):
        """A filter or selection the list does not offer: say so, change nothing."""
        return TemplateResponse(
            request,
            "admin/pimsync/asset/resync_confirm.html",
            {**self.admin_site.each_context(request), "title": "Not understood", "error": message, "opts": self.opts},
            status=400,
        )


def _count(selected, spec: dict) -> dict:
    """How many assets the confirmation names: exactly, but for "all" of a large table, which is
    PostgreSQL's estimate of it less the deleted ones (counting every row took 361 ms at
    3,000,000 assets, BENCHMARKS.md); the job counts exactly when it starts."""
    estimate = overview.table_statistics(Asset) if spec == {"all": True} else None
    if estimate and estimate[0] > overview.EXACT_ASSET_COUNTS_UP_TO:
        deleted = Asset.objects.filter(state=SyncState.DELETED).count()
        return {"count": max(0, estimate[0] - deleted), "approximate": True}
    return {"count": selected.count(), "approximate": False}


def _unmapped(asset: Asset) -> dict:
    """What the asset page says about properties pimsync wrote that no rule writes any more: their
    names and whether the next sync removes them or the mapping keeps them."""
    if not asset.last_written:
        return {}
    config, rules = mapping.current()
    return {
        "unmapped": mapping.unmapped_properties(rules, asset.ref, asset.last_written),
        "unmapped_removed": config.on_unmapped == MappingConfig.OnUnmapped.REMOVE,
    }


def _query(text: str) -> QueryDict:
    """A query string posted back by a confirmation page (bounded: it is typed into no box)."""
    return QueryDict(text[:8192])
