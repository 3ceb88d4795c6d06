# Two commands on a fresh Debian/Ubuntu machine:
#   make run   - install, migrate, create the first admin, serve web + worker
#   make test  - install what the tests need (Debian packages too, as root) and run them all
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Login shells: the remote wrapper is proven to parse under each of them.
# chromium: Debian's browser for the end-to-end tests (never a downloaded one).
# busybox: the remote wrapper also runs where /bin/sh is busybox's ash (Alpine).
# iproute2, iptables: network namespaces for the partition test.
# postgresql-client: pg_dump and pg_restore for the PostgreSQL backup and restore test.
DEBIAN_TEST_PACKAGES := openssh-server openssh-client procps zsh fish tcsh busybox chromium \
	iproute2 iptables postgresql-client

.PHONY: run test lint format bench clean

$(VENV)/.installed-run: requirements.txt
	@$(PYTHON) -c "import ensurepip" 2>/dev/null || $(MAKE) --no-print-directory debian-packages PACKAGES=python3-venv
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The command-line client, installed as anyone installs it (`pip install ./cli`).
$(VENV)/.installed-cli: $(VENV)/.installed-run cli/pyproject.toml $(wildcard cli/tsubame_cli/*.py)
	$(PY) -m pip install --quiet ./cli
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-run requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Installs the Debian packages in PACKAGES that are missing (only as root; otherwise it says what to install).
debian-packages:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "Please install:$$missing (e.g. sudo apt-get install$$missing)"; exit 1; fi; \
	fi

run: $(VENV)/.installed-run $(VENV)/.installed-cli
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py ensure_superuser
	@echo "tsubame: http://$(HOST):$(PORT)/  (Ctrl-C stops web and worker)"
	@# TERM goes to the worker's main process only: it stops its django-q children in order
	@# (TERM to the whole process group can leave django-q hanging).
	$(PY) manage.py worker & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT; \
	$(PY) -m tsubame.webserver -b $(HOST) -p $(PORT)

test: $(VENV)/.installed-dev $(VENV)/.installed-cli
	@$(MAKE) --no-print-directory debian-packages PACKAGES="$(DEBIAN_TEST_PACKAGES)"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(VENV)/.installed-dev
	@$(MAKE) --no-print-directory debian-packages PACKAGES="$(DEBIAN_TEST_PACKAGES)"
	$(PY) bench/engine.py
	$(PY) bench/ui.py
	$(PY) bench/viewers.py
	$(PY) bench/schedules.py
	$(PY) bench/history.py
	$(PY) bench/metrics.py

clean:
	rm -rf $(VENV) staticfiles
