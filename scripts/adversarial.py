#!/usr/bin/env python3
"""Adversarial tests of `dagy run --store dynamodb` against moto's DynamoDB server.

Scenarios (pick with --only, comma-separated; all by default):

  kill        10-task `append` chains, SIGKILL of `dagy run` and of resumes at random moments,
              resumed until the run is final
  resumers    a run killed mid-way, then five `--resume` processes started at once
  signals     double SIGINT 50 ms apart, and 0-20 ms apart (exit 130; the run must not be left
              running; a resume 3.5 s later must end it as its tasks say), and a single SIGINT
              (the task in flight finishes, the rest is cancelled, the run ends cancelled, exit 1)
  stall15     a proxy between dagy and moto holds all traffic for 15 s mid-run
  stall70     the same for 70 s (full set only, or when named in --only)
  malformed   hundreds of malformed flows through `validate`, `plan` and `run`
  deep        a 140-task `echo` chain (deep outputs) and a 300-task `sum` chain (no example
              handler passes its input through unchanged; `sum` outputs a number)

The witness: `append` tasks write their line to a file when they start, so the file tells
which tasks ran and how often. The stored state is read straight from the table (DynamoDB's
JSON API, signed with SigV4; standard library only).

Anomaly counts: tasks lost (a completed run or task with no witness line), completed tasks run
twice (a line for t_i after a later task's line, or a repeat with no executor stopped in between),
runs misreported (exit code or --json against the stored run, or a stored run against its own
tasks), exits 101 (one per process), other (timeouts, deaths by signal, unexpected exits, runs left
running, refused runs leaving items, "store is unavailable" on a healthy store, ...).
Every anomaly is printed with what reproduces it (flow file, run id, table, timings, stderr tail);
the work directory is kept when there is one. The exit code is 1 when any count is non-zero.

Usage: adversarial.py --dagy PATH [--endpoint URL] [--quick] [--only a,b] [--seed N]
       [--workdir DIR] [--keep] [--report FILE]
(scripts/adversarial.sh builds the CLI, starts moto and runs this.)
"""

import argparse
import datetime
import hashlib
import hmac
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

CATEGORIES = ("lost", "double", "misreported", "exit101", "other")
CATEGORY_TITLES = {
    "lost": "tasks lost",
    "double": "completed run twice",
    "misreported": "runs misreported",
    "exit101": "exits 101",
    "other": "other anomalies",
}
RUN_FINAL = {"completed", "failed", "timed_out", "cancelled"}
TASK_FINAL = {"completed", "failed", "timed_out", "cancelled", "skipped"}
ALL_SCENARIOS = ("kill", "resumers", "signals", "stall15", "stall70", "malformed", "deep")

# Trials per scenario: (full, quick). stall70 runs in the quick set only when named in --only.
TRIALS = {
    "kill": (40, 5),
    "resumers": (4, 1),
    "signals": (3, 1),  # each trial: one double-SIGINT case and one single-SIGINT case
    "stall15": (2, 1),
    "stall70": (1, 0),
    "malformed": (240, 70),
    "deep": (1, 1),
}

LIVE = set()  # processes to kill if this script stops early
LIVE_LOCK = threading.Lock()
PRINT_LOCK = threading.Lock()


def say(*parts):
    with PRINT_LOCK:
        print(*parts, flush=True)


def now_ms():
    return int(time.time() * 1000)


def tail(text, lines=15, chars=3000):
    text = text or ""
    out = "\n".join(text.splitlines()[-lines:])
    return out[-chars:]


# ---------------------------------------------------------------------------------------------
# DynamoDB, directly (SigV4, JSON protocol)


class Dynamo:
    def __init__(self, endpoint, region="us-east-1", key="test", secret="test"):
        url = urllib.parse.urlparse(endpoint)
        self.host = url.hostname
        self.port = url.port or 80
        self.hostport = url.netloc
        self.region, self.key, self.secret = region, key, secret

    def _sign(self, body, target):
        t = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = t.strftime("%Y%m%dT%H%M%SZ"), t.strftime("%Y%m%d")
        headers = {
            "content-type": "application/x-amz-json-1.0",
            "host": self.hostport,
            "x-amz-date": amz_date,
            "x-amz-target": target,
        }
        signed = ";".join(sorted(headers))
        canonical = "POST\n/\n\n" + "".join(f"{k}:{headers[k]}\n" for k in sorted(headers))
        canonical += "\n" + signed + "\n" + hashlib.sha256(body).hexdigest()
        scope = f"{day}/{self.region}/dynamodb/aws4_request"
        to_sign = "AWS4-HMAC-SHA256\n{}\n{}\n{}".format(
            amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()
        )
        k = ("AWS4" + self.secret).encode()
        for part in (day, self.region, "dynamodb", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.key}/{scope}, SignedHeaders={signed}, Signature={sig}"
        )
        return headers

    def call(self, op, payload):
        body = json.dumps(payload).encode()
        headers = self._sign(body, f"DynamoDB_20120810.{op}")
        last = None
        for _ in range(3):
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                conn.request("POST", "/", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if resp.status != 200:
                    raise RuntimeError(f"DynamoDB {op}: HTTP {resp.status}: {data[:500]!r}")
                return json.loads(data)
            except (OSError, http.client.HTTPException) as e:
                last = e
                time.sleep(0.5)
        raise RuntimeError(f"DynamoDB {op}: {last}")

    def run_items(self, table, run_id):
        items, start = [], None
        while True:
            req = {
                "TableName": table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": f"RUN#{run_id}"}},
                "ConsistentRead": True,
            }
            if start:
                req["ExclusiveStartKey"] = start
            out = self.call("Query", req)
            items += [plain_item(i) for i in out.get("Items", [])]
            start = out.get("LastEvaluatedKey")
            if not start:
                return items

    def delete_table(self, table):
        try:
            self.call("DeleteTable", {"TableName": table})
        except RuntimeError:
            pass


def plain(v):
    (kind, val), = v.items()
    if kind == "S":
        return val
    if kind == "N":
        return int(val) if val.lstrip("-").isdigit() else float(val)
    if kind == "BOOL":
        return val
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: plain(x) for k, x in val.items()}
    if kind == "L":
        return [plain(x) for x in val]
    return val


def plain_item(item):
    return {k: plain(v) for k, v in item.items()}


