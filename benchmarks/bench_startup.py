"""Start-up time of ``varprop predict`` against ``python -c "import numpy"``.

Runs each command ``--repeat`` times (default 7) in fresh interpreters, interleaved (numpy,
predict, numpy, predict, ...: a shared machine's load then weighs on both alike), and reports the
best wall-clock time of each and their ratio (issue 14 aims at a ratio of at most 3)::

    .venv/bin/python benchmarks/bench_startup.py [--repeat 7] [--json] [--compare SRC]

``--compare SRC`` also times the same command with ``PYTHONPATH=SRC`` (e.g. the ``src`` folder
of another checkout: before/after a change, measured in one run).  The ``varprop`` command is
run as ``python -m varprop`` with the same interpreter, so that the comparison is independent of
the console script's own start-up.  Where the time goes:
``python -X importtime -m varprop predict relu he_normal --fan-in 256 --depth 5``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PREDICT = ["-m", "varprop", "predict", "relu", "he_normal", "--fan-in", "256", "--depth", "5"]
NUMPY = ["-c", "import numpy"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_once(argv: list[str], src: str | None = None) -> float:
    """Wall-clock seconds of one ``python ARGV`` (with ``PYTHONPATH=src`` if given)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def best_of(argv: list[str], repeat: int) -> float:
    """The best wall-clock time (seconds) of ``python ARGV`` over ``repeat`` fresh runs."""
    return min(run_once(argv) for _ in range(repeat))


def measure(repeat: int, compare: str | None = None) -> dict[str, float]:
    """Best times of numpy, predict (this checkout) and, with ``compare``, predict from there."""
    cases = {"numpy_s": (NUMPY, None), "predict_s": (PREDICT, SRC)}
    if compare:
        cases["compare_s"] = (PREDICT, compare)
    for argv, src in cases.values():  # warm the file cache and the bytecode caches
        run_once(argv, src)
    times: dict[str, list[float]] = {key: [] for key in cases}
    for _ in range(repeat):
        for key, (argv, src) in cases.items():
            times[key].append(run_once(argv, src))
    best = {key: round(min(values), 4) for key, values in times.items()}
    best["ratio"] = round(best["predict_s"] / best["numpy_s"], 2)
    if compare:
        best["compare_ratio"] = round(best["compare_s"] / best["numpy_s"], 2)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--compare", metavar="SRC", help="also time predict with PYTHONPATH=SRC")
    args = parser.parse_args()
    result = measure(args.repeat, args.compare)
    if args.json:
        print(json.dumps({**result, "repeat": args.repeat}))
        return
    print(f"python -c 'import numpy'              best of {args.repeat}: {result['numpy_s']:.3f} s")
    print(f"varprop predict relu he_normal ...     best of {args.repeat}: "
          f"{result['predict_s']:.3f} s  ratio {result['ratio']:.2f}x (aim: <= 3x)")
    if args.compare:
        print(f"  the same from {args.compare}: {result['compare_s']:.3f} s  "
              f"ratio {result['compare_ratio']:.2f}x")


if __name__ == "__main__":
    main()
