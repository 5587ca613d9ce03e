#!/usr/bin/env bash
# Adversarial tests of `dagy run --store dynamodb` on moto's server: kill -9 and resume,
# concurrent resumers, signals, store stalls, malformed flows, deep outputs (scripts/adversarial.py).
# Usage: scripts/adversarial.sh [--quick] [--only kill,stall15,...] [--seed N] [--report FILE] ...
# Builds the release CLI in $CARGO_TARGET_DIR (default ~/.cache/dagy/target), starts moto.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_venv
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dagy/target}
cargo build --release -p dagy-cli --locked -j2
trap stop_moto EXIT
start_moto
# Not exec: the EXIT trap has to stop moto after the Python script ends.
python3 scripts/adversarial.py --dagy "$CARGO_TARGET_DIR/release/dagy" "$@"
