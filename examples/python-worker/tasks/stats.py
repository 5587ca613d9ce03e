"""exec:py-stats: count, sum, mean, median, min, max and standard deviation of numbers.

The numbers are `args.numbers` plus every number found in the upstream outputs (a number, or a
list of numbers). Input on stdin: {"parameters": ..., "upstream": {...}, "args": ...}; output
on stdout, as JSON. Progress goes to stderr, which Dagy keeps in the run's log.

Exit 65 (EX_DATAERR) on a value that is not a number: running again on the same input cannot
help, so Dagy does not retry it.
"""

import json
import statistics
import sys

EX_DATAERR = 65


def numbers_in(value, where):
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, list):
        found = []
        for i, item in enumerate(value):
            found.extend(numbers_in(item, f"{where}[{i}]"))
        return found
    if isinstance(value, dict):
        return []  # another task's structured output: not numbers
    raise ValueError(f"{where} is {value!r}, not a number")


def stats(task):
    args = task.get("args") or {}
    numbers = numbers_in(args.get("numbers", []), "args.numbers")
    for task_id, output in sorted((task.get("upstream") or {}).items()):
        numbers.extend(numbers_in(output, f"upstream.{task_id}"))
    if not numbers:
        raise ValueError("no numbers: give args.numbers or upstream tasks that output numbers")
    return {
        "count": len(numbers),
        "sum": sum(numbers),
        "mean": statistics.fmean(numbers),
        "median": statistics.median(numbers),
        "min": min(numbers),
        "max": max(numbers),
        "stdev": statistics.pstdev(numbers),
    }


def main():
    task = json.load(sys.stdin)
    try:
        result = stats(task)
    except ValueError as e:
        print(f"py-stats: {e}", file=sys.stderr)
        return EX_DATAERR
    print(f"py-stats: {result['count']} numbers, mean {result['mean']:.3f}", file=sys.stderr)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
