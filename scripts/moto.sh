#!/usr/bin/env bash
# Starts a local DynamoDB-compatible server (moto) for `dagy run --store dynamodb` and prints the
# variables to export. Stops on Ctrl-C. Usage: scripts/moto.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
trap stop_moto EXIT
start_moto
cat <<MSG

In another shell:
  export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
  export DAGY_TABLE_NAME=dagy-runs
  cargo run -q -p dagy-cli -- table create
  cargo run -q -p dagy-cli -- run examples/flows/etl.json --store dynamodb

Ctrl-C stops the server.
MSG
wait "$MOTO_PID"
