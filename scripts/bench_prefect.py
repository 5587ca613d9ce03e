#!/usr/bin/env python3
"""Dagy against Prefect 3 on a chain of N tasks. Prints figures; asserts nothing but success.

For each chain length N (default 100 and 1000) this times two whole processes, each run R times
(default 3), and reports the medians of wall time:

- Dagy: `DAGY run chainN.json --json --quiet`, a flow of N `sum` tasks t0..t{N-1}, each adding
  `args.add = 1` to its upstream's output (so t{N-1} outputs N). No --tier: the tier that dagy
  resolves by default is the one compared (printed per size). Twice: on the default store (the
  embedded SQLite database, in a temporary DAGY_HOME: every attempt's start and end committed
  before the run goes on) and with `--store memory` (no history kept). Checked: exit 0, run status
  "completed", every task completed and t{N-1}'s output equal to N.
- Prefect 3: `python chainN.py` in Prefect's own venv, a flow that calls `add(prev, 1)` N times,
  each task's result feeding the next (direct synchronous calls), and asserts the result is N.
  Prefect runs as on a user's first run: a fresh temporary PREFECT_HOME per size, PREFECT_API_URL
  unset (so it starts its temporary local server on SQLite), analytics off, logging at WARNING.
  Its first run in a fresh PREFECT_HOME creates the database (all its Alembic migrations) and
  registers its block types, so one untimed warm-up run (a 1-task chain) is made in each
  PREFECT_HOME before the timed runs.

Then the marginal cost per task of each tool, (t(N_max) - t(N_min)) / (N_max - N_min), and the
ratio of the two.

Usage: scripts/bench-prefect.sh [N ...] [--repeat R] [--dagy PATH]
(the script makes the Prefect venv and passes --prefect-python).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMEOUT_S = 3600

PREFECT_PROGRAM = '''\
from prefect import flow, task


@task
def add(prev, x):
    return prev + x


@flow
def chain{n}():
    value = 0
    for _ in range({n}):
        value = add(value, 1)
    return value


if __name__ == "__main__":
    result = chain{n}()
    assert result == {n}, result
'''


def default_dagy():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/dagy/target")
    return os.path.join(target, "release", "dagy")


def dagy_flow(n):
    tasks = []
    for i in range(n):
        t = {"id": f"t{i}", "handler": "sum", "args": {"add": 1}}
        if i > 0:
            t["depends_on"] = [f"t{i - 1}"]
        tasks.append(t)
    return {"spec_version": 1, "name": f"chain{n}", "tasks": tasks}


def timed(cmd, env=None):
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    return time.perf_counter() - start, proc


def fail(what, proc):
    sys.stderr.write(f"{what} failed (exit {proc.returncode})\n--- stdout\n{proc.stdout[-4000:]}\n"
                     f"--- stderr\n{proc.stderr[-4000:]}\n")
    sys.exit(1)


STORES = ("sqlite", "memory")


def run_dagy(dagy, path, n, store, home):
    env = dict(os.environ, DAGY_HOME=str(home))
    secs, proc = timed([dagy, "run", str(path), "--json", "--quiet", "--store", store], env=env)
    if proc.returncode != 0:
        fail(f"dagy chain{n}", proc)
    record = json.loads(proc.stdout)
    tasks = record.get("tasks", [])
    if (record.get("status") != "completed" or len(tasks) != n
            or any(t.get("status") != "completed" for t in tasks)
            or tasks[-1].get("output") != n):
        fail(f"dagy chain{n} (status {record.get('status')!r}, last output "
             f"{tasks[-1].get('output') if tasks else None!r})", proc)
    return secs, record.get("plan", {}).get("tier")


def prefect_env(home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    })
    return env


def run_prefect(python, path, env, n):
    secs, proc = timed([python, str(path)], env=env)
    if proc.returncode != 0:
        fail(f"prefect chain{n}", proc)
    return secs


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt(secs):
    return f"{secs:.3f} s" if secs >= 1 else f"{secs * 1000:.1f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[100, 1000], help="chain lengths")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per tool and size")
    ap.add_argument("--dagy", default=default_dagy(), help="the dagy binary")
    ap.add_argument("--prefect-python", default=sys.executable,
                    help="python of the venv where Prefect 3 is installed")
    args = ap.parse_args()
    sizes = sorted(set(args.sizes))
    if not sizes or sizes[0] < 1 or args.repeat < 1:
        ap.error("sizes and --repeat must be positive")
    if not os.access(args.dagy, os.X_OK):
        ap.error(f"no dagy binary at {args.dagy} (build it with cargo build --release -p dagy-cli)")

    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    dagy_version = subprocess.run([args.dagy, "--version"], capture_output=True,
                                  text=True).stdout.strip()
    prefect_version = subprocess.run(
        [args.prefect_python, "-c",
         "import platform, prefect; print(prefect.__version__, '(python', "
         "platform.python_version() + ')')"],
        capture_output=True, text=True, check=True).stdout.strip()
    print(f"machine: nproc={nproc}, {cpu_model()}, load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"dagy: {args.dagy} ({dagy_version})")
    print(f"prefect: {prefect_version}, {args.prefect_python}")
    print(f"median wall time of {args.repeat} run(s) of the whole process per tool and size; "
          "one untimed warm-up run of each tool per size")

    dagy_med, prefect_med = {store: {} for store in STORES}, {}
    with tempfile.TemporaryDirectory(prefix="dagy-bench-prefect-") as tmp:
        tmp = Path(tmp)
        for n in sizes:
            flow_path = tmp / f"chain{n}.json"
            flow_path.write_text(json.dumps(dagy_flow(n)))
            dagy_times, tiers = {}, set()
            for store in STORES:
                home = tmp / f"dagy-home-{store}-{n}"
                run_dagy(args.dagy, flow_path, n, store, home)  # warm-up (page cache)
                runs = [run_dagy(args.dagy, flow_path, n, store, home) for _ in range(args.repeat)]
                dagy_times[store] = [s for s, _ in runs]
                tiers |= {t for _, t in runs if t}
                dagy_med[store][n] = statistics.median(dagy_times[store])

            program = tmp / f"chain{n}.py"
            program.write_text(PREFECT_PROGRAM.format(n=n))
            warmup = tmp / "chain1.py"
            warmup.write_text(PREFECT_PROGRAM.format(n=1))
            home = tmp / f"prefect-home-{n}"
            home.mkdir()
            env = prefect_env(home)
            first = run_prefect(args.prefect_python, warmup, env, 1)
            migrated = (home / "prefect.db").exists()
            prefect_times = [run_prefect(args.prefect_python, program, env, n)
                             for _ in range(args.repeat)]

            prefect_med[n] = statistics.median(prefect_times)
            made = ", creates prefect.db: Alembic migrations, block types" if migrated else ""
            print(f"prefect warm-up, N={n}: first run in a fresh PREFECT_HOME (1-task chain"
                  f"{made}) took {fmt(first)}, untimed")
            for store in STORES:
                med = dagy_med[store][n]
                print(f"N={n}: dagy --store {store} {fmt(med)} (tier {'/'.join(sorted(tiers)) or '?'}), "
                      f"prefect {fmt(prefect_med[n])}, prefect/dagy {prefect_med[n] / med:.0f}x"
                      f"   [dagy runs: {', '.join(fmt(s) for s in dagy_times[store])}; "
                      f"prefect runs: {', '.join(fmt(s) for s in prefect_times)}]", flush=True)

    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        p = (prefect_med[hi] - prefect_med[lo]) / (hi - lo)
        for store in STORES:
            d = (dagy_med[store][hi] - dagy_med[store][lo]) / (hi - lo)
            ratio = f"{p / d:.0f}x" if d > 0 else "n/a (dagy's marginal is within noise)"
            print(f"marginal cost per task (N={lo} to N={hi}): dagy --store {store} "
                  f"{d * 1e6:.1f} us, prefect {p * 1e3:.2f} ms, prefect/dagy {ratio}")


if __name__ == "__main__":
    main()
