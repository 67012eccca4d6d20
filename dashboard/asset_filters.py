"""Which assets a query string of the dashboard's Assets list selects, and the re-sync selection
(`pimsync.resync.select`) that names the same assets.

The list's filters (state, product key, path prefix) and its search box are the only ways to
select assets. Anything else in a query string is refused, not ignored: every declared lookup is
served by an index of `Asset` (exact, or a prefix `LIKE 'x%'`), and a lookup the list does not
offer could scan a million rows.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import QueryDict

from pimsync.models import SyncState
from pimsync.selection import MAX_SEARCH_LENGTH, PRESENTATION_PARAMS

STATE, PRODUCT_KEY, PREFIX, SEARCH = "state__exact", "product_key", "path__startswith", "q"
FILTER_PARAMS = frozenset({STATE, PRODUCT_KEY, PREFIX})
# Longest value of an indexed column (Asset.path); a longer filter value cannot match anything.
MAX_VALUE_LENGTH = 1024


class FilterError(ValueError):
    """A query string the Assets list does not understand; the message says which part."""


def check(params: QueryDict) -> dict[str, str]:
    """The filters and search term given (name → value), or FilterError."""
    unknown = sorted(set(params) - FILTER_PARAMS - PRESENTATION_PARAMS - {SEARCH})
    if unknown:
        raise FilterError(f"the Assets list has no filter {', '.join(unknown)[:200]}")
    given = {}
    for name in (*sorted(FILTER_PARAMS), SEARCH):
        values = params.getlist(name)
        if len(values) > 1:
            raise FilterError(f"{name} is given {len(values)} times")
        if values and values[0].strip():
            given[name] = values[0].strip() if name == SEARCH else values[0]
    if STATE in given and given[STATE] not in SyncState.values:
        raise FilterError(f"{STATE}={given[STATE][:40]!r} is not one of: {', '.join(SyncState.values)}")
    if PREFIX in given and not given[PREFIX].startswith("/"):
        raise FilterError(f"a path prefix starts with /, e.g. /content/dam/products/ (not {given[PREFIX][:40]!r})")
    if len(given.get(SEARCH, "")) > MAX_SEARCH_LENGTH:
        raise FilterError(f"the search term is longer than {MAX_SEARCH_LENGTH} characters")
    if any(len(value) > MAX_VALUE_LENGTH for value in given.values()):
        raise FilterError(f"a filter value is longer than {MAX_VALUE_LENGTH} characters")
    return given


def search(queryset: QuerySet, term: str) -> QuerySet:
    """The search box: name, path or product key by prefix, asset id exactly; each lookup is
    served by its own index (Asset.Meta.indexes)."""
    term = term.strip()
    if not term:
        return queryset
    return queryset.filter(
        Q(asset_id=term) | Q(name__startswith=term) | Q(path__startswith=term) | Q(product_key__startswith=term)
    )


def resync_spec(params: QueryDict) -> dict:
    """The re-sync selection naming the assets the list shows for these filters (each filter a key
    of the selection, the assets matching all of them), or FilterError for a search."""
    given = check(params)
    if SEARCH in given:
        raise FilterError("a search cannot be re-synced as a whole: tick the assets found, or use the filters")
    spec = {}
    if STATE in given:
        spec["state"] = given[STATE]
    if PREFIX in given:
        spec["path_prefix"] = given[PREFIX]
    if PRODUCT_KEY in given:
        spec["product_keys"] = [given[PRODUCT_KEY]]
    return spec or {"all": True}


def filters_only(params: QueryDict) -> str:
    """The part of the list's query string that selects assets (its filters and search)."""
    kept = params.copy()
    for name in PRESENTATION_PARAMS:
        kept.pop(name, None)
    return kept.urlencode()
