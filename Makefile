# pimsync: `make run` starts everything on a laptop, `make test` runs the whole suite.
# Both work on a fresh machine with Python 3.11+ and make: they create .venv and install into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py

.PHONY: run test lint bench drill clean

$(BIN)/python:
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
	@printf '%s\n' '# Local settings of this checkout, written by make run. See README "Connect to your AEM and PIM".' \
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

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .hypothesis
