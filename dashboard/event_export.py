"""The event list as CSV, for a support ticket: the rows the list's filters and search select, in
the list's order, bounded, without payloads, safe to open in a spreadsheet."""

from __future__ import annotations

import csv

from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.utils import formats, timezone

from pimsync import selection

# A ticket needs examples, not the table: the newest rows up to this many.
MAX_ROWS = 5_000
COLUMNS = (
    ("event id", "event_id"),
    ("received at", "received_at"),
    ("finished at", "finished_at"),
    ("status", "status"),
    ("type", "type"),
    ("arrived by", "arrived_by"),
    ("asset id", "asset_id"),
    ("asset name", "asset_name"),
    ("asset path", "asset_path"),
    ("product key", "product_key"),
    ("attempts", "attempts"),
    ("error class", "error_class"),
    ("reason", "reason"),
)
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection, see
# https://owasp.org/www-community/attacks/CSV_Injection); a leading ' makes it text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value) -> str:
    """One value as text a spreadsheet shows and never runs: times as every page shows them."""
    if value is None:
        return ""
    if hasattr(value, "tzinfo"):
        return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def export(request, model_admin) -> HttpResponse:
    """GET with the list's query string: its rows as a CSV download, or 400 for a filter the list
    does not offer (as the list itself answers)."""
    try:
        events = selection.select(request.GET)
    except selection.SelectionError as exc:
        context = {
            **model_admin.admin_site.each_context(request),
            "title": "Not understood",
            "error": f"This filter is not understood: {exc}. Nothing was exported.",
            "opts": model_admin.opts,
        }
        return TemplateResponse(request, "admin/pimsync/not_understood.html", context, status=400)
    rows = events.defer("payload").order_by("-received_at", "-id")[:MAX_ROWS]
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="pimsync-events-{timezone.now():%Y%m%d-%H%M}.csv"'
    writer = csv.writer(response)
    writer.writerow([title for title, _ in COLUMNS])
    for event in rows:
        writer.writerow([cell(getattr(event, name)) for _, name in COLUMNS])
    return response
