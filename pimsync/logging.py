"""One JSON object per log line, carrying the event id when the caller passes one; gunicorn's
access log as the same lines."""

import json
import logging
from datetime import UTC, datetime

from gunicorn.glogging import Logger as _GunicornLogger

# Attributes every LogRecord has; anything else was passed through `extra=` and is kept.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class AccessLogger(_GunicornLogger):
    """gunicorn's logger, its access records holding only what `AccessJsonFormatter` writes.

    gunicorn's own "atoms" add every request header, response header and environ variable to each
    record, Authorization and cookies included, and format the time for the Apache line: a third
    of the access log's CPU on a webhook delivery (py-spy, `python -m bench production`). Here no
    header is ever in the record, whatever formatter a deployment puts on it; a custom
    `access_log_format` naming other atoms gets "-" for them (gunicorn's own rule for a missing
    atom)."""

    def atoms(self, resp, req, environ, request_time) -> dict:
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        return {
            "h": environ.get("REMOTE_ADDR", "-"),
            "s": status,
            "m": environ.get("REQUEST_METHOD"),
            "U": environ.get("PATH_INFO"),
            "q": environ.get("QUERY_STRING"),
            "B": getattr(resp, "sent", None),
            "a": environ.get("HTTP_USER_AGENT", "-"),
            "M": request_time.seconds * 1000 + request_time.microseconds // 1000,
        }


class AccessJsonFormatter(logging.Formatter):
    """gunicorn's access log as the same JSON lines (deploy/gunicorn.conf.py uses it).

    gunicorn passes its "atoms" as the record's arguments (`AccessLogger` gives only these); only
    the fields below are written, so no header (Authorization, cookies) and no user name ever
    reach the log.
    """

    def format(self, record: logging.LogRecord) -> str:
        atoms = record.args if isinstance(record.args, dict) else {}

        def atom(key: str):
            value = atoms.get(key)
            return None if value in (None, "-") else value

        status = atom("s")
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": f"{atom('m')} {atom('U')} {status}",
            "method": atom("m"),
            "path": atom("U"),
            "query": atom("q") or "",
            "status": int(status) if str(status).isdigit() else status,
            "duration_ms": atom("M"),
            "bytes": atom("B"),
            "remote_addr": atom("h"),
            "user_agent": atom("a"),
        }
        return json.dumps(entry, default=str)
