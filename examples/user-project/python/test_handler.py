"""The example Python task against Dagy's `lambda:` contract: the event Dagy sends, the output
it stores, and the error type it records. Run: python3 -m unittest discover -s python"""

import json
import unittest

from handler import InvalidArgs, lambda_handler


def dagy_event(parameters=None, upstream=None, args=None):
    """The event Dagy's executor sends: exactly these three fields."""
    return {"parameters": parameters or {}, "upstream": upstream or {}, "args": args}


class ContractTest(unittest.TestCase):
    def test_the_output_is_json_built_from_upstream_outputs_and_args(self):
        event = dagy_event({"day": "2026-11-29"}, {"count-0": 5133, "count-1": 4459}, {"add": 1})
        output = lambda_handler(json.loads(json.dumps(event)), None)
        self.assertEqual(output, {"total": 9593, "from": ["count-0", "count-1"]})
        json.dumps(output)  # what Dagy stores must be JSON

    def test_missing_args_and_upstream_are_allowed(self):
        self.assertEqual(lambda_handler(dagy_event(), None), {"total": 0, "from": []})

    def test_bad_args_raise_an_error_whose_class_is_the_error_type(self):
        with self.assertRaises(InvalidArgs) as raised:
            lambda_handler(dagy_event(args={"add": "one"}), None)
        self.assertIn("args.add", str(raised.exception))
        self.assertEqual(type(raised.exception).__name__, "InvalidArgs")

    def test_the_output_stays_small(self):
        upstream = {f"t{i}": i for i in range(1000)}
        output = lambda_handler(dagy_event(upstream=upstream), None)
        self.assertLess(len(json.dumps(output)), 350 * 1024)


if __name__ == "__main__":
    unittest.main()
