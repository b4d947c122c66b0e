"""Start-up time of ``varprop predict`` against ``python -c "import numpy"``.

Times, in ONE run, fresh interpreters of

- ``python -c "import numpy"`` (the baseline),
- the console script ``varprop predict relu he_normal --fan-in 256 --depth 5`` (the ``varprop``
  next to this interpreter),
- the same as ``python -m varprop predict ...``,
- the API, ``import varprop; varprop.predict_variance("relu", "he_normal", fan_in=256, depth=5)``,

each ``--repeat`` times (default 9), interleaved round by round (numpy, script, module, numpy,
...: a shared machine's load then weighs on all alike), and reports the best wall-clock time of
each, their ratios to the baseline (issue 14 aims at a ratio of at most 3) and the load average
before and after::

    .venv/bin/python benchmarks/bench_startup.py [--repeat 9] [--json] [--compare SRC]

``varprop`` is imported from this checkout's ``src`` (``PYTHONPATH``, ahead of any installed
copy).  ``--compare SRC`` also times ``python -m varprop predict ...`` with ``PYTHONPATH=SRC``
(e.g. the ``src`` folder of another checkout: before/after a change, measured in one run).
Where the time goes: ``python -X importtime -m varprop predict relu he_normal --fan-in 256
--depth 5``; ``tests/test_startup.py`` checks that the command imports no SymPy, mpmath or SciPy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ARGS = ["predict", "relu", "he_normal", "--fan-in", "256", "--depth", "5"]
API = "import varprop; varprop.predict_variance('relu', 'he_normal', fan_in=256, depth=5)"
SRC = str(Path(__file__).resolve().parents[1] / "src")
SCRIPT = str(Path(sys.executable).with_name("varprop"))


def run_once(command: list[str], src: str | None = None) -> float:
    """Wall-clock seconds of one ``command`` (with ``PYTHONPATH=src`` if given)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def cases(compare: str | None) -> dict[str, tuple[list[str], str | None]]:
    """Name -> (command, PYTHONPATH) of everything timed."""
    out: dict[str, tuple[list[str], str | None]] = {
        "numpy_s": ([sys.executable, "-c", "import numpy"], None),
        "script_s": ([SCRIPT, *ARGS], SRC),
        "module_s": ([sys.executable, "-m", "varprop", *ARGS], SRC),
        "api_s": ([sys.executable, "-c", API], SRC),
    }
    if compare:
        out["compare_s"] = ([sys.executable, "-m", "varprop", *ARGS], compare)
    return out


def measure(repeat: int, compare: str | None = None) -> dict[str, float]:
    """Best times (seconds), their ratios to ``import numpy`` and the load averages."""
    timed = cases(compare)
    load_before = os.getloadavg()[0]
    for command, src in timed.values():  # warm the file cache and the bytecode caches
        run_once(command, src)
    times: dict[str, list[float]] = {key: [] for key in timed}
    for _ in range(repeat):
        for key, (command, src) in timed.items():
            times[key].append(run_once(command, src))
    best = {key: round(min(values), 4) for key, values in times.items()}
    for key in timed:
        if key != "numpy_s":
            best[key.replace("_s", "_ratio")] = round(best[key] / best["numpy_s"], 2)
    best["load_before"] = round(load_before, 2)
    best["load_after"] = round(os.getloadavg()[0], 2)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--compare", metavar="SRC", help="also time predict with PYTHONPATH=SRC")
    args = parser.parse_args()
    result = measure(args.repeat, args.compare)
    if args.json:
        print(json.dumps({**result, "repeat": args.repeat}))
        return
    n = args.repeat
    print(f"load average (1 min) {result['load_before']:.2f} before, {result['load_after']:.2f} after")
    print(f"python -c 'import numpy'                 best of {n}: {result['numpy_s']:.3f} s")
    print(f"varprop predict relu he_normal ...        best of {n}: {result['script_s']:.3f} s  "
          f"ratio {result['script_ratio']:.2f}x (aim: <= 3x)")
    print(f"python -m varprop predict relu ...        best of {n}: {result['module_s']:.3f} s  "
          f"ratio {result['module_ratio']:.2f}x")
    print(f"import varprop; predict_variance(...)     best of {n}: {result['api_s']:.3f} s  "
          f"ratio {result['api_ratio']:.2f}x")
    if args.compare:
        print(f"  python -m varprop from {args.compare}: {result['compare_s']:.3f} s  "
              f"ratio {result['compare_ratio']:.2f}x")


if __name__ == "__main__":
    main()
