"""The alert history: every time a condition needed a person, newest first. Nobody edits it; Support
(and admins) may silence an alert for a while, saying why."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from dashboard.sites import MachineWrittenAdmin
from pimsync.alerts.monitor import TITLES, link_of
from pimsync.models import Alert

SILENCE_PERMISSION = "pimsync.silence_alert"
# How long an alert may be silenced: long enough for a planned outage, never for good.
SILENCE_CHOICES = [(1, "1 hour"), (4, "4 hours"), (24, "1 day"), (72, "3 days"), (168, "1 week")]


class SilenceForm(forms.Form):
    hours = forms.TypedChoiceField(label="For", choices=SILENCE_CHOICES, coerce=int, initial=4)
    why = forms.CharField(
        max_length=255,
        widget=forms.TextInput(attrs={"size": 60, "placeholder": "e.g. AEM maintenance until 18:00"}),
        help_text="Shown on the alert list, with your name and until when.",
    )


class AlertAdmin(MachineWrittenAdmin):
    list_display = ("state", "title", "summary", "opened_at", "resolved_at", "messages", "silenced")
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
        "silenced",
    )
    readonly_fields = fields

    class Media:
        css = {"all": ["dashboard/dashboard.css"]}

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("silenced_by")

    def get_list_display(self, request):
        """Those who may silence get a column to do it (the view checks the permission again)."""
        shown = super().get_list_display(request)
        return (*shown, "silence_link") if request.user.has_perm(SILENCE_PERMISSION) else shown

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/silence/", view(self.silence_view), name="pimsync_alert_silence"),
            path("<int:pk>/unsilence/", view(require_POST(self.unsilence_view)), name="pimsync_alert_unsilence"),
            *super().get_urls(),
        ]

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

    @admin.display(description="silenced")
    def silenced(self, alert) -> str:
        if not alert.is_silenced(timezone.now()):
            return "—"
        return format_html(
            '<span class="silenced">until {} UTC by {}: {}</span>',
            f"{alert.silenced_until:%Y-%m-%d %H:%M}",
            alert.silenced_by or "—",
            alert.silenced_why,
        )

    @admin.display(description="")
    def silence_link(self, alert) -> str:
        url = reverse("admin:pimsync_alert_silence", args=[alert.pk])
        if alert.is_silenced(timezone.now()):
            return format_html('<a href="{}">End the silence…</a>', url)
        return format_html('<a href="{}">Silence…</a>', url) if alert.is_open else ""

    @admin.display(description="shown on")
    def shown_on(self, alert) -> str:
        url = link_of(alert)
        return format_html('<a href="{}">{}</a>', url, url)

    def silence_view(self, request, pk):
        """Silence an alert for a while (who, until when, why): GET the form, POST it."""
        if not request.user.has_perm(SILENCE_PERMISSION):
            raise PermissionDenied
        alert = get_object_or_404(Alert, pk=pk)
        form = SilenceForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            until = timezone.now() + timedelta(hours=form.cleaned_data["hours"])
            alert.silence(request.user, until, form.cleaned_data["why"].strip())
            self.message_user(
                request,
                f"“{TITLES.get(alert.condition, alert.condition)}” sends no message until {until:%Y-%m-%d %H:%M} UTC.",
            )
            return HttpResponseRedirect(reverse("admin:pimsync_alert_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Silence “{TITLES.get(alert.condition, alert.condition)}”",
            "alert": alert,
            "form": form,
            "silenced": alert.is_silenced(timezone.now()),
            "opts": self.opts,
        }
        return TemplateResponse(request, "admin/pimsync/alert/silence.html", context)

    def unsilence_view(self, request, pk):
        """End a silence now (POST): messages not yet sent go out at the next check."""
        if not request.user.has_perm(SILENCE_PERMISSION):
            raise PermissionDenied
        alert = get_object_or_404(Alert, pk=pk)
        alert.unsilence()
        self.message_user(request, "The silence has ended: the next check sends what is still due.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:pimsync_alert_changelist"))
