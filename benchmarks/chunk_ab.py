"""An ensemble chunk's CPU time with the working tree's package against another git revision's, in pairs.

Usage::

    python benchmarks/chunk_ab.py --against REV [--pairs 6] [--draws 30] [--repeats 2] [--scenario club-vs-ban]

Where a change reaches beyond the engine (instruments, building instances, the run record), both versions
cannot share one process as in ``engine_ab.py``. Each measurement is a fresh process that imports the package
from one tree (``--against`` is checked out into a temporary git worktree; the working tree's own ``src`` is
the other), compiles or loads the kernels on a two-draw warm-up, then solves one ``--draws``-draw chunk of the
scenario's uncertainty block (seed 1, one thread) ``--repeats`` times and reports the least CPU time. The
two versions alternate, old first, ``--pairs`` times: on a machine whose speed drifts by a fifth within
minutes, the ratio within each pair (measured a minute apart) holds still better than either time.

The last line is ``cpu_ratio_median=<new/old> cpu_ratio_total=<...> pairs=<n> draws=<n>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys, time
from critmin.ensemble.runner import make_chunks, solve_chunk
from critmin.ensemble.sampling import draw_table
from critmin.simulate.scenario import load_scenario

name, draws, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
spec = load_scenario(name)
base = spec.model_dump(mode="json")
base["uncertainty"] = None
solve_chunk(make_chunks(base, draw_table(spec.uncertainty, 2, 99), spec.world, 2)[0])  # compile or load kernels
payload = make_chunks(base, draw_table(spec.uncertainty, draws, 1), spec.world, draws)[0]
best = float("inf")
for _ in range(repeats):
    start = time.process_time()
    solve_chunk(payload)
    best = min(best, time.process_time() - start)
print(best)
"""


def chunk_cpu(src: Path, scenario: str, draws: int, repeats: int) -> float:
    """Least CPU seconds of one chunk, in a fresh process importing the package from ``src``."""
    env = dict(os.environ, PYTHONPATH=str(src), NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, scenario, str(draws), str(repeats)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", required=True, help="git revision to compare with (e.g. HEAD~3)")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scenario", default="club-vs-ban")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="critmin-ab-") as tmp:
        tree = Path(tmp) / "old"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), args.against], cwd=ROOT, check=True, capture_output=True
        )
        try:
            ratios, olds, news = [], [], []
            for pair in range(args.pairs):
                old = chunk_cpu(tree / "src", args.scenario, args.draws, args.repeats)
                new = chunk_cpu(ROOT / "src", args.scenario, args.draws, args.repeats)
                olds.append(old)
                news.append(new)
                ratios.append(new / old)
                print(f"pair {pair + 1}: old {old:.2f} s, new {new:.2f} s, new/old {new / old:.3f}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    print(
        f"cpu_ratio_median={statistics.median(ratios):.3f} cpu_ratio_total={sum(news) / sum(olds):.3f} "
        f"pairs={args.pairs} draws={args.draws}"
    )


if __name__ == "__main__":
    main()
