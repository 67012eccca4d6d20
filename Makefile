# pimsync: `make run` starts everything on a laptop, `make test` runs the whole suite.
# Both work on a fresh machine with Python 3.11+ and make: they create .venv and install into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py

.PHONY: run test lint bench drill image image-test clean

# Refuse an old or incomplete Python before anything is installed: an old python3 would install,
# then fail on an import; Debian's python3 without python3-venv cannot create the virtualenv.
$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "pimsync needs Python 3.11 or newer, and '$(PYTHON)' is not installed (or set PYTHON=/path/to/python3.11)."; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "pimsync needs Python 3.11 or newer; '$(PYTHON)' is $$($(PYTHON) -c 'import platform; print(platform.python_version())'). Install a newer one and run e.g. 'make $(MAKECMDGOALS) PYTHON=python3.11'."; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { echo "'$(PYTHON)' cannot create a virtualenv: install the venv module (Debian and Ubuntu: apt-get install python3-venv), then run make again."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files: reinstall only when a requirements file changed.
$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

# A laptop's first run writes .env with DEBUG=1 (so the built-in sandbox switches on while
# AEM_AUTHOR_URL is unset) and a secret key of its own; every manage.py command in this checkout
# reads it. An existing .env is never touched.
.env:
	@printf '%s\n' '# Local settings of this checkout, written by make run. See docs/configuration.md.' \
		'DEBUG=1' "SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(40))')" > $@
	@echo "Wrote .env: DEBUG=1 and a new SECRET_KEY (sandbox mode while AEM_AUTHOR_URL is unset)."

run: .env $(VENV)/.runtime
	$(MANAGE) migrate --noinput
	$(MANAGE) seed
	$(MANAGE) serve

test: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.dev
	$(BIN)/python -m bench

# Failure drills: each starts its own throw-away PostgreSQL (needs the server programs, e.g.
# Debian's postgresql package), gunicorn and a qcluster, injects a fault and checks the ledger.
drill: $(VENV)/.dev
	$(BIN)/python -m drills $(DRILL_ARGS)

# The container image (Dockerfile): one image for web and worker. BASE_IMAGE is any Debian-based
# image; the default is the official Python image (docs/deployment.md).
IMAGE ?= pimsync:latest
BASE_IMAGE ?= python:3.11-slim
image:
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

# Builds the image, starts compose.yaml's stack, sends it signed events, restarts the worker
# mid-run and checks every event was enriched, then stops the stack (deploy/image_test.py).
# Needs only Docker and Python; without a registry it bootstraps a Debian base (debootstrap).
image-test:
	$(PYTHON) deploy/image_test.py

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .hypothesis
