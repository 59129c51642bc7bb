"""ToolEnv throughput: steps per second with the scripted gold policy on the built-in simulated suites.

Run: .venv/bin/python benchmarks/bench_env.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import time

from qwen_tool.env import ToolEnv
from qwen_tool.env.suites import SUITES


def measure(seconds: float, **env_options) -> tuple[float, int]:
    """(steps per second, steps) over whole gold episodes of every built-in task, repeated for `seconds`."""
    tasks = [task for cls in SUITES.values() for task in cls.tasks()]
    env = ToolEnv(**env_options)
    steps, start = 0, time.perf_counter()
    seed = 0
    while time.perf_counter() - start < seconds:
        for task in tasks:
            env.reset(task, seed=seed)
            while not env.done:
                env.step(env.present_gold(env.step_index))
                steps += 1
        seed += 1
    elapsed = time.perf_counter() - start
    return steps / elapsed, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    for label, options in (("clean", {}), ("noise=union, instability=0.1", {"noise": "union",
                                                                            "instability_rate": 0.1})):
        rate, steps = measure(args.seconds, **options)
        print(f"{label}: {rate:,.0f} steps/s ({steps} steps)")


if __name__ == "__main__":
    main()
