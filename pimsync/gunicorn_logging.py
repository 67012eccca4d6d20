"""gunicorn's logger for pimsync's web processes (`logger_class` in deploy/gunicorn.conf.py): its
own module, so that only gunicorn imports gunicorn (Django's settings load `pimsync.logging` in
every process)."""

from gunicorn.glogging import Logger


class AccessLogger(Logger):
    """gunicorn's logger, its access records holding only what `pimsync.logging.AccessJsonFormatter`
    writes.

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
