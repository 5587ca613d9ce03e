#!/usr/bin/env bash
# Runs sample events through `sam local invoke`, offline, each on the function that receives
# it, and prints each answer as one JSON line {"event", "function", "answer", "seconds"}.
# Exits 1 if any answer is an invocation error or an HTTP status of 500 or more.
#
# Usage: scripts/sam-local.sh EVENT...        e.g. scripts/sam-local.sh events/*.json
#
# It prepares what it needs: Docker (ensure_docker), the Lambda base image
# public.ecr.aws/lambda/provided:al2023-x86_64 (the locally made Debian base tagged so, unless
# the real one is there; SAM adds its own runtime interface emulator), `sam build` (cached, in
# the build directory scripts/check-template.sh uses), moto for DynamoDB with a fresh table,
# and stops moto and dockerd again if it started them. scripts/sam_local.py sends the events.
#
# SAM 1.170 puts the function's container on Docker's default bridge even with
# `--docker-network host` (passed anyway), so moto and the stand-in for Lambda's Invoke API
# listen on the bridge's gateway address, which the containers and this host both reach.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dagy/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
source scripts/lib.sh
if [ $# -eq 0 ]; then
    echo "usage: scripts/sam-local.sh EVENT...   (e.g. events/*.json)" >&2
    exit 2
fi
LAMBDA_BASE=public.ecr.aws/lambda/provided:al2023-x86_64

ensure_venv >/dev/null
ensure_sam_venv >/dev/null
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export PATH="$DAGY_VENV/bin:$DAGY_SAM_VENV/bin:$PATH"

ensure_docker >&2
cleanup() {
    stop_moto
    stop_docker
}
trap cleanup EXIT
ensure_base_image >&2
# Tagged from the local base unless the real image is there (it carries no dagy.base-version).
version=$(docker image inspect --format '{{index .Config.Labels "dagy.base-version"}}' "$LAMBDA_BASE" 2>/dev/null || echo missing)
if [ "$version" = missing ] || { [ -n "$version" ] && [ "$version" != "$DAGY_BASE_VERSION" ]; }; then
    docker tag "$DAGY_BASE_IMAGE" "$LAMBDA_BASE"
fi

start=$SECONDS
sam_build >&2
echo "sam build: $((SECONDS - start)) s" >&2
# `dagy table create`: the `dagy` named by DAGY_BIN (scripts/test.sh passes the one it built),
# or one built here.
if [ -z "${DAGY_BIN:-}" ]; then
    start=$SECONDS
    cargo build --quiet --locked -p dagy-cli --bin dagy >&2
    echo "dagy built: $((SECONDS - start)) s" >&2
    DAGY_BIN="$CARGO_TARGET_DIR/debug/dagy"
fi

gateway=$(docker network inspect bridge --format '{{(index .IPAM.Config 0).Gateway}}')
MOTO_HOST=$gateway start_moto >&2
export DAGY_TABLE_NAME="dagy-sam-local-$$"
"$DAGY_BIN" table create >&2

start=$SECONDS
status=0
"$DAGY_SAM_VENV/bin/python" scripts/sam_local.py --build-dir "$SAM_BUILD_DIR" \
    --moto "$AWS_ENDPOINT_URL" --table "$DAGY_TABLE_NAME" --host "$gateway" "$@" || status=$?
echo "sam local invoke: $# events in $((SECONDS - start)) s (all in $SECONDS s)" >&2
exit $status
