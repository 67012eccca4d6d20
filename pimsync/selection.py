"""Which events a query string of the dashboard's event list selects.

The list's filters (status, type, date received, error class, how it arrived, the retry that sent
them back) and its search box are the only ways to select events: the admin list, its "Retry all
failed matching this filter" and the background retry jobs all read them through this module, so a
job running later in a worker selects exactly what the user saw. Anything else in a query string is
refused, not ignored: a lookup the list does not offer could scan the payloads or run a regular
expression over every row.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import QueryDict
from django.utils import timezone

from pimsync.models import Arrival, Event, EventType, Status

ERROR_CLASSES = {
    "pim_not_found": "product not in the PIM",
    "pim": "PIM errors",
    "aem": "AEM errors",
    "ims": "IMS / credentials",
    "mapping": "mapping rules",
    "config": "configuration",
}
# Error classes matched exactly; the others are prefixes of a family (pim_http, aem_412, ...).
EXACT_ERROR_CLASSES = {"pim_not_found", "mapping", "config"}
TYPE_CHOICES = [*EventType.HANDLED, "other"]

# The list's filter parameters, as its list filters name them (see dashboard.admin.EventAdmin).
STATUS, TYPE, ERROR, SINCE, UNTIL, SEARCH, ARRIVED, RETRY_JOB = (
    "status__exact",
    "type",
    "error",
    "received_at__gte",
    "received_at__lt",
    "q",
    "arrived_by__exact",
    "retry_job",
)
FILTER_PARAMS = frozenset({STATUS, TYPE, ERROR, SINCE, UNTIL, ARRIVED, RETRY_JOB})
# The admin's own parameters (page, ordering, show all, popup, facets, error flag): they select nothing.
PRESENTATION_PARAMS = frozenset({"p", "o", "all", "_popup", "_to_field", "_facets", "e"})
MAX_SEARCH_LENGTH = 255  # the longest indexed column searched; a longer term cannot match


class SelectionError(ValueError):
    """A query string the event list does not understand."""


def by_type(queryset: QuerySet, value: str | None) -> QuerySet:
    """Events of one handled type, or of any other type ("other")."""
    if not value:
        return queryset
    if value == "other":
        return queryset.exclude(type__in=EventType.HANDLED)
    return queryset.filter(type=value)


def by_error(queryset: QuerySet, value: str | None) -> QuerySet:
    """Events whose last error is of one class, or of one family (pim, aem, ims)."""
    if not value:
        return queryset
    if value in EXACT_ERROR_CLASSES:
        return queryset.filter(error_class=value)
    return queryset.filter(error_class__startswith=value)


def by_retry_job(queryset: QuerySet, value: str | None) -> QuerySet:
    """The events a retry job sent back to the worker, wherever they are now."""
    if not value:
        return queryset
    return queryset.filter(retried_by_id=int(value))


def search(queryset: QuerySet, term: str) -> QuerySet:
    """The search box: asset name, path or product key by prefix, asset id or event id exactly."""
    term = term.strip()
    if not term:
        return queryset
    # Each lookup is exact or a prefix, so each one can use its index (see Event.Meta.indexes).
    return queryset.filter(
        Q(event_id=term)
        | Q(asset_id=term)
        | Q(asset_name__startswith=term)
        | Q(asset_path__startswith=term)
        | Q(product_key__startswith=term)
    )


def _one(params: QueryDict, name: str) -> str | None:
    values = params.getlist(name)
    if len(values) > 1:
        raise SelectionError(f"{name} is given {len(values)} times")
    return values[0] if values else None


def _moment(name: str, value: str):
    try:
        moment = Event._meta.get_field("received_at").to_python(value)
    except ValidationError:
        raise SelectionError(f"{name}={value[:40]!r} is not a date") from None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def check(query: str | QueryDict) -> QueryDict:
    """The query string as a QueryDict, or SelectionError saying which part is not understood."""
    params = query if isinstance(query, QueryDict) else QueryDict(query)
    unknown = sorted(set(params) - FILTER_PARAMS - PRESENTATION_PARAMS - {SEARCH})
    if unknown:
        raise SelectionError(f"the event list has no filter {', '.join(unknown)[:200]}")
    status, kind, error = _one(params, STATUS), _one(params, TYPE), _one(params, ERROR)
    if status is not None and status not in Status.values:
        raise SelectionError(f"{STATUS}={status[:40]!r} is not a status")
    if kind is not None and kind not in TYPE_CHOICES:
        raise SelectionError(f"{TYPE}={kind[:40]!r} is not an event type the list offers")
    arrived = _one(params, ARRIVED)
    if arrived is not None and arrived not in (Arrival.WEBHOOK, Arrival.JOURNAL, Arrival.RESYNC):
        raise SelectionError(f"{ARRIVED}={arrived[:40]!r} is not webhook, journal or resync")
    if error is not None and error not in ERROR_CLASSES:
        raise SelectionError(f"{ERROR}={error[:40]!r} is not an error class the list offers")
    for name in (SINCE, UNTIL):
        if (value := _one(params, name)) is not None:
            _moment(name, value)
    retry_job = _one(params, RETRY_JOB)
    if retry_job is not None and not (retry_job.isascii() and retry_job.isdigit() and len(retry_job) < 19):
        raise SelectionError(f"{RETRY_JOB}={retry_job[:40]!r} is not a job number")
    if len(_one(params, SEARCH) or "") > MAX_SEARCH_LENGTH:
        raise SelectionError(f"the search term is longer than {MAX_SEARCH_LENGTH} characters")
    return params


def select(query: str | QueryDict) -> QuerySet[Event]:
    """The events the list shows for this query string (without ordering); SelectionError for
    a filter the list does not offer or a value it does not understand."""
    params = check(query)
    events = Event.objects.all()
    if status := _one(params, STATUS):
        events = events.filter(status=status)
    if arrived := _one(params, ARRIVED):
        events = events.filter(arrived_by=arrived)
    events = by_type(events, _one(params, TYPE))
    events = by_error(events, _one(params, ERROR))
    events = by_retry_job(events, _one(params, RETRY_JOB))
    if since := _one(params, SINCE):
        events = events.filter(received_at__gte=_moment(SINCE, since))
    if until := _one(params, UNTIL):
        events = events.filter(received_at__lt=_moment(UNTIL, until))
    return search(events, _one(params, SEARCH) or "")


def filters_only(params: QueryDict) -> str:
    """The part of a list's query string that selects events (its filters and search)."""
    kept = params.copy()
    for name in PRESENTATION_PARAMS:
        kept.pop(name, None)
    return kept.urlencode()
