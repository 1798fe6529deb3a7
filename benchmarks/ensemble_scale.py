"""Ensemble throughput on this machine: one worker versus two, on the full default world 2024-2040.

Runs the same ensemble of ``club-vs-ban`` (its uncertainty block) with one and with two local worker
processes, side by side in one run, into a temporary store. The steady rate is measured from the end of the
first round of chunks (each worker's first chunk done) to the last chunk; worker start-up, a fixed cost, is
reported separately. Use several rounds (``draws >= 4 * chunk * workers``).

Prints one final line:
``draws_per_s_1w=<...> draws_per_s_2w=<...> scaling=<2w/1w> full_10k_estimate_s=<...>``

Usage: ``python benchmarks/ensemble_scale.py [--draws 120] [--chunk 10] [--scenario club-vs-ban]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def measure(scenario: str, draws: int, chunk: int, workers: int, store: Path) -> tuple[float, float]:
    """Return (steady draws per second, seconds until the first chunk completed)."""
    from critmin.results.ensemble import run_ensemble

    stamps: list[tuple[float, int]] = []
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        stamps.append((time.perf_counter() - t0, done))

    run_ensemble(
        scenario,
        draws=draws,
        seed=1,
        workers=workers,
        executor="local",
        store=store,
        chunk_size=chunk,
        progress=progress,
        load=False,
    )
    done_stamps = [(t, d) for t, d in stamps if d > 0]
    # The steady rate runs from the end of the first round (every worker has finished its first chunk, so
    # start-up is behind all of them) to the last chunk; timing from the first chunk alone would credit the
    # other workers' first chunks, computed mostly before it, to the steady interval.
    t_first = done_stamps[0][0]
    t_round, d_round = done_stamps[min(workers, len(done_stamps)) - 1]
    t_last, d_last = done_stamps[-1]
    if t_last <= t_round:
        return d_last / t_last, t_first
    return (d_last - d_round) / (t_last - t_round), t_first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=120)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--scenario", default="club-vs-ban")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rate1, start1 = measure(args.scenario, args.draws, args.chunk, 1, Path(tmp) / "one.duckdb")
        print(f"1 worker : {rate1:8.2f} draws/s steady, first chunk after {start1:.1f} s")
        rate2, start2 = measure(args.scenario, args.draws, args.chunk, 2, Path(tmp) / "two.duckdb")
        print(f"2 workers: {rate2:8.2f} draws/s steady, first chunk after {start2:.1f} s")
    estimate = 10_000 / rate2 + start2
    print(
        f"draws_per_s_1w={rate1:.3f} draws_per_s_2w={rate2:.3f} scaling={rate2 / rate1:.3f} "
        f"full_10k_estimate_s={estimate:.0f}"
    )


if __name__ == "__main__":
    main()
