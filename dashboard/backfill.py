"""The Assets page's backfill upload: a CSV of assets pimsync has never seen (AEM's metadata export
or asset_id,path), registered and re-synced by `pimsync.backfill`, as `manage.py backfill` does;
the page shows the rows skipped, by line, and links the re-sync jobs."""

from __future__ import annotations

from django import forms
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse

from pimsync import backfill
from pimsync.models import Asset

RESYNC_PERMISSION = "pimsync.resync_asset"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# Paths looked up in AEM within one request (four at a time); a larger export is the command's job.
MAX_LOOKUPS = 1000
# The upload holds a web thread while AEM answers: after this long no lookup starts or waits for
# AEM's Retry-After, and the rows left are reported to be run again (a lookup under way still
# ends within PIMSYNC_HTTP_TIMEOUT_SECONDS).
UPLOAD_SECONDS = 20.0
SHOWN_PROBLEMS = 500


class BackfillForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="AEM's metadata export (first column assetPath) or a CSV with the header asset_id,path; "
        "at most 10 MB.",
    )
    dry_run = forms.BooleanField(required=False, label="Only check: look the assets up, register nothing")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(f"The file is {upload.size // (1024 * 1024)} MB; at most 10 MB is accepted.")
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise forms.ValidationError(
                f"The file is not UTF-8 text (byte {exc.start}); export the CSV as UTF-8."
            ) from None


def upload(request, admin_site):
    """GET: the form; POST: run the backfill and show its report."""
    if not request.user.has_perm(RESYNC_PERMISSION):
        raise PermissionDenied
    form = BackfillForm(request.POST or None, request.FILES or None)
    report, error = None, ""
    if request.method == "POST" and form.is_valid():
        name = request.FILES["file"].name
        try:
            report = backfill.run_csv(
                form.cleaned_data["file"],
                name,
                dry_run=form.cleaned_data["dry_run"],
                max_lookups=MAX_LOOKUPS,
                time_limit=UPLOAD_SECONDS,
                user=request.user,
            )
        except backfill.BackfillError as exc:
            error = f"Nothing was registered: {exc}."
    context = {
        **admin_site.each_context(request),
        "title": "Backfill assets",
        "opts": Asset._meta,
        "form": form,
        "error": error,
        "report": report,
        "problems": report.problems[:SHOWN_PROBLEMS] if report else [],
        "hidden_problems": max(0, len(report.problems) - SHOWN_PROBLEMS) if report else 0,
        "max_lookups": MAX_LOOKUPS,
        "upload_seconds": int(UPLOAD_SECONDS),
    }
    return TemplateResponse(request, "admin/pimsync/asset/backfill.html", context, status=400 if error else 200)
