"""Adobe I/O Events Journaling API: one page of a registration's journal
(https://developer.adobe.com/events/docs/guides/api/journaling-api/; docs/adobe-events.md).

A page is a GET with the Server-to-Server token; the answer says where to go next in a `Link`
header whose URIs are root-relative, so they are resolved against the request URL. Only links to
the origin of ADOBE_JOURNAL_URL are followed, and only their path and query are taken: a journal
that pointed elsewhere would otherwise receive our token at a host we never configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from pimsync.adobe import ims
from pimsync.outbound import http
from pimsync.outbound.redaction import UnsafeLink, follow, origin

ACCEPT = "application/vnd.adobecloud.events+json"
# Adobe caps a journal page at 1.5 MB; a larger answer is not the journal's.
MAX_PAGE_BYTES = 2 * 1024 * 1024
# A page of 1.5 MB cannot hold more events than this (each carries an envelope of ~300 bytes).
MAX_PAGE_EVENTS = 5000
# A Link header carries two or three links of a few hundred characters.
MAX_LINK_HEADER_CHARS = 16 * 1024
MAX_POSITION_CHARS = 1024


class JournalError(http.HttpError):
    """A journal answer pimsync cannot use (wrong shape, a link to another host)."""


@dataclass
class Page:
    """One answer of the journal: its status, events (position, event), and what to do next."""

    status: int
    url: str
    entries: list[tuple[str, dict]] = field(default_factory=list)
    last: str = ""
    next_url: str = ""
    # A 204's `validate` link (Adobe's answers carry one beside `next`); "" without one.
    validate_url: str = ""
    retry_after: float | None = None


def parse_links(header: str) -> dict[str, str]:
    """`<uri>; rel="next", <uri>; rel="validate"` → {rel: uri}; one pass, linear in the header's length."""
    links: dict[str, str] = {}
    if len(header) > MAX_LINK_HEADER_CHARS:
        return links
    i, n = 0, len(header)
    while i < n:
        start = header.find("<", i)
        end = header.find(">", start + 1) if start >= 0 else -1
        if end < 0:
            break
        target = header[start + 1 : end]
        # The link's parameters run to the next comma outside a quoted string.
        j, quoted = end + 1, False
        while j < n and (quoted or header[j] != ","):
            if header[j] == '"':
                quoted = not quoted
            j += 1
        for param in header[end + 1 : j].split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "rel":
                for rel in value.strip().strip('"').split():
                    links.setdefault(rel.lower(), target)
        i = j + 1
    return links


def resolve(link: str, base: str) -> str:
    """`link` resolved against `base` onto the journal's own origin; refused when it leads elsewhere."""
    try:
        return follow(link, base, settings.ADOBE_JOURNAL_URL)
    except UnsafeLink as exc:
        raise JournalError(
            f"the journal's next link is unsafe: {exc}; refusing to follow it",
            retryable=False,
            error_class="journal_link",
        ) from None


def fetch(url: str) -> Page:
    """GET one page of the journal (200, 204, 410 or 429); raise HttpError for anything else."""
    if origin(url) != origin(settings.ADOBE_JOURNAL_URL):
        raise JournalError("refusing to pull a journal URL on another host", retryable=False, error_class="journal")
    token = ims.get_token()
    try:
        response = _get(url, token)
    except http.HttpError as exc:
        if exc.status != 401:
            raise
        ims.invalidate(token)  # revoked early: one new token, one more try
        response = _get(url, ims.get_token())
    page = Page(status=response.status_code, url=url)
    page.retry_after = http.parse_retry_after(response.headers.get("retry-after"))
    links = parse_links(response.headers.get("Link", ""))
    page.next_url = resolve(links["next"], url) if links.get("next") else ""
    if page.status == 204 and links.get("validate"):
        page.validate_url = resolve(links["validate"], url)
    if page.status == 200:
        _read_events(page, response)
    return page


def validate(url: str) -> int:
    """The status the journal's `validate` link answers (Adobe documents the link, not its answers)."""
    token = ims.get_token()
    return _get(url, token, expected=tuple(range(200, 600))).status_code


def _get(url: str, token: str, expected=(200, 204, 410, 429)):
    headers = {
        "Authorization": f"Bearer {token}",
        "x-api-key": settings.ADOBE_CLIENT_ID,
        "x-ims-org-id": settings.ADOBE_IMS_ORG_ID,
        "Accept": ACCEPT,
    }
    return http.request("GET", url, expected=expected, headers=headers, error_class="journal")


def _read_events(page: Page, response) -> None:
    """Check the page's shape and size; fill `entries` and `last`."""

    def bad(why: str) -> JournalError:
        return JournalError(
            f"the journal answered a page pimsync cannot read: {why}",
            retryable=True,
            status=200,
            error_class="journal_shape",
        )

    if len(response.content) > MAX_PAGE_BYTES:
        raise bad(f"it is larger than {MAX_PAGE_BYTES // (1024 * 1024)} MB")
    body = http.json_object(response, who="the journal", error_class="journal_shape", retryable=True)
    events = body.get("events", [])
    page_info = body.get("_page") if isinstance(body.get("_page"), dict) else {}
    if not isinstance(events, list) or len(events) > MAX_PAGE_EVENTS:
        raise bad(f"`events` is not a list of at most {MAX_PAGE_EVENTS} entries")
    for index, entry in enumerate(events):
        position = entry.get("position") if isinstance(entry, dict) else None
        if not isinstance(position, str) or not isinstance(entry.get("event"), dict):
            raise bad(f"entry [{index}] has no position or no event object")
        page.entries.append((position, entry["event"]))
    last = page_info.get("last") or (page.entries[-1][0] if page.entries else "")
    if not isinstance(last, str) or len(last) > MAX_POSITION_CHARS:
        raise bad("`_page.last` is not a position")
    page.last = last
