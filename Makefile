# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AIRFLOW_VERSION := 3.3.2
INSTALLED := $(VENV)/.installed

# Airflow state stays inside the project (git-ignored), never in ~/airflow.
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/example_dags

.PHONY: install demo test test-stack up down up-check lint clean docs dist ui-check chromium test-compat bench check-floor review-check clips-check

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "apache-airflow==$(AIRFLOW_VERSION)" -e ".[dev]"
	@touch $@

demo: install
	bash scripts/demo.sh

# The real-stack tier runs beside the unit suite (it mostly waits on its stack's processes): its
# output goes to build/test-stack.log and is printed after the rest; any part failing fails the target.
test: install
	@mkdir -p build; \
	$(MAKE) --no-print-directory test-stack > build/test-stack.log 2>&1 & tier_pid=$$!; \
	unit=0; $(PY) -m pytest || unit=$$?; \
	lint=0; $(MAKE) --no-print-directory lint || lint=$$?; \
	floor=0; $(MAKE) --no-print-directory check-floor || floor=$$?; \
	tier=0; wait $$tier_pid || tier=$$?; \
	echo "== the real-stack tier (build/test-stack.log) =="; cat build/test-stack.log; \
	echo "make test: unit suite exit $$unit, lint $$lint, check-floor $$floor, real-stack tier $$tier"; \
	[ $$unit -eq 0 ] && [ $$lint -eq 0 ] && [ $$floor -eq 0 ] && [ $$tier -eq 0 ]

# The real-stack tier (tests/system): Postgres, api-server, scheduler, dag-processor and two triggerers
# from the wheel in dist/, in build/stack-test/ (logs in build/stack-test/logs). Installs Debian's postgresql
# when root and no server is found. `make test-stack EXECUTOR=celery` runs it on CeleryExecutor instead:
# Redis (Debian's redis-server, installed the same way) and two Celery workers, in build/stack-test-celery/;
# not part of `make test`.
EXECUTOR ?= local
test-stack: dist
	STACK_EXECUTOR=$(EXECUTOR) $(PY) -m pytest tests/system -p no:cacheprovider

# A local Airflow for a person: the UI on http://127.0.0.1:8080, the emulator, the connection and the
# example DAGs; `make down` stops it.
up: dist
	$(PY) -m tests.system.stack up

down:
	@test -x $(PY) && $(PY) -m tests.system.stack down || true

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Every dependency installs on the lowest Python pyproject.toml declares (asks the package index).
check-floor: install
	$(PY) scripts/check_python_floor.py

# Optional extras of pyproject.toml (docs, dist, uicheck), installed on first use.
$(VENV)/.installed-%: $(INSTALLED) pyproject.toml
	$(PY) -m pip install --quiet -e ".[$*]"
	@touch $@

# The MkDocs site in docs/ (API reference from the docstrings) into build/site; warnings fail it.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

# Wheel and sdist into dist/, their metadata checked.
dist: $(VENV)/.installed-dist
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(VENV)/bin/twine check --strict dist/*

# Debian's headless Chromium and its driver, for the browser checks below.
chromium:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; \
	fi

# The connection form in Airflow's UI, in headless Chromium; screenshots in build/ui-check/.
ui-check: $(VENV)/.installed-uicheck chromium
	$(PY) scripts/ui_check.py

# What `make up` gives a newcomer, in headless Chromium: the same stack in build/stack-ui on free ports,
# sign in, trigger example_stable_audio, see generate_clip deferred in the grid, open its "Stable Audio
# clip" link and fetch the WAV; screenshots in build/up-check/. Stops everything it started.
up-check: dist $(VENV)/.installed-uicheck chromium
	$(PY) scripts/up_check.py

# The review example's human step in headless Chromium: the same stack in build/stack-review-ui on free
# ports, trigger example_stable_audio_review, open Required Actions and the review page (each
# candidate's listen link), choose a candidate there, check only its clip is published; screenshots
# in build/review-check/. Stops everything it started.
review-check: dist $(VENV)/.installed-uicheck chromium
	$(PY) scripts/review_check.py

# The Clips page (docs/clips.md) in headless Chromium on the `make up` stack in build/stack-clips: two
# runs, Browse -> Clips, play and seek, filter by DAG, the task instance tab; screenshots in
# build/clips-check-<version>/. CLIPS_AIRFLOW=3.1.2 checks the lowest supported Airflow (its
# dependencies as on its release day); CLIPS_DOCS=1 copies the screenshots to docs/images/.
CLIPS_AIRFLOW ?= $(AIRFLOW_VERSION)
CLIPS_RELEASED_3.1.2 := 2025-11-06T00:00:00Z
clips-check: dist $(VENV)/.installed-uicheck chromium
	STACK_AIRFLOW_VERSION=$(CLIPS_AIRFLOW) STACK_UPLOADED_PRIOR_TO=$(CLIPS_RELEASED_$(CLIPS_AIRFLOW)) \
		$(PY) scripts/clips_check.py $(if $(CLIPS_DOCS),--docs)

# The test suite and the real-stack tier on the oldest Airflow that pyproject.toml claims and on the
# newest 3.2 release, each in a venv of its own (.venv-compat-X.Y.Z, build/stack-X.Y.Z).
COMPAT_VERSIONS ?= lowest 3.2.2
test-compat: dist
	@set -e; for version in $(COMPAT_VERSIONS); do \
		COMPAT_AIRFLOW_VERSION=$$([ "$$version" = lowest ] || echo "$$version") bash scripts/test_compat.sh; \
	done

# Benchmarks (docs/performance.md): trigger fan-out, import cost, download, Stability streaming, the
# key's rate limit.
# --quick sizes (under two minutes) unless BENCH_ARGS says otherwise; `make bench BENCH_ARGS=` runs
# the full sizes.
BENCH_ARGS ?= --quick
bench: install $(VENV)/.installed-bench
	$(PY) benchmarks/trigger_fanout.py $(BENCH_ARGS)
	$(PY) benchmarks/import_cost.py $(BENCH_ARGS)
	$(PY) benchmarks/download.py $(BENCH_ARGS)
	$(PY) benchmarks/stability_stream.py $(BENCH_ARGS)
	$(PY) benchmarks/rate_limit.py $(BENCH_ARGS)
	$(PY) benchmarks/machine_schedule.py $(BENCH_ARGS)

clean:
	rm -rf .airflow output build dist .pytest_cache .mypy_cache .ruff_cache
