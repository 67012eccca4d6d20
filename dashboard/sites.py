"""The admin site whose index is pimsync's overview page."""

from django.contrib import admin
from django.urls import path

from dashboard import charts, overview

RETRY_PERMISSION = "pimsync.retry_event"


class PimsyncAdminSite(admin.AdminSite):
    site_header = "pimsync"
    site_title = "pimsync"
    index_title = "Overview"
    index_template = "admin/pimsync_index.html"
    # The event list and the mapping rules are wide tables; they need the room more than a menu.
    enable_nav_sidebar = False

    def index(self, request, extra_context=None):
        """Status counts, charts, queue depth, worker heartbeat, warnings and recent failures."""
        if request.user.has_perm("pimsync.view_event"):
            data = overview.build()
            data["throughput_chart"] = charts.throughput(data["hours"])
            data["latency_chart"] = charts.latency(data["hours"])
            data["can_retry"] = request.user.has_perm(RETRY_PERMISSION)
            extra_context = {**(extra_context or {}), "overview": data}
        return super().index(request, extra_context)

    def get_urls(self):
        from dashboard import backfill  # imports pimsync's models, not loaded when this module is

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
