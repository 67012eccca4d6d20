"""gunicorn settings for pimsync's web nodes: `gunicorn --config deploy/gunicorn.conf.py pimsync.wsgi`.

Run from the project root (the image's /app, the systemd unit's WorkingDirectory). Every value
can be overridden on the command line or with GUNICORN_CMD_ARGS; docs/deployment.md explains them.
"""

import os

# The address to listen on; only the reverse proxy (or the load balancer) should reach it.
bind = os.environ.get("PIMSYNC_BIND", "127.0.0.1:8000")
# Threads wait on the database while a request is served; 4 x 4 suits a 2-core node
# (docs/deployment.md, "Sizing and scaling out"). WEB_CONCURRENCY is gunicorn's own variable.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
threads = 4
# Adobe gives a webhook delivery 10 seconds; a request still running after 30 is stuck.
timeout = 30
graceful_timeout = 20
keepalive = 5
# Replace each worker process now and then (memory held by a long-lived process goes back).
max_requests = 5000
max_requests_jitter = 500
# The proxy's address, whose X-Forwarded-* headers gunicorn believes (its default: 127.0.0.1).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# One JSON object per line, like the application's own log (pimsync/logging.py): the access
# log on stdout, gunicorn's own messages on stderr. Neither propagates to the root logger, which
# Django configures with the same formatter: each line is written once. The logger class keeps
# request headers out of the access records altogether, and costs less per request. It replaces
# gunicorn's default class, so `--statsd-host` no longer switches to gunicorn's statsd logger:
# pimsync's own figures are at /metrics (docs/operations.md).
logger_class = "pimsync.gunicorn_logging.AccessLogger"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "pimsync.logging.JsonFormatter"},
        "access": {"()": "pimsync.logging.AccessJsonFormatter"},
    },
    "handlers": {
        "access": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stdout"},
        "error": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
    },
    "root": {"level": "INFO", "handlers": ["error"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    },
}

# gunicorn's control socket lives in the user's home directory, which a service account (or the
# image's read-only /app) may not have writable; pimsync does not use it.
control_socket_disable = True
