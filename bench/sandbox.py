"""Sandbox start-up cost: a trivial `python -c pass` run through the sandbox vs run directly, same interpreter.

    python bench/sandbox.py [--runs 200] [--files 40]

Runs alternate between the two. Prints p50/p99 of each, the sandbox's own cost per run (the difference of the medians) and the ratio.
The sandboxed runs copy --files small files in as a generated project would; the direct runs copy
nothing, so the difference includes staging the project, bubblewrap, the limits and the copy.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.sandbox import Sandbox  # noqa: E402
from shared.settings import Settings  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed(runs: int, *candidates) -> list[list[float]]:
    """Milliseconds per call of each candidate, calls interleaved so that load on the machine hits all alike."""
    for run in candidates:
        run()  # warm the page cache and the probe
    samples: list[list[float]] = [[] for _ in candidates]
    for _ in range(runs):
        for run, times in zip(candidates, samples):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--files", type=int, default=40)
    args = parser.parse_args()

    sandbox = Sandbox.from_settings(Settings(_env_file=None))
    status = sandbox.status()
    print(f"sandbox: {status.describe()}")
    if status.state != "available":
        sys.exit("no sandbox to measure")
    python = sandbox.python
    files = {f"pkg/module_{i}.py": f"VALUE = {i}\n" * 20 for i in range(args.files)}

    def direct() -> None:
        subprocess.run([python, "-c", "pass"], check=True, env={"PATH": "/usr/bin:/bin"})

    def sandboxed() -> None:
        result = sandbox.run(files, [python, "-c", "pass"], timeout=30)
        assert result.returncode == 0, result.output

    outside, inside = timed(args.runs, direct, sandboxed)
    for label, samples in (("direct   ", outside), ("sandboxed", inside)):
        print(f"{label} python -c pass: p50 {statistics.median(samples):6.1f} ms   p99 {percentile(samples, 0.99):6.1f} ms"
              f"   ({len(samples)} runs)")
    overhead = statistics.median(inside) - statistics.median(outside)
    print(f"sandbox's own cost per run: {overhead:.1f} ms (p50 difference); "
          f"ratio sandboxed/direct {statistics.median(inside) / statistics.median(outside):.2f}")


if __name__ == "__main__":
    main()
