#!/usr/bin/env bash
# Dagy against Prefect 3 on a chain of N tasks (figures, not a test): whole-process time of
# `dagy run FLOW --json --quiet` and of an equivalent Prefect flow run as `python file.py`.
# Installs the pinned Prefect into its own venv when missing; needs no network once it exists.
# Usage: scripts/bench-prefect.sh [N ...] [--repeat R] [--dagy PATH]   (default sizes: 100 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
DAGY_PREFECT_VENV="${DAGY_PREFECT_VENV:-$HOME/.cache/dagy/prefect-venv}"
if [ ! -x "$DAGY_PREFECT_VENV/bin/python" ]; then
    echo "creating $DAGY_PREFECT_VENV" >&2
    python3 -m venv "$DAGY_PREFECT_VENV"
fi
if ! "$DAGY_PREFECT_VENV/bin/python" -c 'import prefect' >/dev/null 2>&1; then
    echo "installing the pinned Prefect into $DAGY_PREFECT_VENV" >&2
    "$DAGY_PREFECT_VENV/bin/pip" install --quiet --disable-pip-version-check \
        -r scripts/requirements-prefect.txt
fi
exec python3 scripts/bench_prefect.py --prefect-python "$DAGY_PREFECT_VENV/bin/python" "$@"
