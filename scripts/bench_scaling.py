#!/usr/bin/env python3
"""Dagy's scaling table: chains of N tasks (`sum`), whole process, on the memory store and on
DynamoDB (moto on loopback, behind a counting proxy), nano and micro steps.

Prints per-task wall time, peak memory (RSS) per task, and on DynamoDB the requests and
response bytes per task. Figures, not a test: the suite checks the properties behind them
(a micro step's requests and bytes do not grow with the flow).

Usage: scripts/bench-scaling.sh [--sizes 100,1000,10000,100000] [--sqlite-sizes 1000,10000]
                               [--dynamodb-sizes 100,300]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def chain(n, path):
    """Writes a chain of `n` tasks, one at a time (this process must stay small: see `run`)."""
    with open(path, "w") as f:
        f.write(f'{{"spec_version": 1, "name": "chain{n}", "tasks": [')
        for i in range(n):
            task = {"id": f"t{i}", "handler": "sum", "args": {"add": 1}}
            if i:
                task["depends_on"] = [f"t{i - 1}"]
            f.write(("," if i else "") + json.dumps(task))
        f.write("]}")


class CountingProxy:
    """Forwards TCP to `upstream`, counting x-amz-target headers and answer bytes."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.requests = 0
        self.bytes = 0
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.server.accept()
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self.pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, client, False), daemon=True).start()

    def pump(self, src, dst, up):
        tail = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    if up:
                        seen = (tail + data).lower()
                        self.requests += seen.count(b"\r\nx-amz-target:")
                        tail = seen[-14:]
                    else:
                        self.bytes += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def totals(self):
        with self.lock:
            return self.requests, self.bytes


def run(cmd, env):
    """Runs `cmd`; returns its wall time and its own peak RSS in bytes (from wait4).

    A child's peak RSS counts what it inherited at the fork: this process must stay small, so the
    run record is left in a file and only its head (the run's own fields) is read back.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        head = out.read(4096).decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    # `dagy run --json` writes the run's fields first, two spaces in; tasks are deeper.
    if proc.returncode != 0 or '\n  "status": "completed",' not in head:
        sys.exit(f"{' '.join(cmd)} failed: {stderr[-2000:]}{head[:500]}")
    return elapsed, usage.ru_maxrss * 1024


def measure(cmd, make_env, repeat):
    """Runs `cmd` `repeat` times (each in `make_env()`); the median wall time and the peak RSS."""
    runs = [run(cmd, make_env()) for _ in range(repeat)]
    return statistics.median(secs for secs, _ in runs), max(rss for _, rss in runs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dagy", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/dagy/target")),
        "release", "dagy"))
    ap.add_argument("--sizes", default="100,1000,10000,100000")
    ap.add_argument("--sqlite-sizes", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=3, help="runs per row (median time, peak RSS)")
    ap.add_argument("--dynamodb-sizes", default="100,300")
    ap.add_argument("--moto", default=os.path.expanduser("~/.cache/dagy/venv/bin/moto_server"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dagy-scaling-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGY_")}
    print(f"machine: nproc={os.cpu_count()}; dagy: {args.dagy}; median of {args.repeat} runs "
          "(DynamoDB: one run)")
    print("| tasks | tier | store | per task | peak RSS | RSS per task | requests per task | response bytes per task |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for n in [int(x) for x in args.sizes.split(",") if x]:
        path = os.path.join(tmp, f"chain{n}.json")
        chain(n, path)
        for tier in ("nano", "micro"):
            secs, rss = measure([args.dagy, "run", path, "--tier", tier, "--store", "memory",
                                 "--json", "--quiet"], lambda: env, args.repeat)
            print(f"| {n:,} | {tier} | memory | {secs / n * 1e6:.1f} µs | {rss / 2**20:.0f} MiB "
                  f"| {rss / n / 1024:.2f} KiB | | |", flush=True)
    # The default store: the embedded database in a fresh DAGY_HOME for each run.
    for n in [int(x) for x in args.sqlite_sizes.split(",") if x]:
        path = os.path.join(tmp, f"chain{n}.json")
        chain(n, path)
        for tier in ("nano", "micro"):
            secs, rss = measure(
                [args.dagy, "run", path, "--tier", tier, "--json", "--quiet"],
                lambda: dict(env, DAGY_HOME=tempfile.mkdtemp(prefix="home-", dir=tmp)),
                args.repeat,
            )
            print(f"| {n:,} | {tier} | SQLite (the default) | {secs / n * 1e6:.1f} µs "
                  f"| {rss / 2**20:.0f} MiB | {rss / n / 1024:.1f} KiB | | |", flush=True)
    sizes = [int(x) for x in args.dynamodb_sizes.split(",") if x]
    if not sizes:
        return
    port = free_port()
    moto = subprocess.Popen([args.moto, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        proxy = CountingProxy(port)
        aws = dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}", AWS_REGION="us-east-1",
                   AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                   AWS_EC2_METADATA_DISABLED="true", DAGY_TABLE_NAME="dagy-scaling")
        subprocess.run([args.dagy, "table", "create"], env=aws, check=True, capture_output=True)
        for n in sizes:
            path = os.path.join(tmp, f"chain{n}.json")
            chain(n, path)
            for tier in ("nano", "micro"):
                r0, b0 = proxy.totals()
                secs, rss = run([args.dagy, "run", path, "--tier", tier, "--store", "dynamodb",
                                 "--json", "--quiet"], aws)
                r1, b1 = proxy.totals()
                print(f"| {n:,} | {tier} | DynamoDB (moto) | {secs / n * 1e3:.2f} ms | "
                      f"{rss / 2**20:.0f} MiB | {rss / n / 1024:.1f} KiB | {(r1 - r0) / n:.2f} "
                      f"| {(b1 - b0) / n:,.0f} |", flush=True)
    finally:
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main()
