"""Patterns that mapping editors type: the product-key regex and the path/type globs.

They run on asset names, paths and metadata for every event, and in the dashboard's preview,
so they run on RE2 (https://github.com/google/re2/wiki/Syntax), whose matching time grows
linearly with the text whatever the pattern; Python's `re` backtracks and a pattern such as
`(a|aa)*b` can keep it busy for hours. RE2 has no lookaround and no backreferences.

This module imports nothing of pimsync's, so the models can validate with it.
"""

from __future__ import annotations

import functools
import re

import re2

# AEM metadata property names: `dc:title`, `wknd-skuid`, `pim:sku`, `xmp:Rating`; a leading `/`
# (JSON Pointer style) is accepted as Adobe's own samples use both forms in the metadata PATCH:
# the Experience League "Assets PIM integration" tutorial writes `wknd-skuid`, the "OpenAPI with
# OAuth Web App" tutorial writes `/pim:sku`.
# No nested repetition: `re` runs it in linear time.
PROPERTY_NAME = re.compile(r"/?[A-Za-z_][A-Za-z0-9_.\-]*(?::[A-Za-z_][A-Za-z0-9_.\-]*)?")
# Properties AEM owns; writing them would fail or corrupt the asset.
READ_ONLY_PREFIXES = ("repo:", "jcr:", "dam:sha1", "tiff:", "aem:")

# Lookaround `(?=` `(?!` `(?<=` `(?<!` and backreferences `\1` `(?P=name)` `\k<name>`: Perl and
# Python have them, RE2 cannot have them and stay linear.
_PERL_ONLY = re.compile(r"\(\?<?[=!]|\(\?P=|\\[1-9]|\\k<")
UNSUPPORTED = "RE2 (linear-time) does not support lookahead/lookbehind or backreferences"


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the message says why, for the person who typed it."""


def _options() -> re2.Options:
    options = re2.Options()
    # A bad pattern is the editor's mistake, shown in the form; it is not worth a log line.
    options.log_errors = False
    return options


def compile_regex(pattern: str):
    """The RE2 program for `pattern`, or PatternError with a message fit for a form.

    `re2.compile` keeps the last 128 programs (each within RE2's 8 MiB budget), so the worker
    compiles a rule's pattern once and patterns tried in the preview do not pile up."""
    try:
        return re2.compile(pattern, _options())
    except UnicodeEncodeError:
        raise PatternError("not a valid regular expression: it holds characters that are not Unicode text") from None
    except re2.error as exc:
        detail = exc.args[0] if exc.args else ""
        detail = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        if _PERL_ONLY.search(pattern):
            raise PatternError(f"{UNSUPPORTED}: {detail}") from None
        if "\\Z" in detail:
            detail += " (RE2 writes the end of the text as \\z)"
        raise PatternError(f"not a valid regular expression (RE2 syntax): {detail}") from None


def key_pattern_problem(pattern: str) -> str:
    """Why `pattern` cannot be a product-key pattern, or "" when it can."""
    try:
        compiled = compile_regex(pattern)
    except PatternError as exc:
        return str(exc)
    if compiled.groups and "key" not in compiled.groupindex:
        return "a pattern with groups must name one of them `key`: (?P<key>…)"
    return ""


def _glob_class(glob: str, start: int) -> tuple[str, int] | None:
    """The RE2 class for the `[...]` that opens at `start`, and where it ends; None if unclosed.

    Same reading as `fnmatch`: `!` negates, a `]` right after the opening (or `!`) is a member,
    `a-z` is a range and a reversed range matches nothing."""
    j = start + 1
    if j < len(glob) and glob[j] == "!":
        j += 1
    if j < len(glob) and glob[j] == "]":
        j += 1
    while j < len(glob) and glob[j] != "]":
        j += 1
    if j >= len(glob):
        return None
    body = glob[start + 1 : j]
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    members, k = [], 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            low, high = body[k], body[k + 2]
            if low <= high:
                members.append(f"\\x{{{ord(low):x}}}-\\x{{{ord(high):x}}}")
            k += 3
        else:
            members.append(f"\\x{{{ord(body[k]):x}}}")
            k += 1
    if not members:
        # `[!]` is any character, `[]`-like empty sets (only reversed ranges) match nothing.
        return ("(?s:.)" if negate else "[^\\x00-\\x{10ffff}]"), j + 1
    return f"[{'^' if negate else ''}{''.join(members)}]", j + 1


@functools.lru_cache(maxsize=256)
def glob_regex(glob: str):
    """`glob` (fnmatch syntax: `*`, `?`, `[...]`, case-sensitive) as an RE2 full-match program.

    Kept per glob: every rule's globs are matched against every asset, and even a hit in RE2's
    own cache builds its options and their key first (a few percent of a worker's CPU)."""
    return compile_regex(_glob_source(glob))


@functools.lru_cache(maxsize=256)
def _glob_source(glob: str) -> str:
    parts, i = [], 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            if not parts or parts[-1] != ".*":
                parts.append(".*")
            i += 1
        elif char == "?":
            parts.append(".")
            i += 1
        elif char == "[" and (found := _glob_class(glob, i)) is not None:
            part, i = found
            parts.append(part)
        else:
            parts.append(char if char.isalnum() and char.isascii() else f"\\x{{{ord(char):x}}}")
            i += 1
    return f"(?s:{''.join(parts)})"


def _subject(text: str) -> str:
    # JSON can carry lone surrogates (`\ud800` in a string), which UTF-8 (and so RE2) cannot hold.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def search_key(pattern: str, text: str) -> str | None:
    """The product key `pattern` finds in `text`: its group `key`, else the whole match; None if none."""
    compiled = compile_regex(pattern)
    match = compiled.search(_subject(text))
    if match is None:
        return None
    return match.group("key") if "key" in compiled.groupindex else match.group(0)


def glob_matches(glob: str, text: str) -> bool:
    """Whether all of `text` matches `glob`, as `fnmatch.fnmatchcase` would say, in linear time."""
    return glob_regex(glob).fullmatch(_subject(text)) is not None
