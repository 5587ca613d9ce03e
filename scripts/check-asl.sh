#!/usr/bin/env bash
# Runs the two independent ASL validators (statelint from PyPI, asl-validator from npm) on the
# Step Functions definition of every example flow and of 300 random DAGs.
# Needs the pinned venv (scripts/lib.sh ensure_venv) and a built `dagy`. Usage: scripts/check-asl.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
DAGY="${CARGO_TARGET_DIR:-target}/debug/dagy"
ARN=arn:aws:lambda:us-east-1:123456789012:function:dagy-task-executor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -x scripts/asl/node_modules/.bin/asl-validator ] || npm ci --prefix scripts/asl --no-audit --no-fund --silent
python3 scripts/random_flows.py 300 "$work/flows"
mkdir -p "$work/asl"
for flow in examples/flows/*.json "$work"/flows/*.json; do
    "$DAGY" asl "$flow" --task-executor-arn "$ARN" > "$work/asl/$(basename "$flow")" 2>/dev/null
done
count=$(ls "$work/asl" | wc -l)
"$DAGY_VENV/bin/statelint" "$work"/asl/*.json
args=()
for f in "$work"/asl/*.json; do args+=(--json-path "$f"); done
scripts/asl/node_modules/.bin/asl-validator --silent "${args[@]}"
echo "$count state machine definitions pass statelint and asl-validator"
