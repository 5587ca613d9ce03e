# Shared by the project's scripts: the pinned Python tools and the local AWS stand-ins.
# Source it; do not run it.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
DAGY_VENV=${DAGY_VENV:-$HOME/.cache/dagy/venv}
export DAGY_VENV

# Installs the pinned test tools (moto's server, ...) into $DAGY_VENV when missing or stale.
ensure_venv() {
    # The venv also puts `cargo lambda` (cargo-lambda) on PATH for the emulator tests.
    local stamp="$DAGY_VENV/.requirements.sha256"
    local want
    want=$(sha256sum "$ROOT/scripts/requirements-test.txt" | cut -d' ' -f1)
    if [ -x "$DAGY_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    echo "installing pinned test tools into $DAGY_VENV"
    python3 -m venv "$DAGY_VENV"
    "$DAGY_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/scripts/requirements-test.txt"
    echo "$want" > "$stamp"
}

# Installs the pinned SAM CLI (with aws-sam-translator and cfn-lint) into $DAGY_SAM_VENV.
DAGY_SAM_VENV=${DAGY_SAM_VENV:-$HOME/.cache/dagy/sam-venv}
export DAGY_SAM_VENV
ensure_sam_venv() {
    local stamp="$DAGY_SAM_VENV/.requirements.sha256"
    local want
    want=$(sha256sum "$ROOT/scripts/requirements-sam.txt" | cut -d' ' -f1)
    if [ -x "$DAGY_SAM_VENV/bin/sam" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    echo "installing the pinned SAM CLI into $DAGY_SAM_VENV"
    python3 -m venv "$DAGY_SAM_VENV"
    "$DAGY_SAM_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/scripts/requirements-sam.txt"
    echo "$want" > "$stamp"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Starts moto's server (DynamoDB, Step Functions, ECS, EC2, CloudWatch Logs) on a free loopback
# port and points the AWS SDK at it through the standard variables.
start_moto() {
    local port log
    port=$(free_port)
    log=${MOTO_LOG:-$(mktemp -t dagy-moto.XXXXXX.log)}
    "$DAGY_VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    MOTO_PID=$!
    for _ in $(seq 1 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
            break
        fi
        if ! kill -0 "$MOTO_PID" 2>/dev/null; then
            echo "moto_server exited; its log:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
    export AWS_EC2_METADATA_DISABLED=true
    echo "moto_server (pid $MOTO_PID) on $AWS_ENDPOINT_URL, log $log"
}

stop_moto() {
    if [ -n "${MOTO_PID:-}" ] && kill -0 "$MOTO_PID" 2>/dev/null; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
}
