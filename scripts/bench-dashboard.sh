#!/usr/bin/env bash
# The run page of a 1,700-task run in headless Chromium (figures, not a test): builds and starts
# the dashboard example that serves such a run, starts chromedriver on a free loopback port, and
# runs bench_dashboard.py; stops both by pid. Needs Chromium (scripts/lib.sh ensure_chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dagy/target}"
source scripts/lib.sh
ensure_chromium
cargo build --release -j2 -p dagy-ui --example render_large
out=$(mktemp -t dagy-bench-dashboard.XXXXXX)
"$CARGO_TARGET_DIR/release/examples/render_large" --serve 0 >"$out" 2>&1 &
server=$!
port=$(free_port)
"$DAGY_CHROMEDRIVER" --port="$port" >/dev/null 2>&1 &
driver=$!
trap 'kill $server $driver 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 1 100); do
    grep -q "serving on" "$out" && break
    sleep 0.1
done
cat "$out"
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$out" | head -1)
DAGY_BENCH_DRIVER="http://127.0.0.1:$port" DAGY_BENCH_PAGE="$url/runs/warehouse-1700" \
    python3 scripts/bench_dashboard.py
