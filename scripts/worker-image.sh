#!/usr/bin/env bash
# Builds the dagy-worker image offline: the cargo-built release binary on a locally made Debian
# bookworm base (no registry needed), with the final stage the repository's Dockerfile also ends
# with (docker/worker.Dockerfile). With --examples it also builds dagy-python-worker
# (examples/python-worker: the worker, python3 from Debian's packages and two Python tasks).
#
# Usage: scripts/worker-image.sh [--examples]
#
# Installs docker.io and debootstrap when missing and starts dockerd when it does not answer
# (stopped again at the end if this script started it). The base, dagy-base:bookworm, is made
# once by debootstrap and cached as a tarball in ~/.cache/dagy/images (scripts/lib.sh,
# ensure_base_image). DAGY_WORKER_IMAGE and DAGY_PYTHON_IMAGE name other tags.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
source scripts/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dagy/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
WORKER_IMAGE=${DAGY_WORKER_IMAGE:-dagy-worker:latest}
PYTHON_IMAGE=${DAGY_PYTHON_IMAGE:-dagy-python-worker:latest}
examples=false
for arg in "$@"; do
    case "$arg" in
        --examples) examples=true ;;
        *) echo "usage: scripts/worker-image.sh [--examples]" >&2; exit 2 ;;
    esac
done

# The instructions after the last FROM, with comments and COPY sources left out.
final_stage() {
    awk '/^[[:space:]]*(#|$)/ {next}
         toupper($1) == "FROM" {n = 0; next}
         {out[++n] = (toupper($1) == "COPY") ? "COPY -> " $NF : $0}
         END {for (i = 1; i <= n; i++) print out[i]}' "$1"
}
if ! diff <(final_stage Dockerfile) <(final_stage docker/worker.Dockerfile); then
    echo "the Dockerfile's last stage and docker/worker.Dockerfile differ (above): keep them the same" >&2
    exit 1
fi

# `docker build`, its output shown only when it fails (the legacy builder, the one Debian's
# docker.io has without buildx, warns on every build).
build() {
    local log
    log=$(mktemp -t dagy-docker-build.XXXXXX.log)
    if ! docker build "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}

ensure_docker
trap stop_docker EXIT
start=$SECONDS
ensure_base_image
echo "base image $DAGY_BASE_IMAGE ready ($((SECONDS - start)) s)"

start=$SECONDS
cargo build --release --locked -p dagy-worker --bin dagy-worker
binary="$CARGO_TARGET_DIR/release/dagy-worker"
context=$(mktemp -d -t dagy-worker-image.XXXXXX)
cp "$binary" "$context/dagy-worker"
build --tag "$WORKER_IMAGE" --build-arg "BASE=$DAGY_BASE_IMAGE" \
    --file docker/worker.Dockerfile "$context"
rm -rf "$context"
echo "built $WORKER_IMAGE ($((SECONDS - start)) s)"

if $examples; then
    start=$SECONDS
    # apt-get in the build reaches the Debian mirror of the base's sources through the host's
    # network; Docker keeps the python3 layer while the base does not change.
    build --network host --tag "$PYTHON_IMAGE" \
        --build-arg "BASE=$DAGY_BASE_IMAGE" --build-arg "WORKER=$WORKER_IMAGE" \
        examples/python-worker
    echo "built $PYTHON_IMAGE ($((SECONDS - start)) s)"
fi

docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' \
    | grep -E "^(${DAGY_BASE_IMAGE}|${WORKER_IMAGE}|${PYTHON_IMAGE})  " || true
