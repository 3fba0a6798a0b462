#!/usr/bin/env bash
# `make demo`: run the example DAG end to end against the bundled emulator and show the clip it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
AIRFLOW=.venv/bin/airflow
export AIRFLOW_HOME=${AIRFLOW_HOME:-$PWD/.airflow}
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER=$PWD/example_dags
export STABLEAUDIO_OUTPUT_DIR=$PWD/output
SECONDS_TOTAL=${DEMO_SECONDS:-10}
mkdir -p "$AIRFLOW_HOME/logs" "$STABLEAUDIO_OUTPUT_DIR"

# A fresh throwaway key each run: the emulator accepts only it, and the logs are checked for it.
API_KEY="demo-$($PY -c 'import secrets; print(secrets.token_hex(12))')"
PORT_FILE=$(mktemp)
rm -f "$PORT_FILE"

$PY -m airflow_provider_stableaudio.emulator --port 0 --port-file "$PORT_FILE" \
    --generation-seconds 6 --api-key "$API_KEY" >"$AIRFLOW_HOME/logs/emulator.log" 2>&1 &
EMULATOR_PID=$!
cleanup() {
    kill "$EMULATOR_PID" 2>/dev/null || true
    wait "$EMULATOR_PID" 2>/dev/null || true
    rm -f "$PORT_FILE"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    [ -s "$PORT_FILE" ] && break
    kill -0 "$EMULATOR_PID" 2>/dev/null || { cat "$AIRFLOW_HOME/logs/emulator.log"; exit 1; }
    sleep 0.2
done
[ -s "$PORT_FILE" ] || { echo "the emulator did not start" >&2; exit 1; }
PORT=$(cat "$PORT_FILE")
echo "==> Stable Audio emulator on http://127.0.0.1:$PORT (pid $EMULATOR_PID)"

export AIRFLOW_CONN_STABLEAUDIO_DEFAULT="{\"conn_type\": \"stableaudio\", \"host\": \"http://127.0.0.1:$PORT\", \"password\": \"$API_KEY\"}"

echo "==> airflow db migrate"
$AIRFLOW db migrate >"$AIRFLOW_HOME/logs/db-migrate.log" 2>&1

MARKER=$(mktemp)
echo "==> airflow dags test example_stable_audio (the generation waits in a deferred trigger)"
$AIRFLOW dags test example_stable_audio \
    -c "{\"seconds\": $SECONDS_TOTAL, \"output_dir\": \"$STABLEAUDIO_OUTPUT_DIR\"}" \
    2>&1 | tee "$AIRFLOW_HOME/logs/demo-dags-test.log"

CLIP=$(find "$STABLEAUDIO_OUTPUT_DIR/example_stable_audio" -name '*.wav' -newer "$MARKER" -print | sort | tail -n 1)
rm -f "$MARKER"
[ -n "$CLIP" ] || { echo "the DAG run wrote no clip" >&2; exit 1; }

if grep -rqF "$API_KEY" "$AIRFLOW_HOME/logs"; then
    echo "the API key appears in the logs under $AIRFLOW_HOME/logs" >&2
    exit 1
fi

$PY - "$CLIP" "$SECONDS_TOTAL" <<'PYEOF'
import sys, wave
path, expected = sys.argv[1], int(sys.argv[2])
with wave.open(path, "rb") as clip:
    seconds = clip.getnframes() / clip.getframerate()
    print(f"==> Wrote {path}")
    print(f"    {seconds:.2f} s, {clip.getnchannels()} channels, {clip.getsampwidth() * 8}-bit, {clip.getframerate()} Hz")
if abs(seconds - expected) > 1e-9:
    sys.exit(f"expected {expected} s, got {seconds} s")
PYEOF
echo "==> The API key appears nowhere under $AIRFLOW_HOME/logs. Play the clip with any audio player."
