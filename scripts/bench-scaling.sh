#!/usr/bin/env bash
# Dagy's scaling table (figures, not a test): see scripts/bench_scaling.py. Builds the release
# `dagy` when missing; moto comes from the test suite's venv (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dagy/target}"
[ -x "$CARGO_TARGET_DIR/release/dagy" ] || cargo build --release -j2 -p dagy-cli
exec python3 scripts/bench_scaling.py "$@"
