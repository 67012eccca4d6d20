"""URLs as they may be shown: without credentials, or with every credential-like part starred.

A leaf module (it imports nothing of ours), so the models, the checks and the HTTP base can all
use it without importing one another.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
