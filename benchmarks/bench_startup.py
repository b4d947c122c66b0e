"""Start-up time of ``varprop predict`` against ``python -c "import numpy"``.

Runs each command ``--repeat`` times (default 5) in fresh interpreters and reports the best
wall-clock time of each and their ratio (issue 14 aims at a ratio of at most 3)::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_startup.py [--repeat 5] [--json]

The ``varprop`` command is run as ``python -m varprop`` with the same interpreter, so that the
comparison is independent of the console script's own start-up.  Where the time goes:
``python -X importtime -m varprop predict relu he_normal --fan-in 256 --depth 5``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

PREDICT = ["-m", "varprop", "predict", "relu", "he_normal", "--fan-in", "256", "--depth", "5"]
NUMPY = ["-c", "import numpy"]


def best_of(argv: list[str], repeat: int) -> float:
    """The best wall-clock time (seconds) of ``python ARGV`` over ``repeat`` fresh runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, *argv], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    numpy_s = best_of(NUMPY, args.repeat)
    predict_s = best_of(PREDICT, args.repeat)
    result = {"numpy_s": round(numpy_s, 4), "predict_s": round(predict_s, 4),
              "ratio": round(predict_s / numpy_s, 2), "repeat": args.repeat}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"python -c 'import numpy'            best of {args.repeat}: {numpy_s:.3f} s")
        print(f"varprop predict relu he_normal ...   best of {args.repeat}: {predict_s:.3f} s")
        print(f"ratio: {predict_s / numpy_s:.2f}x (aim: <= 3x)")


if __name__ == "__main__":
    main()
