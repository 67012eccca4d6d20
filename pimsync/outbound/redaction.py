"""URLs as they may be shown (without credentials, or with every credential-like part starred),
their origin as the HTTP client will read it, and links from an answer made safe to follow.

A leaf module (it imports nothing of ours), so the models, the checks and the HTTP base can all
use it without importing one another.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

# Query parameters whose values are starred in anything shown (a substring of the name, any case).
SECRET_PARAMETER_WORDS = ("token", "key", "secret", "password", "passwd", "pwd", "auth", "sig", "credential")


def without_credentials(url: str) -> str:
    """The URL without its user:password@ part (for links a browser follows)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def redact_url(url: str) -> str:
    """The URL as it may appear in a message, reason, log or attempt: user:password@ and the values
    of query parameters named like credentials (token, key, secret, password…) become ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(_secret_name(name) for name, _ in pairs):
        query = urlencode([(name, "***" if _secret_name(name) else value) for name, value in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_PARAMETER_WORDS)


def origin(url: str) -> str:
    """`scheme://host[:port]` (lower case, no default port, no credentials) as urllib3 reads the URL,
    or "" for one it cannot read or that has no scheme and host.

    urllib3 is the parser that decides where `requests` connects; the standard library's `urlsplit`
    reads some URLs differently (`http://a:1\\@b:2/` is `b:2` to it and `a:1` to urllib3), so an
    origin compared with `urlsplit` can pass a URL that then goes to another host."""
    try:
        parts = parse_url(url)
    except (LocationParseError, ValueError):
        return ""
    if not parts.scheme or not parts.host:
        return ""
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{parts.host}{port}".lower()


class UnsafeLink(ValueError):
    """A link from an answer that pimsync will not follow; the message says why (never the link's credentials)."""


def follow(link: str, current: str, configured: str) -> str:
    """The URL to request for `link` (found in an answer to `current`): on `configured`'s origin,
    its scheme and host taken from `configured` and only the link's path and query kept; UnsafeLink
    for a link to another origin or one the two URL parsers could read differently."""
    if "\\" in link or any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in link):
        raise UnsafeLink("the link holds a backslash, white space or a control character")
    resolved = urljoin(current, link)
    where, expected = origin(resolved), origin(configured)
    if not where or where != expected:
        raise UnsafeLink(f"the link leads to {where or 'an unreadable address'}, not to {expected}")
    parts = urlsplit(resolved)
    if "@" in parts.netloc or parse_url(resolved).auth:
        raise UnsafeLink("the link carries a user name or password")
    base = urlsplit(configured)
    return urlunsplit((base.scheme, base.netloc, parts.path or "/", parts.query, ""))
