#!/usr/bin/env bash
# The README's picture of the dashboard: runs a representative flow (a retried task, a failure,
# the tasks it skips, and a branch that carries on) on an empty DAGY_HOME, serves it with
# `dagy ui --port 0`, and has headless Chromium take the run page, its failed task open in the
# panel. Stops the server it started and removes its folder.
# Usage: scripts/screenshot.sh [OUTPUT.png]   (default docs/dashboard.png)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
source "$ROOT/scripts/lib.sh"
OUTPUT=$(realpath -m "${1:-docs/dashboard.png}")

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dagy/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

ensure_chromium
# The same feature set as scripts/test.sh, so the build reuses its target directory.
cargo build --quiet --locked --workspace --features my-flows/aws --bin dagy
DAGY="$CARGO_TARGET_DIR/debug/dagy"

WORK=$(mktemp -d -t dagy-screenshot.XXXXXX)
UI_PID=
cleanup() {
    if [ -n "$UI_PID" ] && kill -0 "$UI_PID" 2>/dev/null; then
        kill "$UI_PID" 2>/dev/null || true
        wait "$UI_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
export DAGY_HOME="$WORK/home"

cat >"$WORK/nightly_sales.json" <<'EOF'
{
  "spec_version": 1,
  "name": "nightly_sales",
  "parameters": {"day": "2026-11-29"},
  "tasks": [
    {"id": "extract_orders", "handler": "flaky", "args": {"failures": 2},
     "retries": 3, "retry_delay_seconds": [0.2, 0.4]},
    {"id": "extract_customers", "handler": "sleep", "args": {"seconds": 0.5}},
    {"id": "extract_products", "handler": "sleep", "args": {"seconds": 0.3}},
    {"id": "clean_orders", "handler": "sleep", "args": {"seconds": 0.4},
     "depends_on": ["extract_orders"]},
    {"id": "join_sales", "handler": "spin", "args": {"millis": 300},
     "depends_on": ["clean_orders", "extract_customers", "extract_products"]},
    {"id": "validate_totals", "handler": "fail",
     "args": {"message": "3 orders have a negative quantity (order ids 1041, 1187, 1203)"},
     "depends_on": ["join_sales"]},
    {"id": "load_warehouse", "handler": "echo", "depends_on": ["validate_totals"]},
    {"id": "refresh_reports", "handler": "echo", "depends_on": ["load_warehouse"]},
    {"id": "quality_metrics", "handler": "sleep", "args": {"seconds": 0.6},
     "depends_on": ["join_sales"]},
    {"id": "notify_team", "handler": "echo", "depends_on": ["quality_metrics"]}
  ]
}
EOF

# The run fails (validate_totals), so dagy exits 1: that is the picture.
"$DAGY" run "$WORK/nightly_sales.json" --json --quiet >"$WORK/run.json" || true
RUN_ID=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["run_id"])' "$WORK/run.json")

"$DAGY" ui --port 0 >"$WORK/ui.out" 2>"$WORK/ui.err" &
UI_PID=$!
URL=
for _ in $(seq 1 300); do
    URL=$(grep -o 'http://[^ ]*' "$WORK/ui.out" 2>/dev/null | head -n 1 || true)
    [ -n "$URL" ] && break
    if ! kill -0 "$UI_PID" 2>/dev/null; then
        echo "dagy ui exited:" >&2
        cat "$WORK/ui.err" >&2
        exit 1
    fi
    sleep 0.1
done
[ -n "$URL" ] || { echo "dagy ui printed no URL within 30 s" >&2; exit 1; }

# The virtual time budget lets the page's script load the task panel before the picture.
mkdir -p "$(dirname "$OUTPUT")"
"$DAGY_CHROMIUM" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --hide-scrollbars --user-data-dir="$WORK/chromium" --window-size=1280,900 \
    --virtual-time-budget=5000 --screenshot="$OUTPUT" \
    "${URL%/}/runs/$RUN_ID#task=validate_totals" 2>"$WORK/chromium.err" || {
    tail -n 20 "$WORK/chromium.err" >&2
    exit 1
}
echo "$OUTPUT: run $RUN_ID, $(stat -c %s "$OUTPUT") bytes"
