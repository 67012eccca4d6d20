"""`access-log`: CPU per gunicorn access record with `deploy/gunicorn.conf.py`'s JSON formatter,
gunicorn's own logger against pimsync's `AccessLogger`, in this process, written to /dev/null.

A signed single-event delivery's request headers, as the webhook receives them; the process's
own CPU clock, so the figure holds on a busy machine."""

from __future__ import annotations

import os
import runpy
import time
from datetime import timedelta
from types import SimpleNamespace

from gunicorn.config import Config
from gunicorn.glogging import Logger

from bench.report import note, report
from pimsync.gunicorn_logging import AccessLogger

RECORDS = 20_000
HEADERS = [
    ("HOST", "pimsync.example.com"),
    ("USER-AGENT", "Adobe/1.0"),
    ("CONTENT-TYPE", "application/cloudevents+json; charset=UTF-8"),
    ("CONTENT-LENGTH", "900"),
    ("X-ADOBE-DIGITAL-SIGNATURE-1", "a" * 344),
    ("X-ADOBE-DIGITAL-SIGNATURE-2", "b" * 344),
    ("X-ADOBE-PUBLIC-KEY1-PATH", "/prod/keys/pub-key-1.pem"),
    ("X-ADOBE-PUBLIC-KEY2-PATH", "/prod/keys/pub-key-2.pem"),
    ("X-ADOBE-DELIVERY-ID", "d" * 36),
    ("X-ADOBE-EVENT-CODE", "aem.assets.asset.processing_completed"),
    ("X-ADOBE-EVENT-ID", "e" * 36),
]


def _logger(cls, logconfig: dict, devnull):
    config = Config()
    config.set("logconfig_dict", logconfig)
    logger = cls(config)
    for handler in logger.access_log.handlers:
        handler.setStream(devnull)
    return logger


def _microseconds_per_record(logger) -> float:
    environ = {
        "REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "POST", "PATH_INFO": "/webhooks/aem", "QUERY_STRING": "",
        "RAW_URI": "/webhooks/aem", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
        "wsgi.url_scheme": "http", **{"HTTP_" + name.replace("-", "_"): value for name, value in HEADERS},
    }  # fmt: skip
    request = SimpleNamespace(headers=HEADERS)
    response = SimpleNamespace(status="200 OK", sent=33, headers=[("Content-Type", "application/json")])
    began = time.process_time()
    for _ in range(RECORDS):
        logger.access(response, request, environ, timedelta(microseconds=4200))
    return (time.process_time() - began) / RECORDS * 1e6


def access_log(stack) -> None:
    logconfig = runpy.run_path("deploy/gunicorn.conf.py")["logconfig_dict"]
    with open(os.devnull, "w") as devnull:
        gunicorns, ours = [], []
        for _ in range(3):  # alternated: the machine's speed drifts
            gunicorns.append(_microseconds_per_record(_logger(Logger, logconfig, devnull)))
            ours.append(_microseconds_per_record(_logger(AccessLogger, logconfig, devnull)))
    report("cpu.access_record_us, gunicorn's logger", min(gunicorns), "(info)", None, "µs")
    report("cpu.access_record_us, AccessLogger", min(ours), "(info)", None, "µs")
    note(f"{RECORDS:,} records each, three alternated rounds, the least CPU of each; to /dev/null")
