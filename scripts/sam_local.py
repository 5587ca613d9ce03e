"""Runs sample events through `sam local invoke`, each on the function that receives it, and
prints each answer as one JSON line: {"event", "function", "answer", "seconds"}. Exits 1 if any
answer is an invocation error (a function error, no answer) or an HTTP status of 500 or more.

Run by scripts/sam-local.sh, which prepares Docker, the base image, `sam build` and moto, with
the SAM venv's Python (for samcli.yamlhelper). Usage:

    sam_local.py --build-dir DIR --moto URL --table NAME --host ADDRESS EVENT...

- The function: HTTP API events go to RouterFunction, so do schedules (template.yaml wires
  every schedule to the router) and direct actions; {"run_id"} alone to ExecutorFunction;
  {"run_id", "task_id"} and the record_success / record_failure actions to TaskExecutorFunction.
- Order: set-up routes first, then the trigger, then events that read or act on its run, then
  the run's ends, the schedules and the sweep (events this script does not know come last).
  `RUN_ID` in an event becomes the run the first trigger made; when no given event triggers a
  run, events/http-put-environment.json, http-put-deployment.json and http-trigger-run.json are
  sent first as set-up (their answers on stderr); a trigger without the first two gets them.
  A task-executor event runs one task, as a Step Functions Task state does once the states
  before it ran: the tasks before it in the run's order are run first, as set-up, by
  task-executor invocations of their own.
- Environment: `sam local invoke` only overrides variables the template declares, so the script
  writes a copy of the built template (template.local.yaml, in the build directory) that also
  declares AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_LAMBDA, and an --env-vars file that points
  them at moto and at a stand-in for Lambda's Invoke API. The stand-in accepts the functions'
  dispatches (the router starting a run, the executor handing a micro run to its next
  invocation) like Lambda's asynchronous invocations, with 202, and runs nothing: each event
  runs on its own.
"""

import argparse
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from samcli.yamlhelper import yaml_dump, yaml_parse

ORDER = [
    "http-put-environment", "http-get-environment", "http-put-deployment", "http-get-deployment",
    "http-plan", "http-backends", "action-backends",
    "http-trigger-run", "http-get-run", "http-list-runs", "http-run-logs", "action-get-run",
    "executor", "task-executor",
    "task-executor-record-success", "task-executor-record-failure", "http-cancel-run",
    "schedule-input", "schedule-envelope", "action-trigger", "action-sweep",
]
TRIGGERS = {"http-trigger-run", "action-trigger", "schedule-input", "schedule-envelope"}
FUNCTIONS = ["RouterFunction", "ExecutorFunction", "TaskExecutorFunction"]


def function_for(event):
    """The template's function that receives `event`."""
    if isinstance(event, dict):
        if event.get("version") == "2.0" and "routeKey" in event:
            return "RouterFunction"
        if "task_id" in event or event.get("action") in ("record_success", "record_failure"):
            return "TaskExecutorFunction"
        if set(event) == {"run_id"}:
            return "ExecutorFunction"
    return "RouterFunction"


def ordered(paths):
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(paths, key=lambda p: rank.get(Path(p).stem, len(ORDER)))


class LambdaStandIn(http.server.BaseHTTPRequestHandler):
    """Lambda's Invoke API, accepting invocations without running them (202)."""

    invocations = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        LambdaStandIn.invocations.append(
            (self.path, self.headers.get("x-amz-invocation-type", "RequestResponse"))
        )
        self.send_response(202)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def local_template(build_dir):
    """The built template with AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_LAMBDA declared."""
    template = yaml_parse((build_dir / "template.yaml").read_text())
    declared = set()
    for resource in template["Resources"].values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        variables = (
            resource.setdefault("Properties", {})
            .setdefault("Environment", {})
            .setdefault("Variables", {})
        )
        variables.setdefault("AWS_ENDPOINT_URL", "")
        variables.setdefault("AWS_ENDPOINT_URL_LAMBDA", "")
        declared.update(variables)
    path = build_dir / "template.local.yaml"
    path.write_text(yaml_dump(template))
    return path, declared


def env_vars(declared, moto, lambda_url, table):
    """Every declared variable: the local stand-ins, the table, and no optional backend."""
    known = {
        "AWS_ENDPOINT_URL": moto,
        "AWS_ENDPOINT_URL_LAMBDA": lambda_url,
        "DAGY_TABLE_NAME": table,
        "DAGY_EXECUTOR_FUNCTION": "dagy-executor",
        "DAGY_RUN_RETENTION_DAYS": "30",
        "DAGY_AUTO_TIER": "on",
    }
    return {"Parameters": {name: known.get(name, "") for name in sorted(declared)}}


