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

# Builds the three functions as `sam build` ships them (cargo lambda build --release, with the
# workspace's [workspace.metadata.lambda.build] settings) into $SAM_BUILD_DIR; cached between
# runs. Needs ensure_venv and ensure_sam_venv first.
SAM_BUILD_DIR=${SAM_BUILD_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/sam-build}
sam_build() {
    (
        cd "$ROOT"
        export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
        # cargo-lambda (for sam build) comes from the test venv; zig is found as `python3 -m ziglang`.
        export PATH="$DAGY_VENV/bin:$DAGY_SAM_VENV/bin:$PATH"
        sam build --template template.yaml --build-dir "$SAM_BUILD_DIR" --cached \
            --cache-dir "${CARGO_TARGET_DIR:-$ROOT/target}/sam-cache"
        for function in RouterFunction ExecutorFunction TaskExecutorFunction; do
            test -x "$SAM_BUILD_DIR/$function/bootstrap" || {
                echo "sam build made no $function/bootstrap" >&2
                exit 1
            }
        done
    )
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Starts moto's server (DynamoDB, Step Functions, ECS, EC2, CloudWatch Logs) on a free loopback
# port and points the AWS SDK at it through the standard variables. MOTO_HOST names another
# local address to listen on (scripts/sam-local.sh: the Docker bridge's, which containers reach).
start_moto() {
    local port log host=${MOTO_HOST:-127.0.0.1}
    port=$(free_port)
    log=${MOTO_LOG:-$(mktemp -t dagy-moto.XXXXXX.log)}
    "$DAGY_VENV/bin/moto_server" -H "$host" -p "$port" >"$log" 2>&1 &
    MOTO_PID=$!
    for _ in $(seq 1 100); do
        if python3 -c "import socket,sys; socket.create_connection(('$host', $port), 0.2)" 2>/dev/null; then
            break
        fi
        if ! kill -0 "$MOTO_PID" 2>/dev/null; then
            echo "moto_server exited; its log:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    export AWS_ENDPOINT_URL="http://$host:$port"
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

# Docker, offline: installs docker.io and debootstrap with apt-get when missing (as root), and
# starts dockerd in the background when `docker info` does not answer, its log in a temp file.
# DOCKERD_PID is set only when this shell started it (never exported: a script run from the
# suite must not stop the suite's dockerd), so stop_docker stops only that one.
unset DOCKERD_PID
ensure_docker() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            echo "missing ${missing[*]}: install them (apt-get install ${missing[*]}) as root" >&2
            return 1
        fi
        echo "installing ${missing[*]} (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if docker info >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "docker does not answer and only root can start dockerd here" >&2
        return 1
    fi
    DOCKERD_LOG=${DOCKERD_LOG:-$(mktemp -t dagy-dockerd.XXXXXX.log)}
    dockerd >"$DOCKERD_LOG" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 120); do
        if docker info >/dev/null 2>&1; then
            echo "dockerd (pid $DOCKERD_PID) started, log $DOCKERD_LOG"
            return 0
        fi
        if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
            echo "dockerd exited; its log:" >&2
            tail -n 30 "$DOCKERD_LOG" >&2
            unset DOCKERD_PID
            return 1
        fi
        sleep 0.5
    done
    echo "dockerd did not answer within 60 s; its log: $DOCKERD_LOG" >&2
    return 1
}