class RunState:
    """A run's items as stored."""

    def __init__(self, items):
        self.items = items
        self.run = next((i for i in items if i.get("sk") == "RUN"), None)
        self.tasks = {}
        for i in items:
            sk = i.get("sk", "")
            if sk.startswith("TASK#"):
                self.tasks[i.get("task_id", sk[5:])] = i

    @property
    def status(self):
        return self.run.get("status") if self.run else None

    def task_status(self, tid):
        t = self.tasks.get(tid)
        return t.get("status") if t else None

    def lease_held(self):
        if not self.run or not self.run.get("lease_owner"):
            return False
        return int(self.run.get("lease_expires_at_ms") or 0) > now_ms()

    def summary(self, order=None):
        order = order or sorted(self.tasks)
        ts = " ".join(f"{t}={self.task_status(t)}" for t in order)
        lease = ""
        if self.run and self.run.get("lease_owner"):
            left = int(self.run.get("lease_expires_at_ms") or 0) - now_ms()
            lease = f" lease={self.run.get('lease_owner')} ({left} ms left)"
        err = f" error={self.run.get('error')!r}" if self.run and self.run.get("error") else ""
        return f"run={self.status}{lease}{err} tasks: {ts}"

    def problems(self, order=None):
        """Ways the stored run contradicts its own tasks."""
        if self.run is None:
            return ["no run item"]
        p = []
        st = self.status
        order = order or list(self.tasks)
        missing = [t for t in order if t not in self.tasks]
        if missing:
            p.append(f"task items missing: {missing[:5]}")
        statuses = {t: self.task_status(t) for t in order if t in self.tasks}
        if st == "completed":
            bad = {t: s for t, s in statuses.items() if s != "completed"}
            if bad:
                p.append(f"run completed but tasks not completed: {dict(list(bad.items())[:5])}")
        if st in RUN_FINAL:
            open_ = {t: s for t, s in statuses.items() if s not in TASK_FINAL}
            if open_:
                p.append(f"run {st} but tasks not final: {dict(list(open_.items())[:5])}")
            cancelled = [t for t, s in statuses.items() if s == "cancelled"]
            if cancelled and st != "cancelled":
                p.append(f"run {st} but tasks cancelled: {cancelled[:5]}")
            if st == "failed" and not any(s in ("failed", "timed_out") for s in statuses.values()):
                p.append("run failed but no task failed")
        return p


# ---------------------------------------------------------------------------------------------
# Processes


class Result:
    def __init__(self, argv, code, stdout, stderr, elapsed, timed_out=False, killed=False):
        self.argv, self.code, self.stdout, self.stderr = argv, code, stdout, stderr
        self.elapsed, self.timed_out, self.killed = elapsed, timed_out, killed

    def json(self):
        try:
            return json.loads(self.stdout)
        except (ValueError, TypeError):
            return None

    def short(self):
        how = "timed out" if self.timed_out else ("killed" if self.killed else f"exit {self.code}")
        return f"{how} after {self.elapsed:.2f}s"

    def describe(self):
        how = "timed out" if self.timed_out else ("killed" if self.killed else f"exit {self.code}")
        return f"`{cmdline(self.argv)}` {how} after {self.elapsed:.2f}s"


def cmdline(argv):
    return " ".join(str(a) if " " not in str(a) else repr(str(a)) for a in argv)


class Proc:
    def __init__(self, argv, env, out_dir, tag):
        self.argv = argv
        self.out = os.path.join(out_dir, f"{tag}.out")
        self.err = os.path.join(out_dir, f"{tag}.err")
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.p = subprocess.Popen(
                argv, env=env, stdout=o, stderr=e, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        with LIVE_LOCK:
            LIVE.add(self.p)
        self.killed = False
        self.result = None

    def age(self):
        return time.monotonic() - self.t0

    def poll(self):
        return self.p.poll()

    def signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            if sig == signal.SIGKILL:
                self.killed = True

    def kill(self):
        self.signal(signal.SIGKILL)
        return self.wait(30)

    def wait(self, timeout):
        if self.result:
            return self.result
        timed_out = False
        try:
            self.p.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            timed_out = True
            self.p.kill()
            self.p.wait()
        with LIVE_LOCK:
            LIVE.discard(self.p)
        elapsed = self.age()
        with open(self.out, "rb") as f:
            out = f.read().decode("utf-8", "replace")
        with open(self.err, "rb") as f:
            err = f.read().decode("utf-8", "replace")
        self.result = Result(self.argv, self.p.returncode, out, err, elapsed, timed_out,
                             self.killed and not timed_out)
        return self.result

    def wait_until(self, deadline_age, poll=0.01, cond=None):
        """Sleeps until age() >= deadline_age, the process exits, or cond() holds."""
        while self.age() < deadline_age:
            if self.p.poll() is not None:
                return "exited"
            if cond and cond():
                return "cond"
            time.sleep(poll)
        return "time"


class Dagy:
    def __init__(self, binary, endpoint, workdir):
        self.binary, self.endpoint, self.workdir = binary, endpoint, workdir
        self._n = 0
        self._lock = threading.Lock()

    def env(self, table, endpoint=None):
        env = dict(os.environ)
        for k in ("DAGY_ECS_CLUSTER_ARN", "DAGY_SFN_ROLE_ARN", "DAGY_SFN_TASK_EXECUTOR_ARN",
                  "DAGY_AUTO_TIER", "DAGY_API_URL", "AWS_PROFILE", "RUST_LOG"):
            env.pop(k, None)
        env.update({
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "DAGY_TABLE_NAME": table or "dagy-adv-unused",
        })
        return env

    def start(self, args, table, endpoint=None, tag="p"):
        with self._lock:
            self._n += 1
            n = self._n
        return Proc([self.binary, *args], self.env(table, endpoint), self.workdir, f"{n:05}-{tag}")

    def run(self, args, table, timeout=60, endpoint=None, tag="p"):
        return self.start(args, table, endpoint, tag).wait(timeout)


# ---------------------------------------------------------------------------------------------
# A TCP proxy that can hold all traffic


class StallProxy:
    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.flowing = threading.Event()
        self.flowing.set()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.closed = False
        self._timer = None
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client):
        self.flowing.wait()
        try:
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                self.flowing.wait()  # a stall holds whatever arrived, closes included
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass

    def stall(self, seconds):
        self.flowing.clear()
        self._timer = threading.Timer(seconds, self.flowing.set)
        self._timer.daemon = True
        self._timer.start()

    def close(self):
        self.closed = True
        self.flowing.set()
        if self._timer:
            self._timer.cancel()
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# Bookkeeping


class Scenario:
    def __init__(self, name, ctx):
        self.name, self.ctx = name, ctx
        self.trials = 0
        self.counts = {c: 0 for c in CATEGORIES}
        self.anomalies = []
        self.notes = []
        self.exits = {}
        self.elapsed = 0.0
        self.lock = threading.Lock()

    def anomaly(self, category, title, count=1, **detail):
        with self.lock:
            self.counts[category] += count
            detail = {k: list(v) if isinstance(v, list) else v for k, v in detail.items()}
            self.anomalies.append({"category": category, "title": title, "count": count, **detail})
        lines = [f"!! [{self.name}] {CATEGORY_TITLES[category]} (+{count}): {title}"]
        for k, v in detail.items():
            v = v if isinstance(v, str) else json.dumps(v, default=str)
            if "\n" in v:
                lines.append(f"   {k}:")
                lines += ["     | " + line for line in v.splitlines()]
            else:
                lines.append(f"   {k}: {v}")
        say("\n".join(lines))

    def note(self, text):
        with self.lock:
            self.notes.append(text)

    def exit_seen(self, code):
        with self.lock:
            self.exits[code] = self.exits.get(code, 0) + 1

    def check_exit(self, res, allowed=(0, 1), **detail):
        """Counts the exit code; an exit outside `allowed` is an anomaly. True if allowed."""
        if res.killed:
            self.exit_seen("SIGKILL (ours)")
            return True
        code = "timeout" if res.timed_out else res.code
        self.exit_seen(code)
        if res.timed_out:
            self.anomaly("other", f"timed out: {res.describe()}", stderr=tail(res.stderr), **detail)
            return False
        if res.code == 101:
            self.anomaly("exit101", f"panic: {res.describe()}", stderr=tail(res.stderr, 25), **detail)
            return False
        if res.code < 0:
            self.anomaly("other", f"died by signal {-res.code}: {res.describe()}",
                         stderr=tail(res.stderr), **detail)
            return False
        if res.code not in allowed:
            self.anomaly("other", f"unexpected exit {res.code} (expected {allowed}): {res.describe()}",
                         stderr=tail(res.stderr), **detail)
            return False
        return True

    def check_report(self, res, state, order, **detail):
        """The process's exit code and JSON against the stored run, and the stored run against
        its own tasks: one anomaly per process, listing every contradiction."""
        if res.killed or res.timed_out or res.code not in (0, 1):
            return
        st = state.status
        problems = []
        not_done = {t: state.task_status(t) for t in order if state.task_status(t) != "completed"}
        if res.code == 0 and st != "completed":
            problems.append(f"exit 0 but the stored run is {st}")
        elif res.code == 0 and not_done:
            problems.append(f"exit 0 but tasks not completed: {dict(list(not_done.items())[:5])}")
        elif res.code == 1 and st == "completed":
            problems.append("exit 1 but the stored run is completed")
        doc = res.json()
        if isinstance(doc, dict) and doc.get("status") != st:
            problems.append(f"--json says {doc.get('status')!r}, the table says {st!r}")
        if state.run:
            problems += state.problems(order)
        if problems:
            self.anomaly("misreported", "; ".join(problems), state=state.summary(order),
                         command=res.describe(), stderr=tail(res.stderr, 6), **detail)


