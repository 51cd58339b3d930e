"""How many real-time live streams of the 720p two-rung x264 veryfast ladder this machine carries, and
the watts per stream there.

Runs ``deployments/campaigns/live.yaml`` (1280x720@3000k + 640x360@800k, libx264 veryfast, 1 and 2
streams then doubling until real time breaks, then bisecting to the exact largest N) through
``ffwatt campaign run`` in a temporary directory, against a private nginx-rtmp on loopback, and prints
each step and the sweep's outcome.
The load average before and after is printed beside the figure: real time is the first thing other
load takes away, so quote the figure with it, and measure on a quiet machine. W/stream is net of the
idle baseline measured first (the row's live_watts_per_stream), and labelled estimated where RAPL
can't be read; on a machine others use too, the idle baseline moves with their load, so the FFmpeg
processes' own share (attributed_energy_j: net energy x their share of the busy CPU time) is
printed beside it.

    .venv/bin/python -m bench.live [--duration S] [--idle S] [--repetitions N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import yaml

from analysis.live import live_steps, sweep_outcomes
from ffwatt.fleet.prefect_server import BIN
from ffwatt.results import read_results
from ffwatt.schema import is_estimated
from ffwatt.settings import REPO
from master.ingest import private_ingest

CAMPAIGN = REPO / "deployments" / "campaigns" / "live.yaml"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=None, help="seconds per stream (the campaign's: 20)")
    parser.add_argument("--idle", type=float, default=None, help="seconds of idle baseline (the campaign's: 10)")
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, help="keep the results here")
    args = parser.parse_args()
    spec = yaml.safe_load(CAMPAIGN.read_text())
    if args.duration is not None:
        spec["inputs"][0]["duration_s"] = args.duration
    if args.idle is not None:
        spec["idle_baseline_s"] = args.idle
    spec["repetitions"] = args.repetitions
    with tempfile.TemporaryDirectory(prefix="ffwatt-bench-live-") as tmp:
        work = args.keep or Path(tmp)
        campaign_file = work / "live.yaml"
        work.mkdir(parents=True, exist_ok=True)
        campaign_file.write_text(yaml.safe_dump(spec))
        before = loadavg()
        with private_ingest() as ingest:
            env = {**os.environ, "FFWATT_HOME": str(work / "home"), "FFWATT_RESULTS_DIR": str(work / "results"),
                   "FFWATT_INGEST_URL": ingest.url, "COLUMNS": "200"}
            done = subprocess.run([str(BIN / "ffwatt"), "campaign", "run", str(campaign_file)], env=env,
                                  capture_output=True, text=True)
        after = loadavg()
        if done.returncode not in (0, 1):
            raise SystemExit(f"the campaign didn't run:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        frame = read_results(work / "results", campaign=spec["name"])
    steps, (outcome,) = live_steps(frame), list(sweep_outcomes(frame).itertuples())
    ok = frame[frame["status"] == "ok"]
    attributed = (ok["attributed_energy_j"] / ok["wall_s"] / ok["live_streams"]).groupby(ok["live_streams"]).mean()
    estimated = is_estimated(frame["energy_source"].dropna().iloc[0]) if frame["energy_source"].notna().any() else False
    label = " (estimated)" if estimated else ""
    print(f"{outcome.encoder} {outcome.preset} {outcome.live_ladder}, {spec['inputs'][0]['duration_s']:g} s "
          f"streams, on {outcome.node}; load average {before} before, {after} after")
    print(f"{'N':>4} {'how':>9} {'held':>5} {'lowest speed':>13} {'dropped':>8} {'W/stream':>9} {'attributed':>11} "
          f"{'latency ms':>11}  why not")
    for step in steps.itertuples():
        print(f"{step.live_streams:>4} {step.phase:>9} {'yes' if step.held else 'no':>5} {_num(step.speed, 3):>13} "
              f"{_num(step.dropped_frames, 0):>8} {_num(step.live_watts_per_stream, 2):>9} "
              f"{_num(attributed.get(step.live_streams), 2):>11} {_num(step.live_latency_ms, 0):>11}  {step.reason}")
    if outcome.max_realtime_streams:
        print(f"largest real-time N: {outcome.max_realtime_streams}; W/stream at N: "
              f"{_num(outcome.watts_per_stream, 2)}{label} (attributed to FFmpeg: "
              f"{_num(attributed.get(outcome.max_realtime_streams), 2)}{label}); broke at N = "
              f"{_num(outcome.broke_at, 0)}")
    else:
        print(f"no step held real time (broke at N = {_num(outcome.broke_at, 0)})")


def _num(value: object, digits: int) -> str:
    if value is None or value != value:  # noqa: PLR0124 - NaN
        return "-"
    return f"{float(value):.{digits}f}"  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
