"""A Dagy task written in Python: a Lambda function that a flow calls as `lambda:<function>`.

The contract (the same for any language):

- The event is the task's input: {"parameters": {...}, "upstream": {"<task id>": <output>},
  "args": <the task's args>}.
- What the function returns (JSON) is the task's output. Keep it under Dagy's output limit
  (350 KiB, and 512 levels of nesting); for large data, write it to S3 and return its key.
- An exception fails the attempt; its class name is the task error's type (Lambda's
  `errorType`), which Step Functions retry and catch rules match. The task's `retries` decide
  whether it runs again.

This one sums the numbers among its upstream outputs and `args.add`, and refuses bad args.
"""


class InvalidArgs(Exception):
    """The task's args are not what this function takes."""


def lambda_handler(event, context):
    upstream = event.get("upstream") or {}
    args = event.get("args") or {}
    if not isinstance(args, dict):
        raise InvalidArgs(f"args must be an object like {{\"add\": 1}}, got {type(args).__name__}")
    add = args.get("add", 0)
    if isinstance(add, bool) or not isinstance(add, (int, float)):
        raise InvalidArgs(f"args.add must be a number, got {add!r}")
    numbers = [v for v in upstream.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {"total": sum(numbers) + add, "from": sorted(upstream)}
