#!/usr/bin/env bash
# Cold start and package size of the Lambda functions (figures, not a test): builds the binaries
# with the `lambda-small` profile (PROFILE=release for the plain release build), starts moto on
# loopback for the executor's DynamoDB read, runs bench_functions.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dagy/target}"
ensure_venv
export PROFILE="${PROFILE:-lambda-small}"
cargo build --profile "$PROFILE" -j2 -p dagy-functions --bins
trap stop_moto EXIT
start_moto
export DAGY_TABLE_NAME=dagy-bench
cargo run -q -p dagy-cli -- table create
export AWS_ENDPOINT_URL_DYNAMODB="$AWS_ENDPOINT_URL"
unset AWS_ENDPOINT_URL
python3 scripts/bench_functions.py