# Stops dockerd if ensure_docker started it (by its pid), waiting for it to exit.
stop_docker() {
    if [ -n "${DOCKERD_PID:-}" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
        kill "$DOCKERD_PID" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$DOCKERD_PID" 2>/dev/null || break
            sleep 0.5
        done
        wait "$DOCKERD_PID" 2>/dev/null || true
    fi
    unset DOCKERD_PID
}

# The Debian mirror the machine's apt sources name (deb822 `URIs:` or a `deb` line), for
# debootstrap; Debian's own when none is found.
debian_mirror() {
    local uri
    uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [ -z "$uri" ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

# The locally made base image: Debian bookworm minbase with ca-certificates, slimmed as Debian's
# own -slim images are (no documentation, manual pages or translations, no apt caches, now or
# after a later apt-get install), tagged $DAGY_BASE_IMAGE. Its root file system is cached as a
# tarball under ~/.cache/dagy/images, so only the first run on a machine pays for debootstrap
# (about a minute); later runs import the tarball when Docker lost the image, or do nothing.
# Needs ensure_docker first. Raise DAGY_BASE_VERSION when the recipe changes.
DAGY_BASE_IMAGE=${DAGY_BASE_IMAGE:-dagy-base:bookworm}
DAGY_BASE_VERSION=2
DAGY_IMAGE_CACHE=${DAGY_IMAGE_CACHE:-$HOME/.cache/dagy/images}
ensure_base_image() {
    local label='{{index .Config.Labels "dagy.base-version"}}'
    if [ "$(docker image inspect --format "$label" "$DAGY_BASE_IMAGE" 2>/dev/null)" = "$DAGY_BASE_VERSION" ]; then
        return 0
    fi
    local tarball="$DAGY_IMAGE_CACHE/bookworm-minbase-v$DAGY_BASE_VERSION.tar"
    if [ ! -s "$tarball" ]; then
        local mirror rootfs
        mirror=$(debian_mirror)
        rootfs=$(mktemp -d -t dagy-rootfs.XXXXXX)
        echo "debootstrap: Debian bookworm minbase from $mirror (about a minute, once)"
        debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" \
            >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; rm -rf "$rootfs" "$rootfs.log"; return 1; }
        cat >"$rootfs/etc/dpkg/dpkg.cfg.d/dagy-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
SLIM
        cat >"$rootfs/etc/apt/apt.conf.d/dagy-clean" <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CLEAN
        find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
        rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
            "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
            "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
        mkdir -p "$DAGY_IMAGE_CACHE"
        tar -C "$rootfs" -c . >"$tarball.tmp" && mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs" "$rootfs.log"
    fi
    echo "importing $tarball as $DAGY_BASE_IMAGE"
    docker import --change 'CMD ["/bin/bash"]' --change "LABEL dagy.base-version=$DAGY_BASE_VERSION" \
        "$tarball" "$DAGY_BASE_IMAGE" >/dev/null
}

# Headless Chromium and its WebDriver server for the dashboard's browser tests
# (tests/browser.rs) and scripts/screenshot.sh: installs Debian's chromium and chromium-driver
# with apt-get when either is missing (as root), then exports their paths as DAGY_CHROMIUM and
# DAGY_CHROMEDRIVER, which the tests read (paths already set there are kept).
ensure_chromium() {
    local chromium driver
    chromium=${DAGY_CHROMIUM:-$(command -v chromium || true)}
    driver=${DAGY_CHROMEDRIVER:-$(command -v chromedriver || true)}
    if [ ! -x "$chromium" ] || [ ! -x "$driver" ]; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            echo "missing chromium or chromedriver: install them (apt-get install chromium chromium-driver) as root" >&2
            return 1
        fi
        echo "installing chromium and chromium-driver (apt-get)"
        apt-get update -qq
        # fonts-liberation: the page's sans-serif text, without chromium's other recommends.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            chromium chromium-driver fonts-liberation >/dev/null
        chromium=$(command -v chromium || true)
        driver=$(command -v chromedriver || true)
    fi
    if [ ! -x "$chromium" ] || [ ! -x "$driver" ]; then
        echo "chromium or chromedriver is still missing after apt-get install" >&2
        return 1
    fi
    DAGY_CHROMIUM=$chromium
    DAGY_CHROMEDRIVER=$driver
    export DAGY_CHROMIUM DAGY_CHROMEDRIVER
    echo "$("$driver" --version | cut -d' ' -f1-2) at $driver; chromium at $chromium"
}
