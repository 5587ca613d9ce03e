#!/usr/bin/env python3
"""SQLite's own floor for a micro step of `dagy run` on the default store: the one write
transaction a step makes when it hands the lease on (end the task's attempt, move the cursor
and keep the lease, read the next task and its upstream, start its attempt), statement for
statement, from Python's `sqlite3` on a copy of a real run's database, with Dagy's settings
(WAL, synchronous=NORMAL). Figures, not a test: what is left per step is SQLite's, before
Dagy's engine and its record encoding.

Usage: python3 scripts/bench_sqlite_floor.py [--dagy PATH] [--tasks 10000] [--repeat 3]
"""

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time

from bench_scaling import chain  # the same chains as the scaling table


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dagy", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/dagy/target")),
        "release", "dagy"))
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dagy-sqlite-floor-")
    try:
        flow = os.path.join(tmp, "chain.json")
        chain(args.tasks, flow)
        home = os.path.join(tmp, "home")
        env = dict(os.environ, DAGY_HOME=home)
        subprocess.run([args.dagy, "run", flow, "--tier", "micro", "--quiet"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        db = os.path.join(tmp, "copy.db")
        source = sqlite3.connect(os.path.join(home, "runs.db"))
        target = sqlite3.connect(db)
        source.backup(target)
        source.close()
        target.close()
        print(f"dagy run of a {args.tasks:,}-task chain (micro), then {args.repeat} passes of "
              "its steps replayed on a copy of its database")
        print(f"per step: {', '.join(f'{us:.1f} µs' for us in replay(db, args.repeat))}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replay(db, repeat):
    """Each pass replays every step's transaction; yields µs per step."""
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    run_id, run_record = c.execute("SELECT run_id, record FROM runs").fetchone()
    tasks = [r[0] for r in c.execute("SELECT task_id FROM tasks ORDER BY position")]
    task_record = c.execute("SELECT record FROM tasks LIMIT 1").fetchone()[0]
    run_q = "SELECT record, next_token, cursor FROM runs WHERE run_id = ?"
    task_q = "SELECT record FROM tasks WHERE run_id = ? AND task_id = ?"
    write_run = "UPDATE runs SET record = ?, next_token = ?, cursor = ? WHERE run_id = ?"
    write_task = "UPDATE tasks SET record = ? WHERE run_id = ? AND task_id = ?"
    for _ in range(repeat):
        start = time.perf_counter()
        for i, task in enumerate(tasks):
            c.execute("BEGIN IMMEDIATE")
            # End the attempt (the lease checked on the run row).
            c.execute(run_q, (run_id,)).fetchone()
            c.execute(task_q, (run_id, task)).fetchone()
            c.execute(write_task, (task_record, run_id, task))
            # Move the cursor, keep the lease.
            c.execute(write_run, (run_record, i + 1, json.dumps({"task_id": task}), run_id))
            if i + 1 < len(tasks):
                # Read the next task (its upstream is the record just written), start it.
                c.execute("SELECT spec, record, next FROM tasks WHERE run_id = ? AND task_id = ?",
                          (run_id, tasks[i + 1])).fetchone()
                c.execute(write_task, (task_record, run_id, tasks[i + 1]))
            c.execute("COMMIT")
        yield (time.perf_counter() - start) / len(tasks) * 1e6


if __name__ == "__main__":
    main()