class Ctx:
    def __init__(self, args, dagy, ddb, rng):
        self.args, self.dagy, self.ddb, self.rng = args, dagy, ddb, rng
        self.tables = []
        self.tag = f"{os.getpid()}-{rng.randrange(16**4):04x}"

    def table(self, scenario):
        name = f"adv-{scenario}-{self.tag}"
        res = self.dagy.run(["table", "create"], name, timeout=60, tag=f"table-{scenario}")
        if res.code != 0:
            raise RuntimeError(f"dagy table create {name} failed: {res.describe()}\n{tail(res.stderr)}")
        self.tables.append(name)
        return name

    def state(self, table, run_id):
        return RunState(self.ddb.run_items(table, run_id))

    def write_flow(self, name, flow):
        path = os.path.join(self.dagy.workdir, name)
        if isinstance(flow, bytes):
            data = flow
        elif isinstance(flow, str):
            data = flow.encode("utf-8", "surrogatepass")
        else:
            data = json.dumps(flow).encode()
        with open(path, "wb") as f:
            f.write(data)
        return path


def chain(n, make):
    tasks = []
    for i in range(1, n + 1):
        t = {"id": f"t{i}", **make(i)}
        if i > 1:
            t["depends_on"] = [f"t{i - 1}"]
        tasks.append(t)
    return tasks


def read_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def witness_check(scn, lines, order, marks, state, detail):
    """Tasks lost and tasks run twice, from the witness.

    `marks`: witness line counts at each moment an executor stopped without finishing (our
    SIGKILLs, an exit on a store error). A task's line may repeat only with such a mark between
    the two lines; a line for t_i after a line for a later task t_j of the chain means t_i ran
    again after it had completed (t_j starts only once t_i completed)."""
    pos = {t: [k for k, line in enumerate(lines) if line == t] for t in order}
    unknown = sorted(set(lines) - set(order))
    if unknown:
        scn.anomaly("other", f"unexpected witness lines {unknown[:5]}", witness=lines, **detail)
    double = {}
    for idx, t in enumerate(order):
        later_first = [pos[u][0] for u in order[idx + 1:] if pos[u]]
        if later_first:
            first_later = min(later_first)
            after = [p for p in pos[t] if p > first_later]
            if after:
                double[t] = f"ran again (line {after[0] + 1}) after a later task started (line {first_later + 1})"
                continue
        for p, q in zip(pos[t], pos[t][1:]):
            if not any(p + 1 <= m <= q for m in marks):
                double[t] = f"ran at lines {p + 1} and {q + 1} with no executor stopped in between"
                break
    for t, why in double.items():
        scn.anomaly("double", f"task {t} {why}", witness=" ".join(lines), stop_marks=marks,
                    state=state.summary(order), **detail)
    lost = []
    for t in order:
        if pos[t]:
            continue
        if state.task_status(t) == "completed" or state.status == "completed":
            lost.append(t)
    if lost:
        scn.anomaly("lost", f"tasks recorded completed but never ran: {lost}", count=len(lost),
                    witness=" ".join(lines), state=state.summary(order), **detail)


def abbreviate(v, depth=0):
    if depth > 12:
        return "..."
    if isinstance(v, str) and len(v) > 80:
        return v[:20] + f"...({len(v)} chars)"
    if isinstance(v, list):
        items = [abbreviate(x, depth + 1) for x in v[:8]]
        return items + [f"...({len(v)} items)"] if len(v) > 8 else items
    if isinstance(v, dict):
        return {abbreviate(k): abbreviate(x, depth + 1) for k, x in list(v.items())[:20]}
    return v


def flow_text(flow, limit=1500):
    if isinstance(flow, (bytes, str)):
        text = flow if isinstance(flow, str) else flow.decode("utf-8", "replace")
        return repr(text[:300]) + (f"...({len(text)} chars)" if len(text) > 300 else "")
    text = json.dumps(abbreviate(flow))
    return text if len(text) <= limit else text[:limit] + f"...({len(text)} chars)"


# ---------------------------------------------------------------------------------------------
# 1. kill -9 at random points


def scenario_kill(scn, ctx, trials):
    table = ctx.table("kill")
    rng = ctx.rng
    for trial in range(trials):
        scn.trials += 1
        run_id = f"adv-kill-{trial}-{rng.randrange(16**6):06x}"
        witness = os.path.join(ctx.dagy.workdir, f"{run_id}.witness")
        sleeps = [round(rng.uniform(0.2, 0.5), 2) for _ in range(10)]
        tasks = chain(10, lambda i: {"handler": "append",
                                     "args": {"path": witness, "line": f"t{i}", "sleep": sleeps[i - 1]}})
        flow = {"spec_version": 1, "name": "adv-kill", "tasks": tasks}
        path = ctx.write_flow(f"{run_id}.json", flow)
        order = [t["id"] for t in tasks]
        ttl = round(rng.uniform(2.0, 3.0), 2)
        tier = rng.choice([None, "nano"])
        extra = ["--tier", tier] if tier else []
        kills = rng.randint(1, 3)  # at most 3: a task interrupted more than 3 times fails by design
        events, marks = [], []
        detail = {"run_id": run_id, "table": table, "flow": path, "lease_ttl": ttl, "tier": tier or "auto"}

        def remaining():
            # Roughly the time left: the sleeps of tasks not started yet, a little per task.
            done = set(read_lines(witness))
            return sum(s + 0.04 for t, s in zip(order, sleeps) if t not in done)

        fresh = ["run", path, "--store", "dynamodb", "--json", "--lease-ttl", str(ttl), "--run-id", run_id, *extra]
        again = ["run", "--resume", run_id, "--store", "dynamodb", "--json", "--lease-ttl", str(ttl)]
        created = False  # whether the run item exists (a kill can come before it is written)
        last = None
        for step in range(12):
            what = "resume" if created else ("run" if step == 0 else "run again")
            # A fresh run: within its expected run time; a resume: while it waits for the lease
            # or while it runs.
            budget = remaining() + (ttl + 0.5 if created else 0.1)
            kill_at = round(rng.uniform(0.05, budget), 3) if kills > 0 else None
            p = ctx.dagy.start(again if created else fresh, table, tag=f"kill{trial}-{step}")
            res = None
            if kill_at is not None and p.wait_until(kill_at) == "time":
                res = p.kill()
                if res.killed:
                    marks.append(len(read_lines(witness)))
                    kills -= 1
                    if not created:
                        created = ctx.state(table, run_id).run is not None
                    events.append(f"{what} SIGKILLed at {kill_at:.3f}s (witness {marks[-1]} lines"
                                  f"{'' if created else ', no run item yet'})")
                    scn.check_exit(res, **detail)
                    continue
            if res is None:
                res = p.wait(180)
            created = True
            events.append(f"{what} {res.short()}")
            scn.check_exit(res, events=events, **detail)
            last = res
            state = ctx.state(table, run_id)
            scn.check_report(res, state, order, events=events, **detail)
            if state.status in RUN_FINAL or res.code not in (0, 1):
                break
            # Neither final nor killed by us: the process has to say why.
            scn.anomaly("other", f"{res.describe()} left the run {state.status}",
                        stderr=tail(res.stderr), state=state.summary(order), events=events, **detail)
            marks.append(len(read_lines(witness)))
        state = ctx.state(table, run_id)
        lines = read_lines(witness)
        counted = last is not None and (last.timed_out or last.code not in (0, 1))  # already an anomaly
        if state.status != "completed" and not counted:
            scn.anomaly("other", f"run not completed after its resumes: {state.summary(order)}",
                        events=events, stderr=tail(last.stderr if last else ""), **detail)
        witness_check(scn, lines, order, marks, state, dict(detail, events=events))
        say(f"   kill {trial + 1}/{trials}: {run_id} {state.status}; " + "; ".join(events))


