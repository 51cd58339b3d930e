"""How long ``ffwatt recommend`` takes to answer on a demo-sized run, side by side with
``ffwatt results show`` on the same run (the same interpreter start, reading the same rows).

Generates, in a temporary directory (not timed), a run shaped like the demo's: libx264
veryfast and medium, libx265 ultrafast and SVT-AV1 preset 10 along 4-point CRF ladders on
one 720p input (16 configurations; synthetic rows, see :mod:`analysis.synthetic`), alone
and again among 100 other runs of another campaign (the default scope scans every run).
With ``--results DIR`` it times a real results tree too (e.g. after ``make demo``: the
``quick`` campaign's latest run). Each command runs 5 times; medians are printed. Goal:
an answer in under 2 s, interpreter start included. Asserts nothing about time.

    .venv/bin/python -m bench.recommend [--results DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analysis.recommend import Scope, Target, recommend
from analysis.synthetic import synthetic_rows, write_synthetic_run
from ffwatt.fleet.prefect_server import BIN
from ffwatt.results import write_job_row

REPEATS = 5
DEMO_LADDERS = ((({"libx264": "veryfast"}), (20, 26, 32, 38)), (({"libx264": "medium"}), (20, 26, 32, 38)),
                (({"libx265": "ultrafast"}), (20, 26, 32, 38)), (({"libsvtav1": "10"}), (28, 36, 44, 52)))


def write_demo_run(root: Path, run_id: str) -> None:
    for seed, (encoders, crfs) in enumerate(DEMO_LADDERS):
        for row in synthetic_rows(campaign="quick", run_id=run_id, encoders=encoders, crfs=crfs, repetitions=1,
                                  seed=seed, estimated_encoders=("libx264", "libx265", "libsvtav1")):
            write_job_row(root, row)


def median_s(command: list[str], env: dict[str, str]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return statistics.median(times)


def time_tree(label: str, root: Path, campaign: str) -> None:
    env = {**os.environ, "FFWATT_RESULTS_DIR": str(root), "COLUMNS": "200"}
    ffwatt = str(BIN / "ffwatt")
    show = median_s([ffwatt, "results", "show", "--campaign", campaign], env)
    answer = median_s([ffwatt, "recommend", "--vmaf", "85", "--campaign", campaign], env)
    anywhere = median_s([ffwatt, "recommend", "--vmaf", "85"], env)
    start = time.perf_counter()
    for _ in range(REPEATS):
        recommend(root, Target(vmaf=85), Scope(campaign=campaign))
    in_process = (time.perf_counter() - start) / REPEATS
    def against_show(seconds: float) -> str:
        return f"{seconds:5.2f} s  ({seconds / show:.2f}× results show)"

    lines = {f"ffwatt results show --campaign {campaign}": f"{show:5.2f} s",
             f"ffwatt recommend --vmaf 85 --campaign {campaign}": against_show(answer),
             "ffwatt recommend --vmaf 85 (every campaign)": against_show(anywhere),
             "recommend() in process": f"{in_process:5.2f} s"}
    width = max(map(len, lines))
    print(label)
    for name, figure in lines.items():
        print(f"  {name:<{width}}  {figure}")
    print(f"  {'goal for the command':<{width}}  < 2 s, interpreter start included")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="a real results tree to time as well")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ffwatt-bench-") as tmp:
        alone = Path(tmp) / "alone"
        write_demo_run(alone, "demo-run")
        crowded = Path(tmp) / "crowded"
        start = datetime(2026, 1, 1, tzinfo=UTC)
        t0 = time.perf_counter()
        for i in range(100):
            write_synthetic_run(crowded, campaign="nightly", run_id=f"nightly-{i:03d}", repetitions=2, seed=i,
                                start=start + i * timedelta(days=1))
        write_demo_run(crowded, "demo-run")
        print(f"generated the runs in {time.perf_counter() - t0:.1f} s (not counted)")
        time_tree("a demo-sized run (16 configurations, 1 repetition):", alone, "quick")
        time_tree("the same run among 100 runs of another campaign (1,600 rows):", crowded, "quick")
    if args.results:
        time_tree(f"the quick campaign under {args.results}:", args.results, "quick")


if __name__ == "__main__":
    main()
