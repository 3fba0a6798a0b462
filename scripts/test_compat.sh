#!/usr/bin/env bash
# One Airflow release for `make test-compat`: the whole test suite and, beside it, the real-stack tier
# (tests/system), on the oldest release that pyproject.toml claims (the `apache-airflow>=X.Y.Z`
# lower bound) or COMPAT_AIRFLOW_VERSION, in a venv of its own (.venv-compat-X.Y.Z, git-ignored).
# `make test-compat` runs it for the lower bound and for the newest 3.2 release.
#
#   COMPAT_AIRFLOW_VERSION=3.1.8 bash scripts/test_compat.sh   # another release than the bound
#   COMPAT_VENV=/tmp/venv bash scripts/test_compat.sh          # another venv
#   COMPAT_STACK=0 bash scripts/test_compat.sh                 # the suite only, not the tier
#
# Extra arguments are passed to the suite's pytest (`bash scripts/test_compat.sh -x -k trigger`).
# The tier installs Airflow the same way into its own venv (build/stack-X.Y.Z/) with the provider's
# wheel from dist/ (`make dist`).
#
# Airflow is installed the way its docs say users install it: first Airflow itself with its
# dependencies pinned as they were when that release came out (Airflow's constraints file; its
# host is not reachable from here, so pip's --uploaded-prior-to the release day stands in for it),
# then the provider and its dev extra on top, which moves only what the provider itself requires.
# Without that, pip resolves an old Airflow against today's FastAPI and pydantic, and Airflow's
# own task runner fails before any provider code runs (3.0.6 with FastAPI 0.165: "Input should be a
# valid dictionary" on the task's start call; 3.2.2 with pydantic 2.14: "TITerminalStatePayload
# needs a discriminator field").
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

BOUND=$($PYTHON - <<'PYEOF'
import re, sys
text = open("pyproject.toml", encoding="utf-8").read()
match = re.search(r'"apache-airflow>=([0-9][0-9.]*)[",]', text)
if not match:
    sys.exit("pyproject.toml names no apache-airflow>= lower bound")
print(match.group(1))
PYEOF
)
AIRFLOW_VERSION=${COMPAT_AIRFLOW_VERSION:-$BOUND}
VENV=${COMPAT_VENV:-.venv-compat-$AIRFLOW_VERSION}
echo "==> pyproject.toml: apache-airflow>=$BOUND; testing on apache-airflow==$AIRFLOW_VERSION in $VENV"

# The day after each release was uploaded to PyPI (checked with `pip download --uploaded-prior-to`).
case "$AIRFLOW_VERSION" in
    3.0.6) RELEASED=2025-08-30T00:00:00Z ;;
    3.1.0) RELEASED=2025-09-26T00:00:00Z ;;
    3.1.2) RELEASED=2025-11-06T00:00:00Z ;;
    3.2.0) RELEASED=2026-04-08T00:00:00Z ;;
    3.2.2) RELEASED=2026-05-30T00:00:00Z ;;
    *) RELEASED=${COMPAT_UPLOADED_PRIOR_TO:-} ;;
esac
RELEASED=${COMPAT_UPLOADED_PRIOR_TO:-$RELEASED}
if [ -n "$RELEASED" ]; then
    AIRFLOW_PINS=(--uploaded-prior-to "$RELEASED")
else
    echo "==> no release date known for $AIRFLOW_VERSION (set COMPAT_UPLOADED_PRIOR_TO): today's dependencies" >&2
fi
# pip warns about every configured local index folder that does not exist on this machine.
quiet_pip() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }

STAMP="$VENV/.installed"
WANT="airflow=$AIRFLOW_VERSION released=$RELEASED $(cat pyproject.toml "$0" | sha256sum | cut -c1-16)"
start=$SECONDS
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    rm -rf "$VENV"
    $PYTHON -m venv "$VENV"
    quiet_pip install --quiet --upgrade "pip>=26"  # --uploaded-prior-to
    echo "==> installing apache-airflow==$AIRFLOW_VERSION${RELEASED:+ with its dependencies as of $RELEASED}"
    # PIP_CONFIG_FILE=/dev/null: this machine's pip config adds a local package folder whose files
    # carry no upload date, so --uploaded-prior-to would let today's releases through from it.
    if [ -n "$RELEASED" ]; then
        PIP_CONFIG_FILE=/dev/null quiet_pip install --quiet "${AIRFLOW_PINS[@]}" "apache-airflow==$AIRFLOW_VERSION"
    else
        quiet_pip install --quiet "apache-airflow==$AIRFLOW_VERSION"
    fi
    echo "==> installing the provider with its dev extra"
    quiet_pip install --quiet "apache-airflow==$AIRFLOW_VERSION" -e ".[dev]"
    echo "$WANT" >"$STAMP"
    echo "==> installed in $((SECONDS - start)) s"
else
    echo "==> $VENV is up to date"
fi

INSTALLED=$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("apache-airflow"))')
if [ "$INSTALLED" != "$AIRFLOW_VERSION" ]; then
    echo "expected apache-airflow $AIRFLOW_VERSION in $VENV, found $INSTALLED" >&2
    exit 1
fi
"$VENV/bin/python" -m pip list 2>/dev/null \
    | grep -iE '^(apache-airflow|apache-airflow-task-sdk|apache-airflow-providers-common-compat|fastapi|pydantic|aiohttp|requests|pytest) ' || true

# The real-stack tier runs beside the suite (as in `make test`); its output is printed after it.
tier_pid=""
if [ "${COMPAT_STACK:-1}" != 0 ]; then
    mkdir -p build
    TIER_LOG=build/stack-$INSTALLED.log
    echo "==> the real-stack tier on apache-airflow $INSTALLED beside the suite (build/stack-$INSTALLED, output in $TIER_LOG)"
    (
        tier_start=$SECONDS
        STACK_AIRFLOW_VERSION=$INSTALLED STACK_UPLOADED_PRIOR_TO=$RELEASED STACK_DIR=build/stack-$INSTALLED \
            "$VENV/bin/python" -m pytest tests/system -p no:cacheprovider
        echo "==> the real-stack tier passed on apache-airflow $INSTALLED in $((SECONDS - tier_start)) s"
    ) >"$TIER_LOG" 2>&1 &
    tier_pid=$!
fi

start=$SECONDS
echo "==> pytest on apache-airflow $INSTALLED"
suite=0
"$VENV/bin/python" -m pytest "$@" || suite=$?
if [ "$suite" = 0 ]; then
    echo "==> the suite passed on apache-airflow $INSTALLED in $((SECONDS - start)) s"
fi

tier=0
if [ -n "$tier_pid" ]; then
    wait "$tier_pid" || tier=$?
    echo "==> the real-stack tier on apache-airflow $INSTALLED ($TIER_LOG):"
    cat "$TIER_LOG"
fi
echo "==> apache-airflow $INSTALLED: suite exit $suite, real-stack tier exit $tier"
[ "$suite" = 0 ] && [ "$tier" = 0 ]
