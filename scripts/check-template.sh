#!/usr/bin/env bash
# Checks template.yaml, all offline: `sam validate --lint`, `cfn-lint`, the template against the code and
# cfn-lint on the SAM translator's CloudFormation (check_template.py), and `sam build`, which
# builds the three functions through cargo-lambda. Needs the pinned venvs (scripts/lib.sh).
# Usage: scripts/check-template.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_venv >/dev/null
ensure_sam_venv
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
# cargo-lambda (for sam build) comes from the test venv; zig is found as `python3 -m ziglang`.
export PATH="$DAGY_VENV/bin:$DAGY_SAM_VENV/bin:$PATH"
sam validate --lint --template template.yaml
cfn-lint template.yaml
"$DAGY_SAM_VENV/bin/python" scripts/check_template.py template.yaml
# The example project's template: Dagy's with the project's binaries, and valid on its own.
python3 scripts/user-template.py --check
sam validate --lint --template examples/user-project/template.yaml
cfn-lint examples/user-project/template.yaml
if [ "${1:-}" != "--no-build" ]; then
    sam_build
    echo "sam build: every function built ($(du -sh "$SAM_BUILD_DIR" | cut -f1))"
fi
