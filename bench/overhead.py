"""How much ffwatt adds to the FFmpeg work it measures.

Runs a 10-job campaign (quality off) through the real flow against a real Prefect
server, and the very same FFmpeg commands bare, taken from the rows' ffmpeg_cmd;
three passes, the two sides alternating ABAB (measured, bare, measured, ...: the first pass
also makes the commands the bare side runs), so drift on this shared machine hits both sides
alike, and the spread of the three passes' ratios says how far one pass can be trusted.
Prints the ratio of campaign wall time to bare FFmpeg wall time, with and without what the
run spends on the node rather than on orchestration: the idle baseline (before the first job,
when not reused), the run's control encodes (start and end), the waits for the node to settle
before each job, and the last job's series tail (its window runs ``MARGIN_S`` past its encode,
and the run ends once that is sampled); goal for orchestration alone <= 1.05; and splits the
difference into time spent outside FFmpeg (Prefect's per-run and per-task costs, our bookkeeping)
and FFmpeg running slower inside the flow than bare (the same machine's CPU shared with the
Prefect server).

    .venv/bin/python -m bench.overhead
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

PASSES = 3
CAMPAIGN = {
    "name": "bench-overhead",
    "inputs": [{"name": "testsrc2-720p", "source": "testsrc2", "size": "1920x1080", "fps": 30, "duration_s": 5}],
    "matrix": {
        "encoders": [
            {"name": "libx264", "presets": ["veryfast", "medium"]},
            {"name": "libx265", "presets": ["ultrafast"]},
            {"name": "libsvtav1", "presets": ["10"]},
            {"name": "libvpx-vp9", "presets": ["8"], "extra_args": ["-deadline", "realtime"]},
        ],
        "rate_control": [{"mode": "crf", "values": [26, 36]}],
    },
    "quality": [],
}


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ffwatt-bench-"))
    os.environ["FFWATT_HOME"] = str(work / "home")
    os.environ["FFWATT_RESULTS_DIR"] = str(work / "results")
    from testbed.prefect_server import temporary_server

    with temporary_server() as server:
        os.environ.update(server)
        from ffwatt.jobs import expand
        from ffwatt.results import RunSummary, read_results
        from ffwatt.series import MARGIN_S
        from ffwatt.settings import load_settings
        from ffwatt.validation import parse_campaign
        from flows.campaign import campaign_flow
        from tasks.generate import prepare_reference

        campaign = parse_campaign(CAMPAIGN)
        jobs = expand(campaign)
        settings = load_settings()
        prepare_reference(campaign.inputs[0], campaign.reference_format, settings)  # not timed

        campaign_s: list[float] = []
        in_flow_ffmpeg_s: list[float] = []
        bare_s: list[float] = []
        idle_s: list[float] = []  # measuring the idle baseline, when the run did (not reused)
        node_s: list[float] = []  # the control encodes and the waits to settle: measuring the node, not orchestrating
        tail_s: list[float] = []  # the part of the last job's series window after its encode the run waited for
        for _ in range(PASSES):
            start = time.perf_counter()
            summary = campaign_flow(campaign)
            campaign_s.append(time.perf_counter() - start)
            returned_at = time.time()
            assert isinstance(summary, RunSummary), summary
            every = read_results(settings.results_dir, run_id=summary.run_id, controls=True)
            rows = every[every.kind != "control"]
            assert (rows.status == "ok").all(), rows[rows.status != "ok"].error.tolist()
            controls = every[every.kind == "control"]
            # A control's span: its settle, its encode, and what its row and series took until the next began.
            node_s.append(float(rows.settle_s.fillna(0).sum())
                          + sum(float(c.settle_s or 0) + float(c.wall_s or 0) for c in controls.itertuples()))
            in_flow_ffmpeg_s.append(float(rows.wall_s.sum()))
            idle_s.append(sum(b.seconds for b in summary.idle_baselines.values() if not b.reused))
            last_encode_end = max(ended.timestamp() for ended in rows.ended_at)
            tail_s.append(max(0.0, min(MARGIN_S, returned_at - last_encode_end)))
            start = time.perf_counter()
            for command in rows.ffmpeg_cmd:
                # The same command, writing where the bench can: the run's scratch folder is gone.
                args = [*shlex.split(command)[:-1], str(Path(tempfile.gettempdir()) / "ffwatt-bench-bare.mkv")]
                subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            bare_s.append(time.perf_counter() - start)

    print(f"{len(jobs)} jobs per campaign run, {PASSES} passes; the node measures its idle baseline in the first "
          "and reuses it in the others (idle_baseline_reuse_s)")
    alone = []  # orchestration alone, per pass
    passes = zip(campaign_s, idle_s, node_s, tail_s, bare_s, strict=True)
    for index, (flow_s, idle, node, tail, ffmpeg_s) in enumerate(passes, 1):
        alone.append((flow_s - idle - node - tail) / ffmpeg_s)
        print(f"pass {index}: campaign {flow_s:.2f} s (idle baseline {idle:.2f} s, control encodes and settling "
              f"{node:.2f} s, series tail {tail:.2f} s of it), bare FFmpeg {ffmpeg_s:.2f} s, "
              f"ratio {flow_s / ffmpeg_s:.3f}, without the idle baseline {(flow_s - idle) / ffmpeg_s:.3f}, "
              f"orchestration alone {alone[-1]:.3f}")
    print(f"spread over the {PASSES} passes: orchestration alone {min(alone):.3f} to {max(alone):.3f} "
          f"({(max(alone) - min(alone)) * 100:.1f} points); bare FFmpeg {min(bare_s):.2f} to {max(bare_s):.2f} s "
          f"({(max(bare_s) / min(bare_s) - 1) * 100:.1f} %)")
    total_campaign, total_bare, total_in_flow = sum(campaign_s), sum(bare_s), sum(in_flow_ffmpeg_s)
    total_idle, total_tail, total_node = sum(idle_s), sum(tail_s), sum(node_s)
    outside_ms = (total_campaign - total_idle - total_node - total_tail - total_in_flow) / PASSES * 1000
    slower_ms = (total_in_flow - total_bare) / (PASSES * len(jobs)) * 1000
    print(f"outside FFmpeg, the idle baseline, the control encodes, settling and the series tail: {outside_ms:.0f} ms "
          "per campaign run; "
          f"FFmpeg inside the flow vs bare: {slower_ms:+.0f} ms per job")
    print(f"campaign / bare: {total_campaign / total_bare:.3f} as run; without the idle baseline "
          f"{(total_campaign - total_idle) / total_bare:.3f}; orchestration alone (without it, the control encodes, "
          f"settling and the series tail) {(total_campaign - total_idle - total_node - total_tail) / total_bare:.3f} "
          "(goal <= 1.05)")

if __name__ == "__main__":
    main()
