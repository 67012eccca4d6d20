"""The admin site whose index is pimsync's overview page."""

from django.contrib import admin
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.utils import get_fields_from_path, unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.functional import cached_property

from dashboard import backfill, charts, overview
from pimsync.middleware import upload_limit
from pimsync.models import SyncState

RETRY_PERMISSION = "pimsync.retry_event"
RESYNC_PERMISSION = "pimsync.resync_asset"


class PimsyncAdminSite(admin.AdminSite):
    site_header = "pimsync"
    site_title = "pimsync"
    index_title = "Overview"
    index_template = "admin/pimsync_index.html"
    # Django's "View site" link points at "/", which redirects to this site's own index.
    site_url = None
    # The event list and the mapping rules are wide tables; they need the room more than a menu.
    enable_nav_sidebar = False

    def index(self, request, extra_context=None):
        """Status counts, charts, queue depth, worker heartbeat, warnings, recent failures, and
        the known assets by sync state."""
        if request.user.has_perm("pimsync.view_event"):
            data = overview.build()
            data["throughput_chart"] = charts.throughput(data["hours"])
            data["latency_chart"] = charts.latency(data["hours"])
            data["can_retry"] = request.user.has_perm(RETRY_PERMISSION)
            if request.user.has_perm("pimsync.view_asset"):
                states, estimated = overview.asset_states()
                data["assets"] = [(state, SyncState(state).label, n, state == estimated) for state, n in states.items()]
            extra_context = {**(extra_context or {}), "overview": data}
        return super().index(request, extra_context)

    def get_urls(self):
        upload = self.admin_view(
            upload_limit(backfill.MAX_UPLOAD_BYTES)(lambda request: backfill.upload(request, self))
        )
        return [path("pimsync/asset/backfill/", upload, name="pimsync_asset_backfill"), *super().get_urls()]

    def register(self, model_or_iterable, admin_class=None, **options):
        """Every list on the site takes only its declared filters, Django's and django-q2's lists
        too: an admin registered without DeclaredFiltersOnly is registered with it."""
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, DeclaredFiltersOnly):
            names = {"__module__": admin_class.__module__, "__qualname__": admin_class.__qualname__}
            admin_class = type(admin_class.__name__, (DeclaredFiltersOnly, admin_class), names)
        return super().register(model_or_iterable, admin_class, **options)


class DeclaredFiltersOnly:
    """A list selects rows by the filters it declares and its search box, nothing else.

    Django's own `lookup_allowed` lets anyone who may view a list put any lookup on one of its
    fields into the address: `?summary__regex=(.%2B)%2B!` runs a backtracking regular expression
    inside the database (on SQLite it holds the web process for seconds per request), and
    `?payload__icontains=` scans a whole table. Any other parameter answers 400 before a query."""

    def lookup_allowed(self, lookup, value, request=None):
        return lookup in self.declared_lookups(request) and super().lookup_allowed(lookup, value, request)

    def declared_lookups(self, request) -> frozenset[str]:
        """The query parameters of the list's filters and of its date hierarchy."""
        cache = getattr(request, "_pimsync_declared_lookups", None)
        if cache is None:
            cache = {}
            if request is not None:  # a list checks every parameter: its filters are read once
                request._pimsync_declared_lookups = cache
        if self.opts.label not in cache:
            cache[self.opts.label] = self._declared_lookups(request)
        return cache[self.opts.label]

    def _declared_lookups(self, request) -> frozenset[str]:
        names = set()
        list_filter = self.get_list_filter(request) if request is not None else self.list_filter
        for item in list_filter:
            if isinstance(item, type) and issubclass(item, admin.SimpleListFilter):
                names.add(item.parameter_name)  # not instantiated: its lookups() may query
            elif callable(item):
                names.update(item(request, {}, self.model, self).expected_parameters())
            else:
                # A field's filter says which parameters it reads (`status__exact`,
                # `received_at__gte`, …); made with no parameters, it selects nothing.
                field_path, filter_class = (
                    item if isinstance(item, list | tuple) else (item, admin.FieldListFilter.create)
                )
                field = get_fields_from_path(self.model, field_path)[-1]
                spec = filter_class(field, request, {}, self.model, self, field_path=field_path)
                names.update(spec.expected_parameters())
        if self.date_hierarchy:
            names.update(f"{self.date_hierarchy}__{part}" for part in ("year", "month", "day"))
        return frozenset(names)

    def changelist_view(self, request, extra_context=None):
        try:
            return super().changelist_view(request, extra_context)
        except DisallowedModelAdminLookup as exc:
            lookup = str(exc).removeprefix("Filtering by ").removesuffix(" not allowed")[:200]
            message = (
                f"This filter is not understood: the list has no filter {lookup}. It is filtered only by the "
                "choices beside it and its search box; nothing was looked up."
            )
            context = {**self.admin_site.each_context(request), "title": "Not understood", "error": message}
            return TemplateResponse(
                request, "admin/pimsync/not_understood.html", {**context, "opts": self.opts}, status=400
            )


class MachineWrittenAdmin(DeclaredFiltersOnly, admin.ModelAdmin):
    """Rows pimsync writes itself (events, alerts): viewable, never added, edited or deleted by hand;
    the server answers 403 to any such request, whatever the buttons show."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def shown_object(self, request, object_id: str):
        """The row a change page shows, read only after the permission check (who may not view
        these rows does not learn whether one exists); an id that names no row, in whatever form
        (`abc` for a number), is a 404."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} has the id {object_id[:100]!r}.")
        return obj


class EstimatedCountPaginator(Paginator):
    """Counts an unfiltered list (events, assets) from PostgreSQL's statistics instead of COUNT(*),
    which reads the whole table (seconds at millions of rows); filtered lists are counted exactly."""

    @cached_property
    def count(self) -> int:
        query = getattr(self.object_list, "query", None)
        if query is not None and not query.where:
            estimate = overview.table_statistics(query.model)
            if estimate and estimate[0] > 10_000:
                return estimate[0]
        return super().count
