"""Benchmark ``varprop derive --all``: wall time from scratch and with ``--reuse-montecarlo``,
with 1 and with 2 worker processes, each run into a fresh temporary folder (never into the
repository's derivations/), and whether the runs wrote the same files.

Run:  python benchmarks/derive_all.py                  # all four runs (several minutes)
      python benchmarks/derive_all.py --reuse-only     # only the --reuse-montecarlo runs
      python benchmarks/derive_all.py --scratch-only   # only the runs from scratch
      python benchmarks/derive_all.py --workers 2      # only that worker count
      python benchmarks/derive_all.py --root ../main   # another checkout's code (before/after)

The reuse runs start from a copy of the committed ``derivations/montecarlo.json``.  Each run is
a separate ``varprop derive`` process, so start-up (imports) is included, as a user sees it.  The
wall time depends on what else the machine runs: the load average is printed with each row, and
so is the CPU time of the run (its processes' user + system time, and each apart), which does
not: on an idle machine the wall time of one worker is about its CPU time, and of two workers
at least half of it.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _children_cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def run(out: Path, *, workers: int, reuse: bool, root: Path = ROOT) -> tuple[float, float, float]:
    """Wall, user CPU and system CPU seconds of one ``varprop derive --all`` into ``out``, with
    the code (``src``) and committed record of the checkout ``root``."""
    out.mkdir(parents=True)
    if reuse:
        shutil.copy(root / "derivations" / "montecarlo.json", out / "montecarlo.json")
    cmd = [sys.executable, "-c", "import sys; from varprop.cli import main; sys.exit(main())",
           "derive", "--all", "--out", str(out), "--no-progress", "--workers", str(workers)]
    if reuse:
        cmd.append("--reuse-montecarlo")
    env = dict(os.environ, PYTHONPATH=str(root / "src"))
    t0, (user0, sys0) = time.perf_counter(), _children_cpu()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, cwd=root)
    user1, sys1 = _children_cpu()
    return time.perf_counter() - t0, user1 - user0, sys1 - sys0


def same_files(a: Path, b: Path) -> bool:
    """Whether two output folders hold the same files with the same bytes."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    other = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files == other and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse-only", action="store_true", help="skip the runs from scratch")
    parser.add_argument("--scratch-only", action="store_true",
                        help="skip the --reuse-montecarlo runs")
    parser.add_argument("--workers", type=int, action="append", help="worker counts (default 1 2)")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the checkout whose src/ and derivations/ to run (default: this one)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the outputs under this folder instead of a temporary one")
    args = parser.parse_args()
    counts = args.workers or [1, 2]
    if args.reuse_only and args.scratch_only:
        parser.error("--reuse-only and --scratch-only exclude each other")
    modes = [True] if args.reuse_only else [False] if args.scratch_only else [True, False]
    print(f"varprop derive --all, {os.cpu_count()} cores, code of {args.root.resolve()}")
    print(f"{'mode':<22}{'workers':>8}{'wall s':>10}{'CPU s':>10}{'user s':>10}{'sys s':>10}"
          f"{'load avg':>10}")
    with tempfile.TemporaryDirectory(prefix="varprop-derive-") as tmp_dir:
        tmp = str(args.keep) if args.keep is not None else tmp_dir
        outs: dict[tuple[bool, int], Path] = {}
        for reuse in modes:
            for workers in counts:
                out = Path(tmp) / f"{'reuse' if reuse else 'scratch'}-{workers}"
                seconds, user, sys_ = run(out, workers=workers, reuse=reuse,
                                          root=args.root.resolve())
                outs[(reuse, workers)] = out
                mode = "--reuse-montecarlo" if reuse else "from scratch"
                print(f"{mode:<22}{workers:>8}{seconds:>10.1f}{user + sys_:>10.1f}{user:>10.1f}"
                      f"{sys_:>10.1f}{os.getloadavg()[0]:>10.2f}", flush=True)
        for reuse in modes:
            runs = [outs[(reuse, w)] for w in counts]
            if len(runs) > 1:
                same = all(same_files(runs[0], r) for r in runs[1:])
                print(f"{'reuse' if reuse else 'scratch'}: same files for workers {counts}: {same}")
        if len(modes) == 2:
            for w in counts:
                print(f"workers {w}: scratch and reuse write the same files: "
                      f"{same_files(outs[(True, w)], outs[(False, w)])}")


if __name__ == "__main__":
    main()
