"""The two tasks against the exec: contract, without Docker: input JSON on stdin, output JSON on
stdout or in the DAGY_OUTPUT file, exit 65 for bad data. Run: python3 -m unittest discover -s
examples/python-worker/tasks"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def run(script, task, env=None):
    return subprocess.run(
        [sys.executable, os.path.join(HERE, script)],
        input=json.dumps(task),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


class Stats(unittest.TestCase):
    def test_numbers_from_args_and_upstream(self):
        done = run("stats.py", {"parameters": {}, "upstream": {"measure": 42, "more": [1, 2]},
                                "args": {"numbers": [3, 1, 4]}})
        self.assertEqual(done.returncode, 0, done.stderr)
        out = json.loads(done.stdout)
        self.assertEqual((out["count"], out["sum"], out["min"], out["max"]), (6, 53, 1, 42))
        self.assertIn("6 numbers", done.stderr)

    def test_a_value_that_is_not_a_number_exits_65(self):
        done = run("stats.py", {"upstream": {"bad": "seven"}, "args": {}})
        self.assertEqual(done.returncode, 65)
        self.assertIn("upstream.bad", done.stderr)


class Report(unittest.TestCase):
    def test_the_output_goes_to_the_dagy_output_file(self):
        stats = {"count": 2, "sum": 3, "mean": 1.5, "median": 1.5, "min": 1, "max": 2}
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "output.json")
            done = run("report.py", {"parameters": {"title": "T"}, "upstream": {"stats": stats}},
                       {"DAGY_OUTPUT": path})
            self.assertEqual(done.returncode, 0, done.stderr)
            with open(path, encoding="utf-8") as f:
                out = json.load(f)
        self.assertEqual(out["title"], "T")
        self.assertIn("stats: 2 numbers", out["text"])
        self.assertIn("stats: 2 numbers", done.stdout, "stdout is free for progress")

    def test_without_dagy_output_it_exits_75(self):
        env = {k: v for k, v in os.environ.items() if k != "DAGY_OUTPUT"}
        done = subprocess.run([sys.executable, os.path.join(HERE, "report.py")], input="{}",
                              capture_output=True, text=True, env=env, check=False)
        self.assertEqual(done.returncode, 75)


if __name__ == "__main__":
    unittest.main()
