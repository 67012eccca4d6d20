"""Answers' headers read without the e-mail parser: the standard library's reading, on generated
header blocks (hostile ones included). That every outbound call reads its answer with it is
tested with the other calls, in test_http_client.py."""

from __future__ import annotations

import http.client
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimsync.outbound import headers

# Pieces of header lines, the awkward ones included: a space or tab first (a folded line), no
# name, a space in the name, a stray CR, a LF alone, "From " (mail's envelope), Latin-1 bytes,
# content types the e-mail parser reads differently.
PIECES = [
    b"Content-Type",
    b"X-Request-Id",
    b"ETag",
    b"From ",
    b"From",
    b":",
    b": ",
    b" ",
    b"\t",
    b"\r",
    b"\n",
    b"value",
    b'"7"',
    b"\xe9\xff",
    b"a=b; c=d",
    b"",
    # The e-mail parser reads these types' bodies as parts, and notes what is missing as defects.
    b"multipart/mixed",
    b"message/rfc822",
    b"; boundary=X",
    b"text/plain",
]
LINE = st.lists(st.sampled_from(PIECES), max_size=6).map(b"".join)
ENDING = st.sampled_from([b"\r\n", b"\n"])


def reading(parse, raw: bytes):
    """What `parse` makes of `raw`, and what it leaves unread."""
    stream = io.BytesIO(raw)
    try:
        message = parse(stream)
    except http.client.HTTPException as error:
        return type(error), str(error)
    defects = [(type(d), str(d)) for d in message.defects]
    payload = message.get_payload()
    if message.is_multipart():
        payload = [part.items() for part in payload]
    return message.items(), defects, payload, message.is_multipart(), message.get_unixfrom(), stream.read()


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(LINE, ENDING), max_size=12), st.sampled_from([b"\r\n", b"\n", b""]), st.binary(max_size=8))
def test_any_header_block_reads_as_the_standard_library_reads_it(lines, end, body):
    raw = b"".join(line + ending for line, ending in lines) + end + body
    assert reading(headers.parse_headers, raw) == reading(http.client.parse_headers, raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'Content-Type: application/json\r\nContent-Length: 2\r\nETag: "7"\r\nX-Empty:\r\n\r\n{}',
        b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",  # a name twice keeps both
        b"X-Folded: one\r\n two\r\n\r\n",  # a folded line: the e-mail parser's reading
        b": no name\r\nX-A: 1\r\n\r\n",
        b"X-A: 1\r\nnot a header\r\nX-B: 2\r\n\r\n",
        b"X-A: 1\rX-B: 2\r\n\r\n",
        b"From someone\r\nX-A: 1\r\n\r\n",
        b"X-A: 1\r\n",  # the stream ends before the blank line
        b"Content-Type: multipart/byteranges; boundary=X\r\n\r\n",  # a 206's, read as parts
        b"Content-Type: multipart/mixed\r\n\r\n",  # no boundary: a defect
        b"Content-Type: message/rfc822\r\n\r\nX-Inner: 1\r\n\r\n",
    ],
)
def test_plain_and_odd_blocks_read_as_the_standard_library_reads_them(raw):
    assert reading(headers.parse_headers, raw) == reading(http.client.parse_headers, raw)


def test_the_limits_on_lines_and_their_number_are_the_standard_librarys(monkeypatch):
    too_many = b"".join(b"X-%d: 1\r\n" % n for n in range(101)) + b"\r\n"
    too_long = b"X-Long: " + b"a" * 65536 + b"\r\n\r\n"
    for raw in (too_many, too_long):
        assert reading(headers.parse_headers, raw) == reading(http.client.parse_headers, raw)
        assert reading(headers.parse_headers, raw)[0] in (http.client.HTTPException, http.client.LineTooLong)
    # Raised where http.client's own is raised (a known workaround for servers sending more).
    monkeypatch.setattr(http.client, "_MAXHEADERS", 200)
    assert reading(headers.parse_headers, too_many) == reading(http.client.parse_headers, too_many)
    assert len(reading(headers.parse_headers, too_many)[0]) == 101
