"""An answer's header block read the way the standard library reads it, without running the
e-mail parser on the usual case.

`http.client` (under urllib3 and requests) parses every answer's headers with `email.parser`: a
feed parser built for mail messages, which was 30% of the client's CPU per call in a py-spy
profile of one thread calling a stand-in (5% of an enrichment's, three calls each, in a profile
of the worker; answers with more headers than the stand-ins' cost more).
Here a block whose every line is plainly `Name: value` becomes the same `HTTPMessage` through the
e-mail package's own public steps (`Compat32.header_source_parse`, `Message.set_raw`); anything
else (folded lines, a line without a name, a stray CR, a `From ` line, a multipart or message/*
Content-Type, whose body that parser reads as parts) goes to `email.parser` exactly as before,
so odd or hostile answers get the standard library's reading and its defects. The tests compare
both readings on generated header blocks.

`Response` is `http.client.HTTPResponse` with its own `begin()` code run against this module's
`parse_headers`; the connections of `pimsync.outbound.http` use it, no one else does.
"""

from __future__ import annotations

import email.parser
import http.client
import re
import types

# One whole header line as the e-mail parser reads it without a defect: a name of printable ASCII
# but ':' (its `headerRE`), the colon, a value without CR or LF (it splits lines on either), the end.
_PLAIN_LINE = re.compile(r"[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r?\n")


def parse_headers(fp, _class=http.client.HTTPMessage) -> http.client.HTTPMessage:
    """`http.client.parse_headers`, with the plain case read line by line."""
    # http.client's own reading of the lines, with its limits on their length and number.
    lines = [line.decode("iso-8859-1") for line in http.client._read_headers(fp)]
    *fields, end = lines
    # A `From ` line (mail's envelope) never matches: its name would hold a space.
    if end in ("\r\n", "\n") and all(_PLAIN_LINE.fullmatch(line) for line in fields):
        message = _class()
        for line in fields:
            message.set_raw(*message.policy.header_source_parse([line]))
        # The e-mail parser reads a multipart or message/* type's body as parts (and notes a
        # missing boundary as a defect, which urllib3 logs): those blocks are left to it.
        if message.get_content_maintype() not in ("multipart", "message"):
            message.set_payload("")  # what the e-mail parser leaves after the blank line
            return message
    return email.parser.Parser(_class=_class).parsestr("".join(lines))


def _begin_with(parse):
    """`HTTPResponse.begin` calling `parse` for the headers, or the standard one if its code does
    not read them through `parse_headers`, or http.client has no `_read_headers` (another Python
    version)."""
    begin = http.client.HTTPResponse.begin
    code = begin.__code__
    if "parse_headers" not in code.co_names or code.co_freevars or not hasattr(http.client, "_read_headers"):
        return begin
    # A copy of http.client's globals with `parse` for its parse_headers; the functions begin()
    # calls through it (_read_headers for a 100 Continue's headers) still read http.client's own.
    scope = {**vars(http.client), "parse_headers": parse}
    return types.FunctionType(code, scope, begin.__name__, begin.__defaults__)


class Response(http.client.HTTPResponse):
    begin = _begin_with(parse_headers)
