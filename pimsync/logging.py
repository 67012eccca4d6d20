"""One JSON object per log line, carrying the event id when the caller passes one; gunicorn's
access log as the same lines (its records made by `pimsync.gunicorn_logging.AccessLogger`)."""

import json
import logging
from datetime import UTC, datetime

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


class AccessJsonFormatter(logging.Formatter):
    """gunicorn's access log as the same JSON lines (deploy/gunicorn.conf.py uses it).

    gunicorn passes its "atoms" as the record's arguments (`pimsync.gunicorn_logging.AccessLogger`
    gives only these); only the fields below are written, so no header (Authorization, cookies)
    and no user name ever reach the log.
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
