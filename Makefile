# Two entry points for a fresh machine: `make demo` and `make test`. Each sets up
# everything it needs (system packages via apt-get when run as root, and .venv).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_SECONDS ?= 60
APT_PACKAGES := chrony faketime ntpsec-ntpdig iproute2 systemd prometheus

.PHONY: demo demo-host test lint typecheck protos docs system-packages venv clean

# clockbound: the third-party ClockBound client the tests read our ClockBound segment with; it
# declares Python >= 3.13 but runs on 3.11 (pyproject.toml says why it is not in the extras).
$(STAMP): pyproject.toml setup.py chronotick/_fastread.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --ignore-requires-python clockbound==0.3.0
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the integration tests drive (chronyd as the NTP reference, libfaketime for a
# skewed clock, ntpdig as a second real NTP client, promtool from prometheus to check the metrics
# and alert rules). Installed only when missing and when root.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (run as root or install them; their tests will say why they skip)"; fi; \
	fi

# Three nodes on loopback, each on a simulated clock of its own: converge, act together, commit.
demo: $(STAMP)
	$(PY) -m coordinator.cli demo

# One daemon and one reader on this host, printing every second.
demo-host: $(STAMP)
	$(PY) -m chronotick.demo --seconds $(DEMO_SECONDS)

# The whole suite; tests/run_suite.py overlaps the ten-minute holdover test with the rest.
test: system-packages $(STAMP) lint typecheck
	$(PY) tests/run_suite.py --durations=30

# Regenerate coordinator/proto from protos/ (the check in `lint` fails when it is stale).
protos: $(STAMP)
	$(PY) -m coordinator.proto.generate

# Rewrite the generated parts of the docs (config reference, ...) from the code (the check in
# `lint` fails when they are stale).
docs: $(STAMP)
	$(PY) -m coordinator.reference

lint: $(STAMP)
	$(PY) -m coordinator.proto.generate --check
	$(PY) -m coordinator.reference --check
	$(VENV)/bin/ruff check chronotick coordinator tests benchmarks examples
	$(VENV)/bin/ruff format --check chronotick coordinator tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info chronotick/*.so
