"""The admin site whose index is pimsync's overview page."""

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.urls import path
from django.utils.functional import cached_property

from dashboard import backfill, charts, overview
from pimsync.models import SyncState

RETRY_PERMISSION = "pimsync.retry_event"
RESYNC_PERMISSION = "pimsync.resync_asset"


class PimsyncAdminSite(admin.AdminSite):
    site_header = "pimsync"
    site_title = "pimsync"
    index_title = "Overview"
    index_template = "admin/pimsync_index.html"
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
                states = overview.asset_states()
                data["assets"] = [(state, SyncState(state).label, n) for state, n in states.items()]
            extra_context = {**(extra_context or {}), "overview": data}
        return super().index(request, extra_context)

    def get_urls(self):
        upload = self.admin_view(lambda request: backfill.upload(request, self))
        return [path("pimsync/asset/backfill/", upload, name="pimsync_asset_backfill"), *super().get_urls()]


class MachineWrittenAdmin(admin.ModelAdmin):
    """Rows pimsync writes itself (events, alerts): viewable, never added, edited or deleted by hand;
    the server answers 403 to any such request, whatever the buttons show."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class EstimatedCountPaginator(Paginator):
    """Counts an unfiltered list (events, assets) from PostgreSQL's statistics instead of COUNT(*),
    which reads the whole table (seconds at millions of rows); filtered lists are counted exactly."""

    @cached_property
    def count(self) -> int:
        query = getattr(self.object_list, "query", None)
        if connection.vendor == "postgresql" and query is not None and not query.where:
            table = query.model._meta.db_table
            with connection.cursor() as cursor:
                cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table])
                row = cursor.fetchone()
            if row and row[0] > 10_000:
                return int(row[0])
        return super().count