# ---------------------------------------------------------------------------------------------
# 2. five concurrent resumers


def scenario_resumers(scn, ctx, trials):
    table = ctx.table("resumers")
    rng = ctx.rng
    for trial in range(trials):
        scn.trials += 1
        run_id = f"adv-res-{trial}-{rng.randrange(16**6):06x}"
        witness = os.path.join(ctx.dagy.workdir, f"{run_id}.witness")
        tasks = chain(10, lambda i: {"handler": "append",
                                     "args": {"path": witness, "line": f"t{i}", "sleep": 0.3}})
        flow = {"spec_version": 1, "name": "adv-resumers", "tasks": tasks}
        path = ctx.write_flow(f"{run_id}.json", flow)
        order = [t["id"] for t in tasks]
        ttl = 2
        k = rng.randint(1, 8)
        tier = ["--tier", "nano"] if trial % 2 else []
        detail = {"run_id": run_id, "table": table, "flow": path, "lease_ttl": ttl, "killed_in_task": k,
                  "tier": "nano" if tier else "auto"}
        p = ctx.dagy.start(["run", path, "--store", "dynamodb", "--json", "--lease-ttl", str(ttl),
                            "--run-id", run_id, *tier], table, tag=f"res{trial}")
        p.wait_until(60, cond=lambda: len(read_lines(witness)) >= k)
        res = p.kill()
        marks = [len(read_lines(witness))]
        scn.check_exit(res, **detail)
        procs = [ctx.dagy.start(["run", "--resume", run_id, "--store", "dynamodb", "--json",
                                 "--lease-ttl", str(ttl)], table, tag=f"res{trial}-r{j}")
                 for j in range(5)]
        results = [q.wait(180) for q in procs]
        state = ctx.state(table, run_id)
        for j, r in enumerate(results):
            scn.check_exit(r, resumer=j, **detail)
            scn.check_report(r, state, order, resumer=j, **detail)
        if state.status != "completed":
            scn.anomaly("other", f"run not completed after 5 resumers: {state.summary(order)}",
                        exits=[r.code for r in results], stderr=tail(results[0].stderr), **detail)
        witness_check(scn, read_lines(witness), order, marks, state, detail)
        say(f"   resumers {trial + 1}/{trials}: {run_id} killed in t{k}, resumer exits "
            f"{[r.code for r in results]}, {state.status}")


# ---------------------------------------------------------------------------------------------
# 3. signals


def sleep_chain_flow(name):
    return {"spec_version": 1, "name": name,
            "tasks": chain(10, lambda i: {"handler": "sleep", "args": {"seconds": 0.5}})}


def scenario_signals(scn, ctx, trials):
    table = ctx.table("signals")
    gaps = [(0.05, 0.01), (0.05, 0.0), (0.05, 0.02)]
    for trial in range(trials):
        for gap in gaps[trial % len(gaps)]:
            double_signal(scn, ctx, table, trial, gap)
        single_signal(scn, ctx, table, trial)


def double_signal(scn, ctx, table, trial, gap):
    """Double SIGINT: exit 130 at once; the run must not stay `running`; a resume ends it as its
    tasks say. The brief's gap is 50 ms; a handler that stops at once when cancelled can let the
    first SIGINT end the run within 50 ms, so tighter gaps are tried too."""
    scn.trials += 1
    run_id = f"adv-sig2-{trial}-{int(gap * 1000)}ms-{ctx.rng.randrange(16**6):06x}"
    flow = sleep_chain_flow("adv-double-signal")
    path = ctx.write_flow(f"{run_id}.json", flow)
    order = [t["id"] for t in flow["tasks"]]
    detail = {"run_id": run_id, "table": table, "flow": path,
              "timing": f"SIGINT at 1.5 s and {gap * 1000:.0f} ms later, lease TTL 3, "
                        "resume 3.5 s after the exit"}
    p = ctx.dagy.start(["run", path, "--store", "dynamodb", "--json", "--lease-ttl", "3",
                        "--run-id", run_id], table, tag=f"sig2-{trial}")
    p.wait_until(1.5)
    p.signal(signal.SIGINT)
    time.sleep(gap)
    alive = p.poll() is None
    p.signal(signal.SIGINT)
    res = p.wait(30)
    if not alive:
        scn.note(f"{run_id}: exited ({res.code}) before the second SIGINT")
    scn.check_exit(res, allowed=(130,) if alive else (1,), **detail)
    after = ctx.state(table, run_id)
    if after.status not in RUN_FINAL:
        scn.anomaly("other", f"run left {after.status} after the double SIGINT (exit {res.code}); "
                    f"lease still held: {after.lease_held()}", state=after.summary(order),
                    stderr=tail(res.stderr, 6), **detail)
    elif after.lease_held():
        scn.anomaly("other", "lease not released after the double SIGINT",
                    state=after.summary(order), **detail)
    else:
        probs = after.problems(order)
        if probs:
            scn.anomaly("misreported", "after the double SIGINT: " + "; ".join(probs),
                        state=after.summary(order), **detail)
    time.sleep(3.5)
    r2 = ctx.dagy.run(["run", "--resume", run_id, "--store", "dynamodb", "--json", "--lease-ttl", "3"],
                      table, timeout=60, tag=f"sig2-{trial}-resume")
    scn.check_exit(r2, **detail)
    final = ctx.state(table, run_id)
    scn.check_report(r2, final, order, after_abort=after.summary(order), **detail)
    if final.status not in RUN_FINAL:
        scn.anomaly("other", f"resume left the run {final.status}", state=final.summary(order),
                    stderr=tail(r2.stderr), **detail)
    scn.note(f"double SIGINT {run_id}: exit {res.code}, then {after.summary(order)}; "
             f"resume exit {r2.code}, then {final.summary(order)}")
    say(f"   double SIGINT ({gap * 1000:.0f} ms apart{'' if alive else ', exited before the second'}): "
        f"exit {res.code}, left {after.status}; resume exit {r2.code}: {final.summary(order)}")


