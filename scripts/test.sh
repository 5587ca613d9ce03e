#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing, builds once, runs every
# check. `.ci/run` calls exactly this. Usage: scripts/test.sh
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
source "$ROOT/scripts/lib.sh"

# Reuse one target directory across clones and runs on this machine: cargo's fingerprints make
# that safe, and it saves rebuilding every dependency on each CI run.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dagy/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
# The suite builds each crate once per run: incremental state would only grow the shared target
# directory (26 GB of it once filled the disk mid-run).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export CARGO_TERM_COLOR=never
export RUST_BACKTRACE=1

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
rustc --version
rustup component list --installed 2>/dev/null | grep -E '^(clippy|rustfmt)' || true

# One feature set for every cargo command, so nothing is built twice: the workspace's defaults
# plus the example project's `aws` feature (its Lambda and worker binaries).
FEATURES=(--features my-flows/aws)

step "format (cargo fmt --check)"
cargo fmt --all -- --check

step "lint (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --locked "${FEATURES[@]}" -- -D warnings

step "dependency rules (cargo tree)"
# The libraries run a project's handlers, never the examples; local use builds no AWS SDK.
for crate in dagy-functions dagy-worker dagy-cli dagy; do
    if cargo tree --locked -p "$crate" --no-default-features -e normal --prefix none | grep -q '^dagy-handlers '; then
        echo "$crate depends on dagy-handlers outside its example binaries" >&2
        exit 1
    fi
done
if cargo tree --locked -p dagy -e normal --prefix none | grep -q '^aws-'; then
    echo "the dagy crate without its aws feature pulls in the AWS SDK" >&2
    exit 1
fi
echo "ok: no library depends on dagy-handlers; dagy without \`aws\` builds no AWS crate"

step "test tools (pinned, PyPI)"
ensure_venv
export PATH="$DAGY_VENV/bin:$PATH"
cargo lambda --help >/dev/null

step "test tools (pinned, npm: asl-validator, aws-local-stepfunctions)"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq nodejs npm
    else
        echo "Node.js 18 or later and npm are needed: apt-get install nodejs npm" >&2
        exit 1
    fi
fi
npm ci --prefix scripts/asl --no-audit --no-fund --silent
npm ci --prefix scripts/sfn-local --no-audit --no-fund --silent

step "test tools (Debian: chromium, chromium-driver for the dashboard's browser tests)"
# Exports DAGY_CHROMIUM and DAGY_CHROMEDRIVER, which tests/browser.rs reads.
ensure_chromium

step "local AWS stand-ins (moto; Docker, started when it does not answer)"
stop_stand_ins() {
    stop_moto
    stop_docker
}
trap stop_stand_ins EXIT
start_moto
ensure_docker

step "build"
cargo build --workspace --all-targets --locked "${FEATURES[@]}"

step "containers: the worker images, their tests, sam local invoke with every sample event"
# Offline: the base image is made once by debootstrap and cached in ~/.cache/dagy/images; the
# images are rebuilt from the release binary (cargo's cache) and Docker's layer cache. The
# container tests are #[ignore]d in the workspace run below, so they run here once.
timed() {
    local start=$SECONDS
    "$@"
    echo "(${*:1:2}: $((SECONDS - start)) s)" >&2
}
timed bash scripts/worker-image.sh --examples
timed cargo test --workspace --locked "${FEATURES[@]}" --test containers --test local_fargate -- --ignored
sam_report=$(mktemp -t dagy-sam-local.XXXXXX.jsonl)
DAGY_BIN="$CARGO_TARGET_DIR/debug/dagy" timed bash scripts/sam-local.sh events/*.json >"$sam_report"
echo "sam local invoke: $(wc -l <"$sam_report") events answered without an error (answers in $sam_report)"

step "tests (unit, property, integration, CLI, doc)"
cargo test --workspace --locked --no-fail-fast "${FEATURES[@]}"

step "the example project, copied out of the repository as a user starts one"
# Its own package outside this workspace, depending on crates/dagy by path: it builds without the
# AWS SDK, and its tests run its flow through its own CLI.
outside=$(mktemp -d)
cp -r examples/user-project "$outside/my-flows"
sed -i "s|path = \"../../crates/dagy\"|path = \"$ROOT/crates/dagy\"|" "$outside/my-flows/Cargo.toml"
cp Cargo.lock "$outside/my-flows/Cargo.lock"
(cd "$outside/my-flows" && cargo test --quiet)
rm -rf "$outside"

step "the lambda: contract, from Python (examples/user-project/python)"
python3 -m unittest discover -s examples/user-project/python

step "the exec: contract, from Python (examples/python-worker/tasks)"
python3 -m unittest discover -s examples/python-worker/tasks

step "ASL validators (statelint, asl-validator) on examples and 300 random DAGs"
bash scripts/check-asl.sh

step "template.yaml (sam validate --lint, the template against the code, cfn-lint, sam build)"
bash scripts/check-template.sh

step "docs (rustdoc, warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked "${FEATURES[@]}"

step "done"
echo "all checks passed in $SECONDS s (target dir: $CARGO_TARGET_DIR, root: $ROOT)"
