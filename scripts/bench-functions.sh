#!/usr/bin/env bash
# Cold start and package size of the Lambda functions as they ship (figures, not a test): runs
# `sam build` (the release profile with the workspace's Lambda settings: fat LTO, opt-level z),
# starts moto on loopback for the executor's DynamoDB read, and runs bench_functions.py on the
# bootstrap files `sam build` made.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dagy/target}"
source scripts/lib.sh
ensure_venv
ensure_sam_venv
sam_build
export SAM_BUILD_DIR
trap stop_moto EXIT
start_moto
export DAGY_TABLE_NAME=dagy-bench
cargo run -q -p dagy-cli -- table create
export AWS_ENDPOINT_URL_DYNAMODB="$AWS_ENDPOINT_URL"
unset AWS_ENDPOINT_URL
python3 scripts/bench_functions.py