def single_signal(scn, ctx, table, trial):
    """Single SIGINT: the task in flight finishes, the rest is cancelled, exit 1."""
    scn.trials += 1
    run_id = f"adv-sig1-{trial}-{ctx.rng.randrange(16**6):06x}"
    flow = sleep_chain_flow("adv-single-signal")
    path = ctx.write_flow(f"{run_id}.json", flow)
    order = [t["id"] for t in flow["tasks"]]
    detail = {"run_id": run_id, "table": table, "flow": path, "timing": "SIGINT at 1.5 s"}
    p = ctx.dagy.start(["run", path, "--store", "dynamodb", "--json", "--lease-ttl", "3",
                        "--run-id", run_id], table, tag=f"sig1-{trial}")
    p.wait_until(1.5)
    signalled_ms = now_ms()
    p.signal(signal.SIGINT)
    res = p.wait(30)
    scn.check_exit(res, **detail)
    state = ctx.state(table, run_id)
    scn.check_report(res, state, order, **detail)
    if res.code in (0, 1) and not res.timed_out:
        if state.status != "cancelled":
            scn.anomaly("misreported", f"single SIGINT: run ended {state.status}, expected cancelled",
                        state=state.summary(order), **detail)
        if res.code != 1:
            scn.anomaly("misreported", f"single SIGINT: exit {res.code}, expected 1",
                        state=state.summary(order), **detail)
    in_flight = [t for t in order if state.tasks.get(t, {}).get("started_at_ms")
                 and int(state.tasks[t]["started_at_ms"]) <= signalled_ms
                 and state.task_status(t) != "completed"]
    if in_flight:
        task = state.tasks[in_flight[0]]
        scn.anomaly("other", f"single SIGINT: task {in_flight[0]} in flight at the signal ended "
                    f"{task.get('status')} ({task.get('error_type')}: {task.get('error_message')}), "
                    "expected it to finish", state=state.summary(order), **detail)
    started_after = [t for t in order if state.tasks.get(t, {}).get("started_at_ms")
                     and int(state.tasks[t]["started_at_ms"]) > signalled_ms + 50]
    if started_after:
        scn.anomaly("other", f"single SIGINT: tasks started after the signal: {started_after}",
                    state=state.summary(order), **detail)
    if state.lease_held():
        scn.anomaly("other", "single SIGINT: lease still held after the exit",
                    state=state.summary(order), **detail)
    say(f"   single SIGINT: exit {res.code}: {state.summary(order)}")


# ---------------------------------------------------------------------------------------------
# 4. store stalls


def scenario_stall(scn, ctx, trials, seconds):
    table = ctx.table(f"stall{seconds}")
    url = urllib.parse.urlparse(ctx.dagy.endpoint)
    rng = ctx.rng
    for trial in range(trials):
        scn.trials += 1
        proxy = StallProxy(url.hostname, url.port or 80)
        try:
            run_id = f"adv-stall{seconds}-{trial}-{rng.randrange(16**6):06x}"
            witness = os.path.join(ctx.dagy.workdir, f"{run_id}.witness")
            tasks = chain(10, lambda i: {"handler": "append",
                                         "args": {"path": witness, "line": f"t{i}", "sleep": 0.3}})
            flow = {"spec_version": 1, "name": f"adv-stall{seconds}", "tasks": tasks}
            path = ctx.write_flow(f"{run_id}.json", flow)
            order = [t["id"] for t in tasks]
            k = rng.randint(2, 7)
            ttl = 5
            detail = {"run_id": run_id, "table": table, "flow": path, "lease_ttl": ttl,
                      "stall": f"{seconds} s, from the start of task t{k}", "proxy": proxy.url}
            p = ctx.dagy.start(["run", path, "--store", "dynamodb", "--json", "--lease-ttl", str(ttl),
                                "--run-id", run_id], table, endpoint=proxy.url, tag=f"stall{seconds}-{trial}")
            p.wait_until(60, cond=lambda: len(read_lines(witness)) >= k)
            stalled_at = p.age()
            proxy.stall(seconds)
            res = p.wait(seconds + 150)
            events = [f"stall at {stalled_at:.2f}s", f"run {res.short()}"]
            scn.check_exit(res, **detail)
            marks = []
            state = ctx.state(table, run_id)
            if res.code == 0:
                scn.check_report(res, state, order, **detail)
            elif res.code == 1 and not res.timed_out:
                marks.append(len(read_lines(witness)))
                scn.check_report(res, state, order, **detail)
                hint = f"dagy run --resume {run_id}"
                if state.status not in RUN_FINAL and hint not in res.stderr:
                    scn.anomaly("other", f"exit 1 with the run {state.status}, and stderr does not say `{hint}`",
                                stderr=tail(res.stderr), **detail)
                # Resume (through the proxy: a resume waits for the store like anyone).
                for attempt in range(3):
                    if state.status in RUN_FINAL:
                        break
                    r2 = ctx.dagy.run(["run", "--resume", run_id, "--store", "dynamodb", "--json",
                                       "--lease-ttl", str(ttl)], table, timeout=seconds + 150,
                                      endpoint=proxy.url, tag=f"stall{seconds}-{trial}-r{attempt}")
                    events.append(f"resume {r2.short()}")
                    scn.check_exit(r2, **detail)
                    state = ctx.state(table, run_id)
                    scn.check_report(r2, state, order, **detail)
                    if r2.code != 0:
                        marks.append(len(read_lines(witness)))
            if state.status != "completed":
                scn.anomaly("other", f"run not completed after the stall and resumes: {state.summary(order)}",
                            events=events, stderr=tail(res.stderr), **detail)
            witness_check(scn, read_lines(witness), order, marks, state, dict(detail, events=events))
            say(f"   stall {seconds}s {trial + 1}/{trials}: {run_id}: " + "; ".join(events)
                + f"; {state.status}")
        finally:
            proxy.close()


# ---------------------------------------------------------------------------------------------
# 5. malformed flows


def nested(depth, leaf=1, kind="list"):
    v = leaf
    for _ in range(depth):
        v = [v] if kind == "list" else {"a": v}
    return v


def base_flow(rng):
    n = rng.randint(1, 4)
    tasks = []
    for i in range(n):
        t = {"id": f"t{i}", "handler": rng.choice(["echo", "sum"])}
        if i:
            t["depends_on"] = [f"t{rng.randrange(i)}"]
        tasks.append(t)
    return {"spec_version": 1, "name": "adv-malformed", "parameters": {"day": "2026-11-24"}, "tasks": tasks}