def invoke(function, event, template, env_file):
    """`sam local invoke`: (answer or None, stderr)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(event, f)
        event_file = f.name
    try:
        done = subprocess.run(
            ["sam", "local", "invoke", function, "-e", event_file, "--template", str(template),
             "--skip-pull-image", "--docker-network", "host", "--env-vars", str(env_file)],
            capture_output=True, text=True, timeout=600, check=False,
        )
    finally:
        os.unlink(event_file)
    answer = None
    for line in reversed(done.stdout.strip().splitlines()):
        try:
            answer = json.loads(line)
            break
        except ValueError:
            continue
    return answer, done.stderr


def problem(answer):
    """What is wrong with an answer, or None."""
    if answer is None:
        return "no answer (the invocation failed)"
    if isinstance(answer, dict) and "errorType" in answer:
        return f"invocation error {answer['errorType']}: {answer.get('errorMessage', '')}"
    status = answer.get("statusCode", answer.get("status")) if isinstance(answer, dict) else None
    if isinstance(status, int) and status >= 500:
        return f"HTTP status {status}"
    return None


def tasks_of(answer):
    """The run's tasks (id and status, in the run's order) from a get-run answer, or None."""
    if isinstance(answer, dict) and isinstance(answer.get("body"), str):
        try:
            answer = json.loads(answer["body"])
        except ValueError:
            return None
    tasks = answer.get("tasks") if isinstance(answer, dict) else None
    if isinstance(tasks, list) and all(isinstance(t, dict) and "id" in t for t in tasks):
        return [(t["id"], t.get("status")) for t in tasks]
    return None


def run_id_of(answer):
    if not isinstance(answer, dict):
        return None
    if "body" in answer and isinstance(answer["body"], str):
        try:
            return json.loads(answer["body"]).get("run_id")
        except ValueError:
            return None
    return answer.get("run_id")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, required=True)
    parser.add_argument("--moto", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--host", required=True, help="the address containers reach this host on")
    parser.add_argument("--events-dir", type=Path, default=Path("events"))
    parser.add_argument("events", nargs="+")
    args = parser.parse_args()

    server = http.server.ThreadingHTTPServer((args.host, 0), LambdaStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    lambda_url = f"http://{args.host}:{server.server_address[1]}"

    template, declared = local_template(args.build_dir)
    env_file = args.build_dir / "env-vars.local.json"
    env_file.write_text(json.dumps(env_vars(declared, args.moto, lambda_url, args.table), indent=2))

    events = ordered(args.events)
    stems = {Path(e).stem for e in events}
    texts = {e: Path(e).read_text() for e in events}
    # A trigger needs the deployment "hello", which needs the environment "prod".
    prerequisites = ["http-put-environment", "http-put-deployment"]
    if any("RUN_ID" in t for t in texts.values()) and not stems & TRIGGERS:
        setup = prerequisites + ["http-trigger-run"]
    elif stems & TRIGGERS:
        setup = [p for p in prerequisites if p not in stems]
    else:
        setup = []

    run_id = None
    failures = 0

    def set_up(what, event):
        answer, log = invoke(function_for(event), event, template, env_file)
        print(f"set-up {what}: {json.dumps(answer)}", file=sys.stderr)
        if problem(answer):
            raise SystemExit(f"set-up {what} failed: {problem(answer)}\n{log[-3000:]}")
        return answer

    for name in setup:
        path = args.events_dir / f"{name}.json"
        answer = set_up(path, json.loads(path.read_text()))
        if name in TRIGGERS:
            run_id = run_id_of(answer)
            if run_id is None:
                raise SystemExit(f"set-up {path} made no run: {json.dumps(answer)}")

    def run_tasks_before(event):
        """Runs the tasks before the event's task in its run's order (a state machine's earlier
        states), each by a task-executor invocation."""
        answer = set_up("get_run", {"action": "get_run", "run_id": event["run_id"]})
        for task_id, status in tasks_of(answer) or []:
            if task_id == event["task_id"]:
                break
            if status != "completed":
                set_up(f"task {task_id}", {"run_id": event["run_id"], "task_id": task_id})

    for path in events:
        text = texts[path]
        if "RUN_ID" in text:
            if run_id is None:
                print(f"{path}: no run to fill in for RUN_ID (no trigger answered)", file=sys.stderr)
                failures += 1
                continue
            text = text.replace("RUN_ID", run_id)
        event = json.loads(text)
        function = function_for(event)
        if function == "TaskExecutorFunction" and "task_id" in event:
            run_tasks_before(event)
        started = time.monotonic()
        answer, log = invoke(function, event, template, env_file)
        seconds = round(time.monotonic() - started, 1)
        print(json.dumps({"event": path, "function": function, "answer": answer,
                          "seconds": seconds}), flush=True)
        why = problem(answer)
        if why:
            failures += 1
            print(f"{path} on {function}: {why}\n{log[-3000:]}", file=sys.stderr)
        elif Path(path).stem in TRIGGERS:
            run_id = run_id or run_id_of(answer)

    server.shutdown()
    print(f"{len(events)} events, {failures} failed; the Lambda stand-in accepted "
          f"{len(LambdaStandIn.invocations)} dispatches", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
