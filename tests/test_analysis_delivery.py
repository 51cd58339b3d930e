"""Encode + delivery energy in ``ffwatt recommend``: break-even views worked by hand on made-up rows.

Two configurations of one clip at 25 fps, both above VMAF 80:

* fast: 0.1 J/frame to encode, 1000 kbit/s: 1000 × 1000 / 8 / 25 = 5000 bytes a frame; at 30 Wh/GB,
  5000e-9 GB × 30 Wh/GB × 3600 J/Wh = 0.54 J per frame per view.
* slow: 0.6 J/frame to encode, 800 kbit/s: 4000 bytes a frame, 0.432 J per frame per view.

The totals meet at (0.6 − 0.1) / (0.54 − 0.432) = 4.6296… views: below it fast wins, beyond it slow.
At 7 Wh/GB (the low end of the published range) delivery is 0.126 and 0.1008 J/frame, at 140 Wh/GB
2.52 and 2.016: one view then costs 0.226 against 0.7008 (fast), and 2.62 against 2.616 (slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.delivery import breakeven_views, delivery_j_per_frame
from analysis.recommend import Target, recommend, recommend_with_delivery
from ffwatt.results import write_job_row
from ffwatt.schema import JobRow
from tests.conftest import ffwatt

BREAKEVEN = 0.5 / 0.108


def write_rows(root: Path, *, repetitions: int = 1) -> None:
    for name, preset, jpf, kbps, vmaf in (("fast", "veryfast", 0.1, 1000.0, 85.0), ("slow", "slow", 0.6, 800.0, 86.0)):
        for rep in range(1, repetitions + 1):
            # Repetitions of J/frame spread ±10 % (mean jpf): a 95 % interval with 3 of them.
            scale = 1.0 + 0.1 * (rep - 2) if repetitions == 3 else 1.0
            frames = 250
            write_job_row(root, JobRow(
                campaign="decide", run_id="run-1", job_id=f"{name}-{rep}", config_id=name, repetition=rep,
                node="node-a", input_name="clip", input_fps=25.0, input_frames=frames, encoder="libx264",
                preset=preset, rate_control="crf", crf=23, output_width=1280, output_height=720, status="ok",
                attempts=1, wall_s=1.0, frames=frames, encode_fps=250.0, bitrate_kbps=kbps,
                output_bytes=int(kbps * 1000 / 8 * 10), vmaf=vmaf, energy_j=jpf * scale * frames,
                joules_per_frame=jpf * scale, energy_source="rapl", extra_args=""))


def test_delivery_per_frame_and_the_break_even_by_hand():
    assert delivery_j_per_frame(1000.0, 25.0, 30.0) == pytest.approx(0.54)
    assert delivery_j_per_frame(800.0, 25.0, 30.0) == pytest.approx(0.432)
    assert breakeven_views(0.6, 0.432, 0.1, 0.54) == (pytest.approx(BREAKEVEN), "more views")
    assert breakeven_views(0.1, 0.54, 0.6, 0.432) == (pytest.approx(BREAKEVEN), "fewer views")
    assert breakeven_views(0.05, 0.4, 0.1, 0.54) == (None, "always")  # cheaper and smaller
    assert breakeven_views(0.2, 0.6, 0.1, 0.54) == (None, "never")


def test_few_views_pick_the_cheap_encode_and_many_the_small_file(tmp_path: Path):
    root = tmp_path / "results"
    write_rows(root)
    (one,) = recommend(root, Target(vmaf=80, views=1)).answers
    assert one.recommendation is not None and one.recommendation.config.startswith("libx264 veryfast")
    assert one.recommendation.value == pytest.approx(0.1 + 0.54)
    (runner,) = one.runners_up
    assert runner.value == pytest.approx(0.6 + 0.432)
    assert runner.delivery is not None
    assert (runner.delivery.breakeven_views, runner.delivery.better_with) == (pytest.approx(BREAKEVEN), "more views")
    (many,) = recommend(root, Target(vmaf=80, views=1e9)).answers
    assert many.recommendation is not None and many.recommendation.config.startswith("libx264 slow")
    assert many.recommendation.bitrate_kbps == 800.0
    assert many.runners_up[0].delivery is not None
    assert many.runners_up[0].delivery.better_with == "fewer views"
    assert many.runners_up[0].delivery.breakeven_views == pytest.approx(BREAKEVEN)


def test_the_answer_at_both_ends_of_the_published_range(tmp_path: Path):
    root = tmp_path / "results"
    write_rows(root)
    answer = recommend_with_delivery(root, Target(vmaf=80, views=1))
    ends = {end.wh_per_gb: end for end in answer.range_ends}
    assert ends[7.0].config is not None and ends[7.0].config.startswith("libx264 veryfast")
    assert ends[7.0].total_j_per_frame == pytest.approx(0.1 + 0.126)
    assert ends[140.0].config is not None and ends[140.0].config.startswith("libx264 slow")
    assert ends[140.0].total_j_per_frame == pytest.approx(0.6 + 2.016)
    text = answer.markdown()
    assert "better beyond 5 views" in text and "At the ends of the published range" in text


def test_the_break_even_interval_comes_from_the_encode_intervals(tmp_path: Path):
    """Three repetitions at 0.9, 1.0 and 1.1 × the J/frame: mean as before, s = 0.1 × mean, half-width
    t(0.975, 2) × s / √3. The break-even's ends take the slow encode's low end against the fast one's
    high end, and the other way round."""
    root = tmp_path / "results"
    write_rows(root, repetitions=3)
    (one,) = recommend(root, Target(vmaf=80, views=1)).answers
    delivery = one.runners_up[0].delivery
    assert delivery is not None and delivery.breakeven_views_ci is not None
    half = 4.302652729911275 * 0.1 / 3 ** 0.5
    low = (0.6 * (1 - half) - 0.1 * (1 + half)) / 0.108
    high = (0.6 * (1 + half) - 0.1 * (1 - half)) / 0.108
    assert delivery.breakeven_views_ci == (pytest.approx(low), pytest.approx(high))


def test_the_command_prints_break_even_views_and_json_carries_them(tmp_path: Path):
    root = tmp_path / "results"
    write_rows(root)
    env = {"FFWATT_RESULTS_DIR": str(root)}
    done = ffwatt("recommend", "--vmaf", "80", "--views", "1", "-o", "json", env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    runner = data["recommendation"]["answers"][0]["runners_up"][0]["delivery"]
    assert runner["breakeven_views"] == pytest.approx(BREAKEVEN) and runner["better_with"] == "more views"
    assert [end["wh_per_gb"] for end in data["range_ends"]] == [7.0, 140.0]
    table = ffwatt("recommend", "--vmaf", "80", "--views", "1000000000", env=env)
    assert table.returncode == 0, table.stderr
    assert "better below 5 views" in table.stdout and "140" in table.stdout
    wrong = ffwatt("recommend", "--vmaf", "80", "--views", "10", "--minimize", "time", env=env)
    assert wrong.returncode == 2 and "use it with --minimize energy" in wrong.stderr
    alone = ffwatt("recommend", "--vmaf", "80", "--delivery-wh-per-gb", "10", env=env)
    assert alone.returncode == 2 and "give --views too" in alone.stderr