BAD = {
    "spec_version": [0, 2, -1, "1", 1.5, None, 1e300, [], {}, True, 2**64],
    "name": [None, 3, "", [], {}, "名前 ✓", "a\u0000b", " ", True],
    "parameters": [[], "x", 3, None, True, {"deep": nested(40, kind="dict")}, {"": None}],
    "tasks": [None, {}, "x", [1], [None], [[]], [{}], 3],
    "id": ["", "a b", "x" * 65, "ü", "日本", 3, None, "../x", "a\nb", "t0", "-", ".", [], "\ud800"],
    "handler": ["", "nope", 3, None, "lambda:", "lambda:" + "x" * 300, ["echo"], "ECHO", "echo "],
    "depends_on": ["t0", [3], [None], ["missing"], ["t0", "t0"], [], {}, None, [[]], "", ["ü"]],
    "args": [nested(60), nested(127), nested(130, kind="dict"), None, "x" * 1000, [], 1e300, {"add": "x"}],
    "retries": [-1, 1.5, 1e300, 2**64, 2**63, 2**32, "3", None, True, 1e20, -1e300, 1e-300],
    "retry_delay_seconds": [1e300, -1, [0, 1e300], [], [-1], "1", "NaN", "inf", "Infinity", "-Infinity",
                            1e-300, [1e300, 1e300, 1e300], {"a": 1}, True, 2**64, [None], [[1]], 1.8e308,
                            [0.1, -0.1], 2**63],
    "retry_jitter_factor": [1e300, -0.5, 2, "NaN", 1e-300, 1.0000001, 1.8e308, [0.1], None, "0.2", -1e300],
    "timeout_seconds": [0, -1, 1e300, "60", 2**64, 1e20, 1.7976931348623157e308, [60], None, -1e-300,
                        "NaN", 1e19, 18446744073709551615],
    "runtime_tier": ["huge", "", 3, "NANO", "xlarge", "fargate", None, ["nano"], "step_functions"],
    "memory_mb": [0, -1, 1e300, 2**64, 3.5, "1024", 1e20, 30721, 4294967296, None, -1e300, 10**30],
}
FLOW_FIELDS = ("spec_version", "name", "parameters", "tasks")
TASK_FIELDS = ("id", "handler", "depends_on", "args", "retries", "retry_delay_seconds",
               "retry_jitter_factor", "timeout_seconds", "runtime_tier", "memory_mb")
UNKNOWN = ["retires", "dependson", "", "a b", "ïd", "timeout", "Handler", "__proto__", "x" * 200]


def mutate(rng, flow):
    kind = rng.choice(["flow_field", "task_field", "task_field", "task_field", "delete", "unknown",
                       "cycle", "dup", "swap_type"])
    tasks = flow.get("tasks")
    if kind == "flow_field":
        f = rng.choice(FLOW_FIELDS)
        flow[f] = rng.choice(BAD[f])
    elif kind == "task_field" and isinstance(tasks, list) and tasks:
        t = rng.choice(tasks)
        if isinstance(t, dict):
            f = rng.choice(TASK_FIELDS)
            t[f] = rng.choice(BAD[f])
            if f in ("retry_delay_seconds", "retry_jitter_factor") and rng.random() < 0.7:
                t["retries"] = rng.choice([1, 3, 10])
                if rng.random() < 0.5:
                    t["handler"] = "fail"  # a failure makes the delay count
    elif kind == "delete":
        if rng.random() < 0.4 or not (isinstance(tasks, list) and tasks and isinstance(tasks[0], dict)):
            flow.pop(rng.choice(FLOW_FIELDS), None)
        else:
            rng.choice([t for t in tasks if isinstance(t, dict)] or [{}]).pop(rng.choice(("id", "handler")), None)
    elif kind == "unknown":
        if rng.random() < 0.5 or not (isinstance(tasks, list) and tasks and isinstance(tasks[0], dict)):
            flow[rng.choice(UNKNOWN)] = 1
        else:
            tasks[0][rng.choice(UNKNOWN)] = rng.choice([1, None, "x"])
    elif kind == "cycle" and isinstance(tasks, list) and tasks and all(isinstance(t, dict) for t in tasks):
        a = tasks[0]
        b = tasks[-1]
        a["depends_on"] = [b.get("id", "t0")]
    elif kind == "dup" and isinstance(tasks, list) and tasks:
        tasks.append(json.loads(json.dumps(tasks[0])))
    elif kind == "swap_type" and isinstance(tasks, list) and tasks:
        i = rng.randrange(len(tasks))
        tasks[i] = rng.choice([None, 1, "t", [], [tasks[i]]])
    return flow


