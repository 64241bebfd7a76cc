# Two commands, each installing what it needs first (Debian packages, a virtual environment,
# the locked Python dependencies):
#   make demo   break a real Celery stack in a private systemd sandbox and let healer heal it
#   make test   lint, type-check and run every test, the real-sandbox integration tests included
# Run as root on Debian 12 (the sandbox needs mount namespaces and cgroups).

VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin

# Headers to build dbus-python, the user bus, the services the sandbox runs, debootstrap
# for the system sandbox's Debian root, and Alertmanager and promtool for the monitoring tests.
APT_PACKAGES := pkg-config libdbus-1-dev libglib2.0-dev \
                dbus dbus-user-session systemd util-linux redis-server rabbitmq-server \
                debootstrap prometheus-alertmanager prometheus

.PHONY: demo test lint check system lock clean

demo: $(BIN)/.installed
	$(BIN)/python -m sandbox.demo

test: lint $(BIN)/.installed
	$(BIN)/pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

system:
	@missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# requirements.lock is what a host runs (README, the system sandbox's root);
# requirements-dev.lock adds the test and lint tools on the same pins.
$(BIN)/.installed: requirements-dev.lock pyproject.toml | system
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

# Regenerate the lock after changing dependencies in pyproject.toml.
lock: $(BIN)/.installed
	$(BIN)/pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
	    --no-header -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
	    --no-header --constraint requirements.lock -o requirements-dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
