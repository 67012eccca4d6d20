"""The alert history: every time a condition needed a person, newest first; nobody edits it."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from dashboard.sites import MachineWrittenAdmin
from pimsync.alerts.monitor import TITLES, link_of


class AlertAdmin(MachineWrittenAdmin):
    list_display = ("state", "title", "summary", "opened_at", "resolved_at", "messages")
    list_display_links = ("title",)
    list_filter = ("condition", ("resolved_at", admin.EmptyFieldListFilter))
    list_per_page = 50
    show_facets = admin.ShowFacets.NEVER
    fields = (
        "condition",
        "summary",
        "shown_on",
        "opened_at",
        "resolved_at",
        "last_checked_at",
        "notified_open",
        "notified_resolved",
        "notify_failures",
    )
    readonly_fields = fields

    @admin.display(description="state", ordering="resolved_at")
    def state(self, alert) -> str:
        label = "open" if alert.is_open else "resolved"
        return format_html('<span class="badge badge-{}">{}</span>', "failed" if alert.is_open else "succeeded", label)

    @admin.display(description="condition", ordering="condition")
    def title(self, alert) -> str:
        return TITLES.get(alert.condition, alert.condition)

    @admin.display(description="messages sent")
    def messages(self, alert) -> str:
        return ", ".join(alert.notified_open + [f"{c} (resolved)" for c in alert.notified_resolved]) or "—"

    @admin.display(description="shown on")
    def shown_on(self, alert) -> str:
        url = link_of(alert)
        return format_html('<a href="{}">{}</a>', url, url)
