#!/usr/bin/env bash
# Fuzzes dagy-core's FlowSpec decoding, validation and planning (target flow_from_json), or
# dagy-exec's handler manifest parser (FUZZ_TARGET=exec_manifest), with cargo-fuzz (libFuzzer).
#
# Usage: scripts/fuzz.sh [SECONDS] [extra libFuzzer flags...]
#   SECONDS            how long to fuzz (default 60)
#   FUZZ_TARGET        flow_from_json (default) or exec_manifest
#   FUZZ_SANITIZER     address (default, as cargo-fuzz) or none (about 2x faster; dagy-core
#                      has no unsafe code, so ASan only watches its dependencies and std)
#
# cargo-fuzz passes nightly-only flags to rustc (-Z sanitizer..., sanitizer coverage);
# RUSTC_BOOTSTRAP=1 makes the stable toolchain accept them. The fuzz crate is its own workspace
# (fuzz/Cargo.toml), built in fuzz/target, so the main workspace's builds never touch it.
# New corpus entries go to fuzz/corpus/<target>; a crash is saved under fuzz/artifacts/
# and makes this script exit non-zero. Reproduce one with:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

DURATION="${1:-60}"
shift || true
CARGO_FUZZ_VERSION=0.13.2
TARGET="${FUZZ_TARGET:-flow_from_json}"

if ! cargo fuzz --version 2>/dev/null | grep -q "cargo-fuzz $CARGO_FUZZ_VERSION"; then
    echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

CORPUS="$ROOT/fuzz/corpus/$TARGET"
SEEDS="$ROOT/fuzz/seeds/$TARGET"
mkdir -p "$CORPUS"
DICT=""
if [ "$TARGET" = flow_from_json ]; then
    DICT="$ROOT/fuzz/flow.dict"
fi

echo "==> fuzzing $TARGET for $DURATION s (sanitizer: ${FUZZ_SANITIZER:-address})"
cargo fuzz run --fuzz-dir "$ROOT/fuzz" --sanitizer "${FUZZ_SANITIZER:-address}" \
    "$TARGET" "$CORPUS" "$SEEDS" -- \
    -max_total_time="$DURATION" \
    ${DICT:+-dict="$DICT"} \
    -print_final_stats=1 \
    "$@"