def raw_texts():
    good = json.dumps({"spec_version": 1, "name": "x", "tasks": [{"id": "a", "handler": "echo"}]})
    return [
        ("empty file", b""),
        ("null", b"null"),
        ("array", b"[]"),
        ("bare NaN", b"NaN"),
        ("1e999", b"1e999"),
        ("truncated", good[: len(good) // 2].encode()),
        ("trailing garbage", (good + " }}").encode()),
        ("BOM", b"\xef\xbb\xbf" + good.encode()),
        ("invalid UTF-8", good.replace('"x"', '"\xff\xfe"').encode("latin-1")),
        ("duplicate keys", b'{"spec_version":1,"spec_version":2,"name":"x","tasks":[{"id":"a","handler":"echo","id":"b"}]}'),
        ("NaN literal", good.replace('"tasks"', '"retries": NaN, "tasks"').encode()),
        ("retries 1e400", b'{"spec_version":1,"name":"x","tasks":[{"id":"a","handler":"echo","retries":1e400}]}'),
        ("100k-digit integer", ('{"spec_version":1,"name":"x","tasks":[{"id":"a","handler":"echo","retries":'
                                + "9" * 100_000 + "}]}").encode()),
        ("lone surrogate id", b'{"spec_version":1,"name":"x","tasks":[{"id":"\\ud800","handler":"echo"}]}'),
        ("control char in name", b'{"spec_version":1,"name":"a\x01b","tasks":[{"id":"a","handler":"echo"}]}'),
        ("100k [ nesting", b"[" * 100_000),
        ("100k { nesting in args", ('{"spec_version":1,"name":"x","tasks":[{"id":"a","handler":"echo","args":'
                                    + '{"a":' * 100_000 + "1" + "}" * 100_000 + "}]}").encode()),
        ("a JSON string", b'"flow"'),
    ]


def special_flows(deps=100_000):
    def one(**task):
        return {"spec_version": 1, "name": "adv-special", "tasks": [{"id": "a", "handler": "echo", **task}]}

    def failing(**task):
        # Retries happen only after a failure: `fail` makes the retry delay count.
        return {"spec_version": 1, "name": "adv-special", "tasks": [{"id": "a", "handler": "fail", **task}]}

    def two(**task):
        return {"spec_version": 1, "name": "adv-special",
                "tasks": [{"id": "a", "handler": "echo"}, {"id": "b", "handler": "echo", "depends_on": ["a"], **task}]}

    big = "x" * 500_000
    specials = [
        ("retry_delay_seconds 1e300", failing(retries=1, retry_delay_seconds=1e300)),
        ("retry_delay_seconds [0, 1e300]", failing(retries=3, retry_delay_seconds=[0, 1e300])),
        ("retry_delay_seconds 1e300, echo", one(retries=1, retry_delay_seconds=1e300)),
        ("retry_delay_seconds 1e300 no retries", failing(retry_delay_seconds=1e300)),
        ("retry_delay_seconds 2^64", failing(retries=1, retry_delay_seconds=2**64)),
        ("retry_delay_seconds 1.8e308", failing(retries=1, retry_delay_seconds=1.8e308)),
        ("retry_delay_seconds -1", failing(retries=1, retry_delay_seconds=-1)),
        ("retry_delay_seconds 'NaN'", failing(retries=1, retry_delay_seconds="NaN")),
        ("timeout_seconds 1e300", one(timeout_seconds=1e300)),
        ("timeout_seconds 1e-300", one(timeout_seconds=1e-300)),
        ("timeout_seconds 2^64", one(timeout_seconds=2**64)),
        ("retry_jitter_factor 1e300", failing(retries=2, retry_delay_seconds=1, retry_jitter_factor=1e300)),
        ("retry_jitter_factor 1e300, delay 1e-300", failing(retries=2, retry_delay_seconds=1e-300,
                                                             retry_jitter_factor=1e300)),
        ("retries 1e300", one(retries=1e300)),
        ("retries 2^64", one(retries=2**64)),
        ("memory_mb 1e300", one(memory_mb=1e300)),
        ("memory_mb 2^64", one(memory_mb=2**64)),
        ("500 KB parameters", {"spec_version": 1, "name": "adv-special", "parameters": {"blob": big},
                               "tasks": [{"id": "a", "handler": "echo"}]}),
        ("500 KB flow name", {"spec_version": 1, "name": big, "tasks": [{"id": "a", "handler": "echo"}]}),
        ("500 KB args", one(args={"blob": big})),
        (f"{deps} missing dependencies", two(depends_on=[f"m{i}" for i in range(deps)])),
        (f"{deps} duplicate dependencies", two(depends_on=["a"] * deps)),
        ("args nested 200", one(args=nested(200))),
        ("args nested 10000", '{"spec_version":1,"name":"adv-special","tasks":[{"id":"a","handler":"echo",'
                              '"args":' + "[" * 10_000 + "1" + "]" * 10_000 + "}]}"),
        ("parameters nested 200", {"spec_version": 1, "name": "adv-special",
                                   "parameters": {"p": nested(200, kind="dict")},
                                   "tasks": [{"id": "a", "handler": "echo"}]}),
        ("unicode ids", {"spec_version": 1, "name": "adv-special",
                         "tasks": [{"id": "tâche", "handler": "echo"},
                                   {"id": "任务", "handler": "echo", "depends_on": ["tâche"]}]}),
        ("empty tasks", {"spec_version": 1, "name": "adv-special", "tasks": []}),
        ("self cycle", one(depends_on=["a"])),
        ("two-task cycle", {"spec_version": 1, "name": "adv-special",
                            "tasks": [{"id": "a", "handler": "echo", "depends_on": ["b"]},
                                      {"id": "b", "handler": "echo", "depends_on": ["a"]}]}),
        ("5000 tasks, all invalid handlers", {"spec_version": 1, "name": "adv-special",
                                              "tasks": [{"id": f"t{i}", "handler": "nope"} for i in range(5000)]}),
    ]
    return specials


def malformed_cases(rng, count, deps=100_000):
    cases = [(name, flow) for name, flow in special_flows(deps)]
    cases += [(f"raw: {name}", text) for name, text in raw_texts()]
    i = 0
    while len(cases) < count:
        flow = base_flow(rng)
        muts = rng.randint(1, 3)
        for _ in range(muts):
            flow = mutate(rng, flow)
        cases.append((f"random #{i} ({muts} mutations)", flow))
        i += 1
    return cases


def task_count(flow):
    if isinstance(flow, dict) and isinstance(flow.get("tasks"), list):
        return len(flow["tasks"])
    return 0


def scenario_malformed(scn, ctx, count):
    table = ctx.table("malformed")
    # 100k missing dependencies take about 13 s per command; the quick set uses 10k.
    cases = malformed_cases(ctx.rng, count, 10_000 if ctx.args.quick else 100_000)

    def one(index, name, flow):
        try:
            check_malformed(scn, ctx, table, index, name, flow)
        except Exception:  # noqa: BLE001 - report, do not stop the set
            scn.anomaly("other", f"harness error on case {index} {name}", traceback=traceback.format_exc())

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(one, i, name, flow) for i, (name, flow) in enumerate(cases)]
        for n, f in enumerate(futures):
            f.result()
            if (n + 1) % 50 == 0:
                say(f"   malformed: {n + 1}/{len(cases)} flows")
    say(f"   malformed: {len(cases)} flows, exit codes {scn.exits}")


def check_malformed(scn, ctx, table, index, name, flow):
    with scn.lock:
        scn.trials += 1
    run_id = f"adv-m-{index:04}-{ctx.tag}"
    path = ctx.write_flow(f"malformed-{index:04}.json", flow)
    detail = {"case": name, "flow_file": path, "flow": flow_text(flow)}
    v = ctx.dagy.run(["validate", path], table, timeout=60, tag=f"m{index}-validate")
    scn.check_exit(v, allowed=(0, 1), **detail)
    pl = ctx.dagy.run(["plan", path], table, timeout=60, tag=f"m{index}-plan")
    scn.check_exit(pl, allowed=(0, 1), **detail)
    for res in (v, pl):
        if res.elapsed > 5 and not res.timed_out:
            scn.note(f"slow: {name}: `{res.argv[1]}` took {res.elapsed:.1f}s")
    if v.code == 0 and task_count(flow) > 60:
        scn.note(f"{name}: valid with {task_count(flow)} tasks; not run")
        return
    r = ctx.dagy.run(["run", path, "--store", "dynamodb", "--json", "--quiet", "--run-id", run_id],
                     table, timeout=60, tag=f"m{index}-run")
    detail["run_id"] = run_id
    scn.check_exit(r, allowed=(0, 1), **detail)
    if r.elapsed > 5 and not r.timed_out:
        scn.note(f"slow: {name}: `run` took {r.elapsed:.1f}s")
    state = ctx.state(table, run_id)
    other = []  # one anomaly per case, listing what went wrong
    if "store is unavailable" in r.stderr:
        other.append("`run` says the store is unavailable (moto is up and reachable)")
    if v.code == 1 and r.code == 0:
        scn.anomaly("misreported", "`validate` refused the flow but `run` completed it", **detail)
    if v.code == 0 and pl.code == 0 and r.code == 1 and state.run is None and not other:
        scn.note(f"{name}: valid and planned, but `run` refused it: {tail(r.stderr, 2, 300)}")
    if state.run is None:
        if state.items:
            kinds = sorted({i.get("sk", "").split("#")[0] for i in state.items})
            other.append(f"refused run left {len(state.items)} items behind ({', '.join(kinds)})")
        if r.code == 0:
            scn.anomaly("misreported", "exit 0 but no run item", **detail)
    else:
        if v.code == 1:
            other.append("`validate` refused the flow but `run` created a run")
        if r.code in (0, 1) and not r.timed_out:
            if state.status not in RUN_FINAL:
                other.append(f"`run` exited {r.code} and left the run {state.status}")
            scn.check_report(r, state, sorted(state.tasks), **detail)
    if other:
        scn.anomaly("other", "; ".join(other), state=state.summary() if state.run else "no run item",
                    stderr=tail(r.stderr, 4, 700), **detail)


# ---------------------------------------------------------------------------------------------
# 6. deep outputs


def scenario_deep(scn, ctx, trials):
    table = ctx.table("deep")
    for trial in range(trials):
        for name, n, handler, args in (("echo", 140, "echo", None), ("sum", 300, "sum", {"add": 1})):
            scn.trials += 1
            run_id = f"adv-deep-{name}{n}-{trial}-{ctx.rng.randrange(16**6):06x}"

            def make(i, handler=handler, args=args):
                return {"handler": handler, **({"args": args} if args is not None else {})}

            flow = {"spec_version": 1, "name": f"adv-{name}-{n}", "tasks": chain(n, make)}
            path = ctx.write_flow(f"{run_id}.json", flow)
            order = [t["id"] for t in flow["tasks"]]
            detail = {"run_id": run_id, "table": table, "flow": path, "chain": f"{n} x {handler}"}
            # The sum chain runs as nano (one session): as micro, every step reloads all 300
            # tasks from moto (about 2 minutes).
            tier = ["--tier", "nano"] if handler == "sum" else []
            res = ctx.dagy.run(["run", path, "--store", "dynamodb", "--json", "--quiet", "--run-id", run_id,
                                *tier], table, timeout=300, tag=f"deep-{name}")
            detail["tier"] = "nano" if tier else "auto"
            scn.check_exit(res, **detail)
            state = ctx.state(table, run_id)
            scn.check_report(res, state, order, **detail)
            bad = [b for b in ("store is unavailable", "malformed") if b in res.stderr]
            problems = []
            if bad:
                problems.append(f"`run` exit {res.code} with {' / '.join(map(repr, bad))}")
            if state.status not in RUN_FINAL:
                problems.append(f"run left {state.status}")
            doc = None
            back = None
            if state.status in RUN_FINAL:
                # Read back through dagy: a resume of a final run only reports it.
                back = ctx.dagy.run(["run", "--resume", run_id, "--store", "dynamodb", "--json", "--quiet"],
                                    table, timeout=120, tag=f"deep-{name}-read")
                scn.check_exit(back, **detail)
                doc = back.json()
                if not isinstance(doc, dict) or doc.get("status") != state.status:
                    problems.append(f"cannot be read back: {back.describe()}: {tail(back.stderr, 2, 500)}")
            if handler == "sum":
                if state.status == "completed":
                    out = state.tasks.get(order[-1], {}).get("output")
                    if str(out).strip() != str(n):
                        problems.append(f"last output {out!r}, expected {n}")
                elif state.status in RUN_FINAL:
                    problems.append(f"ended {state.status}")
            elif state.status == "failed":
                errs = {t: state.tasks[t].get("error_type") for t in order if state.task_status(t) == "failed"}
                if "OutputTooDeep" not in errs.values():
                    problems.append(f"failed without an OutputTooDeep task: {errs}")
            elif state.status in RUN_FINAL and state.status != "completed":
                problems.append(f"ended {state.status}")
            if problems:
                scn.anomaly("other", f"{n}-task {handler} chain: " + "; ".join(problems),
                            state=state.summary(order[-3:]), stderr=tail(res.stderr, 5, 2000), **detail)
            say(f"   deep {n} x {handler}: exit {res.code} in {res.elapsed:.1f}s, stored {state.status}; "
                + (f"read back: exit {back.code}, {doc.get('status') if isinstance(doc, dict) else 'no JSON'}" if back else "not read back")
                + (f"; stderr: {tail(res.stderr, 1, 300)}" if res.code else ""))


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dagy", required=True, help="the dagy binary")
    ap.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL"),
                    help="moto's URL (default: AWS_ENDPOINT_URL)")
    ap.add_argument("--quick", action="store_true", help="the reduced set (CI, < 3 minutes)")
    ap.add_argument("--only", default="", help=f"comma-separated: {','.join(ALL_SCENARIOS)}")
    ap.add_argument("--trials", type=int, help="trials for every chosen scenario (overrides the set)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (printed when not given)")
    ap.add_argument("--workdir", help="where flows, witnesses and process output go (kept)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory even when clean")
    ap.add_argument("--report", help="write every count, anomaly and note as JSON here")
    args = ap.parse_args()

    if not args.endpoint:
        ap.error("no moto endpoint: set AWS_ENDPOINT_URL or pass --endpoint")
    if not os.access(args.dagy, os.X_OK):
        ap.error(f"{args.dagy} is not an executable")
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in only:
        if s not in ALL_SCENARIOS:
            ap.error(f"unknown scenario {s!r}; choose among {', '.join(ALL_SCENARIOS)}")
    chosen = only or list(ALL_SCENARIOS)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    rng = random.Random(seed)
    workdir = args.workdir or tempfile.mkdtemp(prefix="dagy-adversarial-")
    os.makedirs(workdir, exist_ok=True)
    dagy = Dagy(os.path.abspath(args.dagy), args.endpoint, workdir)
    ctx = Ctx(args, dagy, Dynamo(args.endpoint), rng)
    say(f"dagy adversarial set: {'quick' if args.quick else 'full'}, seed {seed}, endpoint {args.endpoint}, "
        f"work directory {workdir}")
    say(f"reproduce with: --seed {seed}" + (" --quick" if args.quick else "")
        + (f" --only {args.only}" if args.only else ""))

    scenarios = []
    started = time.monotonic()
    try:
        for name in chosen:
            full, quick = TRIALS[name]
            n = args.trials if args.trials is not None else (quick if args.quick else full)
            if name == "stall70" and n == 0 and name in only:
                n = 1
            if n == 0:
                continue
            scn = Scenario(name, ctx)
            scenarios.append(scn)
            say(f"== {name} ({n} {'flows' if name == 'malformed' else 'trials'})")
            t0 = time.monotonic()
            try:
                if name == "kill":
                    scenario_kill(scn, ctx, n)
                elif name == "resumers":
                    scenario_resumers(scn, ctx, n)
                elif name == "signals":
                    scenario_signals(scn, ctx, n)
                elif name == "stall15":
                    scenario_stall(scn, ctx, n, 15)
                elif name == "stall70":
                    scenario_stall(scn, ctx, n, 70)
                elif name == "malformed":
                    scenario_malformed(scn, ctx, max(n, 1))
                elif name == "deep":
                    scenario_deep(scn, ctx, n)
            except Exception:  # noqa: BLE001 - one scenario's harness error must not hide the rest
                scn.anomaly("other", "harness error", traceback=traceback.format_exc())
            scn.elapsed = time.monotonic() - t0
    except KeyboardInterrupt:
        say("interrupted")
    finally:
        with LIVE_LOCK:
            for p in list(LIVE):
                if p.poll() is None:
                    p.kill()
        for t in ctx.tables:
            ctx.ddb.delete_table(t)

    total = {c: sum(s.counts[c] for s in scenarios) for c in CATEGORIES}
    say("")
    say(f"summary (seed {seed}, {time.monotonic() - started:.0f} s, work directory {workdir})")
    head = f"{'scenario':<10} {'trials':>6} {'time':>6}  " + "  ".join(f"{CATEGORY_TITLES[c]:>19}" for c in CATEGORIES)
    say(head)
    say("-" * len(head))
    for s in scenarios:
        say(f"{s.name:<10} {s.trials:>6} {s.elapsed:>5.0f}s  "
            + "  ".join(f"{s.counts[c]:>19}" for c in CATEGORIES))
    say("-" * len(head))
    say(f"{'total':<10} {sum(s.trials for s in scenarios):>6} {'':>6}  "
        + "  ".join(f"{total[c]:>19}" for c in CATEGORIES))
    for s in scenarios:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(s.exits.items(), key=lambda kv: str(kv[0])))
        say(f"  {s.name}: exit codes {{{codes}}}")
        for a in s.anomalies:
            say(f"    [{a['category']}] {a['title'][:220]}")
        for n in s.notes:
            if n.startswith("slow:"):
                say(f"    (note) {n}")
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"seed": seed, "workdir": workdir, "totals": total,
                       "scenarios": [{"name": s.name, "trials": s.trials, "counts": s.counts,
                                      "exits": {str(k): v for k, v in s.exits.items()},
                                      "anomalies": s.anomalies, "notes": s.notes,
                                      "seconds": round(s.elapsed, 1)} for s in scenarios]},
                      f, indent=2, default=str)
    bad = sum(total.values())
    if bad == 0 and not args.keep and not args.workdir:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    say("FAIL: anomalies found" if bad else "OK: no anomalies")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
