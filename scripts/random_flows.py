#!/usr/bin/env python3
"""Writes N random but valid FlowSpec files (random DAGs with every retry and timeout option the
ASL translation reads) into a folder. Usage: random_flows.py N FOLDER [SEED]"""

import json
import random
import sys
from pathlib import Path


def flow(rng, index):
    count = rng.randint(1, 40)
    tasks = []
    for i in range(count):
        task = {"id": f"t{i}", "handler": rng.choice(["echo", "sum", "sleep", "flaky"])}
        if i and rng.random() < 0.8:
            task["depends_on"] = sorted({f"t{rng.randrange(i)}" for _ in range(rng.randint(1, 3))})
        if rng.random() < 0.6:
            task["retries"] = rng.randint(0, 10)
            delay = rng.choice([
                rng.randint(0, 60),
                round(rng.uniform(0, 10), 3),
                [round(rng.uniform(0, 30), 2) for _ in range(rng.randint(1, 4))],
            ])
            task["retry_delay_seconds"] = delay
        if rng.random() < 0.3:
            task["retry_jitter_factor"] = round(rng.uniform(0, 1), 2)
        if rng.random() < 0.5:
            task["timeout_seconds"] = rng.choice([rng.randint(1, 900), round(rng.uniform(0.1, 900), 2)])
        tasks.append(task)
    return {"spec_version": 1, "name": f"random-{index}", "tasks": tasks}


def main():
    count, folder = int(sys.argv[1]), Path(sys.argv[2])
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 20261124)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"random-{i:04}.json").write_text(json.dumps(flow(rng, i)))


if __name__ == "__main__":
    main()
