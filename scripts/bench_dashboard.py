#!/usr/bin/env python3
"""How fast a large run's page is in a real browser (figures, not a test): headless Chromium,
driven through chromedriver's W3C WebDriver API, loads the run page of the 1,700-task run that
`cargo run --release -p dagy-ui --example render_large -- --serve PORT` serves, and reads the
browser's own Navigation Timing: the response, DOMContentLoaded and load, in milliseconds from
the navigation's start, and the number of DAG nodes on the page.

Usage: scripts/bench-dashboard.sh (builds the example, starts it and chromedriver, runs this).
"""

import json
import os
import statistics
import sys
import urllib.request

DRIVER = os.environ["DAGY_BENCH_DRIVER"]  # http://127.0.0.1:PORT of chromedriver
PAGE = os.environ["DAGY_BENCH_PAGE"]  # the run page's URL
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(DRIVER + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read())["value"]


def main():
    chromium = os.environ.get("DAGY_CHROMIUM", "/usr/bin/chromium")
    caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900"]}}}}
    session = call("POST", "/session", caps)["sessionId"]
    timings = []
    try:
        for _ in range(RUNS):
            call("POST", f"/session/{session}/url", {"url": PAGE})
            timing = call("POST", f"/session/{session}/execute/sync", {"script": """
                const n = performance.getEntriesByType('navigation')[0];
                return [n.responseEnd, n.domContentLoadedEventEnd, n.loadEventEnd, n.transferSize,
                        document.querySelectorAll('[data-task-id]').length];""", "args": []})
            timings.append(timing)
    finally:
        call("DELETE", f"/session/{session}")
    med = lambda i: statistics.median(t[i] for t in timings)
    print(f"{PAGE}: {RUNS} loads in headless Chromium; machine: {os.cpu_count()} cores")
    print(f"median ms from navigation start: response {med(0):.0f}, DOMContentLoaded {med(1):.0f}, "
          f"load {med(2):.0f}; {timings[0][4]} task nodes; {timings[0][3] / 1024:.0f} KiB transferred")


if __name__ == "__main__":
    sys.exit(main())
