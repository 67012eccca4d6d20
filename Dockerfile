# One image for every pimsync process: the web server by default, a worker with
# `python manage.py qcluster`, migrations with `python manage.py migrate` (compose.yaml runs all three).
#
#   make image                                     # docker build -t pimsync .
#   docker build --build-arg BASE_IMAGE=debian:bookworm-slim -t pimsync .
#
# BASE_IMAGE is any Debian-based image: an official Python image (3.11 or newer) is used as it is;
# on one without python3, Debian's python3 is installed (bookworm's is 3.11). docs/deployment.md.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=pimsync.settings \
    PIMSYNC_READ_DOTENV=0 \
    PIMSYNC_BIND=0.0.0.0:8000

# Extra certificate authorities for the build's own downloads, for a network whose proxy
# intercepts TLS: PEM files in deploy/ca/*.crt (git-ignored). None are needed elsewhere, and
# they are not trusted by the running image.
COPY deploy/ca/ /tmp/build-ca/
COPY requirements.txt /tmp/requirements.txt
RUN set -eu; \
    if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates; \
        apt-get clean; rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*; \
    fi; \
    python3 -c 'import sys; assert sys.version_info >= (3, 11), "pimsync needs Python 3.11 or newer"'; \
    if ls /tmp/build-ca/*.crt >/dev/null 2>&1; then \
        cat /etc/ssl/certs/ca-certificates.crt /tmp/build-ca/*.crt > /tmp/pip-ca.pem 2>/dev/null \
            || cat /tmp/build-ca/*.crt > /tmp/pip-ca.pem; \
        export PIP_CERT=/tmp/pip-ca.pem; \
    fi; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-compile -r /tmp/requirements.txt; \
    /opt/venv/bin/pip uninstall --quiet --yes pip; \
    rm -rf /tmp/build-ca /tmp/pip-ca.pem /tmp/requirements.txt; \
    useradd --system --uid 10001 --user-group --home-dir /app --no-create-home pimsync

WORKDIR /app
COPY --chown=root:root . /app
# Static files are collected at build time (whitenoise serves them with a manifest); the key is
# a throw-away one that only this step sees. var/ is where the process may write.
RUN SECRET_KEY=collectstatic-only DEBUG=0 python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q /app/pimsync /app/dashboard \
    && mkdir -p /app/var && chown pimsync:pimsync /app/var

USER pimsync
EXPOSE 8000
# /healthz/ready: this web process and its database (not the workers: a balancer or compose must
# not restart web containers because a worker is down). Worker containers turn it off.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz/ready', timeout=4); sys.exit(0)"]
CMD ["gunicorn", "--config", "deploy/gunicorn.conf.py", "pimsync.wsgi"]
