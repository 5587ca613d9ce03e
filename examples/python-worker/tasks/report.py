"""exec:py-report: a text report of the statistics its upstream tasks computed.

Input on stdin: {"parameters": {"title": ...}, "upstream": {"<task id>": {stats}}, "args": ...}.
It prints progress on stdout (free to use: the output goes elsewhere) and writes its output,
as JSON, to the file named by DAGY_OUTPUT, which Dagy reads instead of stdout.

Exit 75 (EX_TEMPFAIL, retried) when DAGY_OUTPUT is not set: not run by Dagy.
"""

import json
import os
import sys

EX_TEMPFAIL = 75


def report(task):
    title = (task.get("parameters") or {}).get("title", "Report")
    lines = [title, "=" * len(title)]
    for task_id, stats in sorted((task.get("upstream") or {}).items()):
        if not isinstance(stats, dict) or "count" not in stats:
            continue
        lines.append(
            f"{task_id}: {stats['count']} numbers, sum {stats['sum']}, mean {stats['mean']:.2f}, "
            f"median {stats['median']}, range {stats['min']}..{stats['max']}"
        )
    return {"title": title, "lines": lines, "text": "\n".join(lines)}


def main():
    task = json.load(sys.stdin)
    out = os.environ.get("DAGY_OUTPUT")
    if not out:
        print("py-report: DAGY_OUTPUT is not set", file=sys.stderr)
        return EX_TEMPFAIL
    result = report(task)
    print(result["text"])  # stdout is free: the output goes to DAGY_OUTPUT
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)
    print(f"py-report: {len(result['lines'])} lines written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
