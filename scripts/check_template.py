#!/usr/bin/env python3
"""Checks template.yaml against the code, then lints it as SAM and as plain CloudFormation.

1. Variables: every DAGY_* variable the code reads is set on the function that reads it, and the
   template sets none that nothing reads. (DAGY_RUN_ID and the worker's DAGY_TABLE_NAME are set
   per task by the ECS backend, not by the template; DAGY_OUTPUT, DAGY_TASK_ID and DAGY_ATTEMPT
   are set by dagy-exec for the processes of exec: handlers.)
2. Routes: the HTTP API's routes are exactly the router's.
3. Schedules: their inputs are events the router understands (an action it has, or a
   deployment).
4. The SAM translator's CloudFormation, linted by cfn-lint (cfn-lint checks little of
   AWS::Serverless::* on the SAM template itself).

Exits 1 with every difference listed. Usage: check_template.py TEMPLATE (run by scripts/test.sh
with the SAM venv's python).
"""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PER_TASK = {"DAGY_RUN_ID"}
# Set by dagy-exec for each exec: handler's process, read by nothing in Dagy.
FOR_PROCESSES = {"DAGY_OUTPUT", "DAGY_TASK_ID", "DAGY_ATTEMPT"}

# Which binary reads which variables, by the source files each one's code reads them from.
READERS = {
    "dagy-router": ["crates/dagy-functions/src", "crates/dagy-core/src", "crates/dagy-store-dynamodb/src",
                    "crates/dagy-exec/src"],
    "dagy-executor": ["crates/dagy-functions/src/dispatch.rs", "crates/dagy-store-dynamodb/src",
                      "crates/dagy-exec/src"],
    "dagy-task-executor": ["crates/dagy-store-dynamodb/src", "crates/dagy-exec/src"],
}


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, !If, ...) kept as {"Fn::...": ...}."""


def _tag(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _tag)


def variables_read(paths):
    found = set()
    for path in paths:
        path = ROOT / path
        files = [path] if path.is_file() else path.rglob("*.rs")
        for f in files:
            found |= set(re.findall(r'"(DAGY_[A-Z_]+)"', f.read_text()))
    return found - PER_TASK - FOR_PROCESSES


def router_routes():
    text = (ROOT / "crates/dagy-functions/src/router.rs").read_text()
    routes = set()
    for method, segments in re.findall(r'\("(GET|POST|PUT|DELETE|PATCH)", \[([^\]]*)\]\)', text):
        parts = []
        for seg in (s.strip() for s in segments.split(",") if s.strip()):
            parts.append(seg.strip('"') if seg.startswith('"') else "{}")
        routes.add((method, "/" + "/".join(parts)))
    return routes


def router_actions():
    text = (ROOT / "crates/dagy-functions/src/router.rs").read_text()
    return set(re.findall(r'^\s*"([a-z_]+)" => ', text, re.M))


def main():
    template_path = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "template.yaml")
    template = yaml.load(template_path.read_text(), Loader=CfnLoader)
    resources = template["Resources"]
    problems = []

    functions = {
        r["Metadata"]["BuildProperties"]["Binary"]: (name, r)
        for name, r in resources.items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    if set(functions) != set(READERS):
        problems.append(f"functions {sorted(functions)} are not the binaries {sorted(READERS)}")
    all_read = set()
    for binary, paths in READERS.items():
        if binary not in functions:
            continue
        name, function = functions[binary]
        read = variables_read(paths)
        if binary != "dagy-router":
            # Only the router reads the backend settings (dagy-core's Settings::from_env).
            read = {v for v in read if not v.startswith(("DAGY_SFN_", "DAGY_ECS_")) and v != "DAGY_AUTO_TIER"}
        if binary == "dagy-task-executor":
            read.discard("DAGY_EXECUTOR_FUNCTION")
        all_read |= read
        declared = set(function["Properties"].get("Environment", {}).get("Variables", {}))
        for missing in sorted(read - declared):
            problems.append(f"{name} ({binary}) reads {missing}, which the template does not set")
        for extra in sorted(declared - read):
            problems.append(f"{name} ({binary}) is given {extra}, which nothing in it reads")
        runtime = function["Properties"].get("Runtime") or template["Globals"]["Function"]["Runtime"]
        if runtime != "provided.al2023":
            problems.append(f"{name}: runtime {runtime}, not provided.al2023 (the binaries need glibc 2.34)")
        if function["Metadata"].get("BuildMethod") != "rust-cargolambda":
            problems.append(f"{name}: BuildMethod is not rust-cargolambda")
    every = variables_read([str(p.relative_to(ROOT)) for p in ROOT.glob("crates/dagy-*/src")])
    # The CLI, the worker, the embedded store and the dashboard run outside the stack (the
    # worker's task gets its own variables); the test kit only runs in tests.
    outside = ["crates/dagy-cli/src", "crates/dagy-worker/src", "crates/dagy-testkit/src",
               "crates/dagy-store-sqlite/src", "crates/dagy-ui/src"]
    every -= variables_read([p for p in outside if (ROOT / p).exists()]) - all_read
    for unread in sorted(every - all_read):
        problems.append(f"the code reads {unread}, which no function is given")

    # Routes.
    _, router = functions.get("dagy-router", (None, {"Properties": {}}))
    events = router["Properties"].get("Events", {})
    declared_routes = set()
    for name, resource in resources.items():
        if resource["Type"] != "AWS::ApiGatewayV2::Route":
            continue
        method, path = resource["Properties"]["RouteKey"].split(" ", 1)
        declared_routes.add((method, re.sub(r"\{[^}]+\}", "{}", path)))
        target = json.dumps(resource["Properties"].get("Target"))
        if "RouterIntegration" not in target:
            problems.append(f"route {name} does not go to the router's integration")
    integrations = [r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Integration"]
    if not any("RouterFunction" in json.dumps(i["Properties"].get("IntegrationUri")) for i in integrations):
        problems.append("no API integration invokes the router")
    served = router_routes()
    for missing in sorted(served - declared_routes):
        problems.append(f"the router serves {missing[0]} {missing[1]}, which the HTTP API does not route")
    for extra in sorted(declared_routes - served):
        problems.append(f"the HTTP API routes {extra[0]} {extra[1]}, which the router does not serve")

    # Schedules.
    actions = router_actions()
    schedules = [e for e in events.values() if e["Type"] in ("Schedule", "ScheduleV2")]
    if not any("rate(5 minutes)" == e["Properties"].get("ScheduleExpression") for e in schedules):
        problems.append("no 5-minute schedule (the sweep)")
    for e in schedules:
        payload = json.loads(e["Properties"]["Input"])
        if "action" in payload and payload["action"] not in actions:
            problems.append(f"a schedule sends action {payload['action']!r}, which the router does not have")
        if "action" not in payload and "deployment" not in payload:
            problems.append(f"a schedule's input {payload} names neither an action nor a deployment")

    # The table, as the store expects it.
    table = next(r for r in resources.values() if r["Type"] == "AWS::DynamoDB::Table")["Properties"]
    indexes = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
    if indexes != {"by-deployment", "lapsed"}:
        problems.append(f"the table's indexes are {sorted(indexes)}, not by-deployment and lapsed")
    if table.get("TimeToLiveSpecification", {}).get("AttributeName") != "expires_at":
        problems.append("the table's TTL attribute is not expires_at")
    if table.get("BillingMode") != "PAY_PER_REQUEST":
        problems.append("the table is not on-demand")

    # IAM: every statement on the run table grants each DynamoDB call the store makes. Not granted
    # on purpose: Scan (recent_runs, for `dagy runs` and `dagy ui` with the user's own
    # credentials) and the set-up calls of `dagy table create`. A transaction needs the actions
    # of its parts (condition checks here), not one of its own.
    store_calls = set()
    for f in (ROOT / "crates/dagy-store-dynamodb/src").rglob("*.rs"):
        store_calls |= set(re.findall(
            r"\.(get_item|put_item|update_item|delete_item|query|batch_get_item|batch_write_item"
            r"|transact_write_items|transact_get_items)\(\)", f.read_text()))
    needed = {"".join(w.capitalize() for w in call.split("_")) for call in store_calls}
    if "TransactWriteItems" in needed:
        needed = (needed - {"TransactWriteItems"}) | {"ConditionCheckItem"}
    for name, resource in resources.items():
        for statement in iam_statements(resource):
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            granted = {a.split(":", 1)[1] for a in actions if isinstance(a, str) and a.startswith("dynamodb:")}
            for missing in sorted(needed - granted if granted else ()):
                problems.append(f"{name}: the store calls dynamodb:{missing}, which this statement does not grant")

    # IAM: no wildcard actions.
    for name, resource in resources.items():
        for statement in iam_statements(resource):
            actions_of = statement.get("Action", [])
            actions_of = [actions_of] if isinstance(actions_of, str) else actions_of
            for action in actions_of:
                if isinstance(action, str) and "*" in action:
                    problems.append(f"{name}: wildcard action {action}")

    # samconfig.toml's environments override only parameters the template has.
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    for env, sections in config.items():
        if not isinstance(sections, dict):
            continue
        overrides = sections.get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
        for name in re.findall(r'(\w+)=', overrides):
            if name not in template.get("Parameters", {}):
                problems.append(f"samconfig.toml [{env}] overrides {name}, which the template does not have")

    # Translate to CloudFormation and lint that.
    from samtranslator.translator.transform import transform
    from samtranslator.public.translator import ManagedPolicyLoader

    class NoNetworkPolicies(ManagedPolicyLoader):
        def __init__(self):
            pass

        def load(self):
            return {}

    raw = yaml.load(template_path.read_text(), Loader=CfnLoader)
    # As `sam package` leaves it: the code in S3 instead of the source tree.
    raw["Globals"]["Function"]["CodeUri"] = "s3://dagy-artifacts/dagy.zip"
    cfn = transform(raw, {}, NoNetworkPolicies())
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfn, f, indent=1)
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", f.name],
        capture_output=True,
        text=True,
    )
    if lint.returncode not in (0,):
        problems.append("cfn-lint on the translated CloudFormation:\n" + lint.stdout + lint.stderr)

    if problems:
        print("template.yaml does not match the code:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(
        f"template.yaml: {len(functions)} functions, {len(declared_routes)} routes, "
        f"{len(schedules)} schedules, {len(all_read)} variables match the code; "
        f"translated CloudFormation ({len(cfn['Resources'])} resources) passes cfn-lint"
    )
    return 0


def iam_statements(resource):
    props = resource.get("Properties", {})
    docs = []
    for policy in props.get("Policies", []) or []:
        if isinstance(policy, dict):
            docs.append(policy.get("PolicyDocument", policy))
    for doc in docs:
        for statement in doc.get("Statement", []):
            if isinstance(statement, dict) and "Fn::If" in statement:
                branch = statement["Fn::If"][1]
                if isinstance(branch, dict):
                    yield branch
            elif isinstance(statement, dict):
                yield statement


if __name__ == "__main__":
    sys.exit(main())
