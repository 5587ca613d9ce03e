#!/usr/bin/env python3
"""Cold start and package size of Dagy's Lambda functions. Prints figures; asserts nothing.

Cold start: the time from starting a function's release binary to its first answer, with this
script playing the Lambda Runtime API on loopback (GET .../invocation/next hands out the event,
POST .../response or .../error ends the clock). That is the init (runtime client, AWS SDK
configuration, store and dispatcher set-up: what Lambda reports as Init Duration, up to the first
GET .../invocation/next, printed as "init ms") plus one event ("answer ms", min and max of it). The router answers
events/http-backends.json (no I/O); the executor and the task-executor read a run from DynamoDB
(moto on loopback, started by scripts/bench-functions.sh) that does not exist, and answer with
that error.

Size: each function's `bootstrap` zipped (deflate, level 6 as `sam deploy` packs it), as a Lambda
deployment package. The binaries are what `sam build` made, in SAM_BUILD_DIR/<Function>/bootstrap.

Usage: scripts/bench-functions.sh (builds, starts moto, runs this).
"""

import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "15"))


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    event = b"{}"
    init_done = 0.0
    answered = None  # threading.Event, set by the server
    handed_out = False

    def log_message(self, *args):
        pass

    def do_GET(self):
        if not self.path.endswith("/invocation/next"):
            self.send_error(404)
            return
        if RuntimeApi.handed_out:
            time.sleep(30)  # the function waits for a next event that never comes
            return
        RuntimeApi.handed_out = True
        RuntimeApi.init_done = time.perf_counter()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", "bench-request")
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 900_000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(RuntimeApi.event)))
        self.end_headers()
        self.wfile.write(RuntimeApi.event)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        RuntimeApi.last = (self.path, body)
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        RuntimeApi.answered.set()


def cold_start(binary, event, env):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    RuntimeApi.event = json.dumps(event).encode()
    RuntimeApi.handed_out = False
    RuntimeApi.answered = threading.Event()
    full_env = dict(os.environ)
    full_env.update(env)
    full_env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": binary.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
    })
    start = time.perf_counter()
    proc = subprocess.Popen([str(binary)], env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ok = RuntimeApi.answered.wait(30)
    elapsed = time.perf_counter() - start
    init = RuntimeApi.init_done - start
    proc.kill()
    proc.wait()
    server.shutdown()
    server.server_close()
    if not ok:
        raise SystemExit(f"{binary.name} did not answer within 30 s")
    return init * 1000, elapsed * 1000, RuntimeApi.last


def zipped_size(binary):
    target = Path(os.environ.get("TMPDIR", "/tmp")) / f"{binary.name}.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        z.write(binary, "bootstrap")
    size = target.stat().st_size
    target.unlink()
    return size


def main():
    build_dir = Path(os.environ["SAM_BUILD_DIR"])
    common = {
        "DAGY_TABLE_NAME": os.environ.get("DAGY_TABLE_NAME", "dagy-bench"),
        "DAGY_EXECUTOR_FUNCTION": "dagy-executor",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:9",
        "RUST_LOG": "warn",
    }
    cases = [
        ("RouterFunction", json.loads((ROOT / "events" / "http-backends.json").read_text())),
        ("ExecutorFunction", {"run_id": "bench-no-such-run"}),
        ("TaskExecutorFunction", {"run_id": "bench-no-such-run", "task_id": "t1"}),
    ]
    print(f"sam build output {build_dir}, {RUNS} cold starts each; machine: {os.cpu_count()} cores")
    print(
        f"{'function':<20} {'init ms':>8} {'answer ms':>10} {'min ms':>8} {'max ms':>8} "
        f"{'binary MB':>10} {'zipped MB':>10}  answer"
    )
    for name, event in cases:
        binary = build_dir / name / "bootstrap"
        if not binary.exists():
            raise SystemExit(f"{binary} is missing: run scripts/bench-functions.sh (it runs sam build)")
        inits, times = [], []
        answer = None
        for _ in range(RUNS):
            init_ms, ms, answer = cold_start(binary, event, common)
            inits.append(init_ms)
            times.append(ms)
        kind = "error" if answer[0].endswith("/error") else "response"
        print(
            f"{name:<20} {statistics.median(inits):>8.1f} {statistics.median(times):>10.1f} "
            f"{min(times):>8.1f} {max(times):>8.1f} "
            f"{binary.stat().st_size / 1e6:>10.2f} {zipped_size(binary) / 1e6:>10.2f}  {kind}: {answer[1][:60].decode(errors='replace')}"
        )


if __name__ == "__main__":
    sys.exit(main())
