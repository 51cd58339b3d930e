"""``recommend`` on generated runs whose answers are known by construction.

Each ladder's repetitions are ``m − d, m, m + d``: mean ``m``, standard deviation ``d``, and a
95 % lower bound of ``m − t(0.975, 2)·d/√3``. Means are chosen so that the lower bounds lie on
straight lines (VMAF) and exponentials (J/frame, bitrate) in the CRF, where PCHIP is exact: the
interpolated settings and their figures follow from arithmetic, not from the code under test.
"""

from __future__ import annotations

import math
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analysis.recommend import Scope, Target, recommend
from ffwatt.errors import ResultsError
from ffwatt.hardware.ffmpeg import RUNNER_ARGS
from ffwatt.results import write_job_row
from ffwatt.schema import JobRow

T_HALF = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 dof) / √3: CI half-width per unit std, 3 reps
CRFS = (20, 26, 32, 38)


def vmaf_bound(encoder: str, crf: int) -> float:
    return {"libx264": 110.0 - 0.6 * crf, "libx265": 111.5 - 0.6 * crf}[encoder]


def jpf(encoder: str, crf: int) -> float:
    return {"libx264": 0.1, "libx265": 0.3}[encoder] * math.exp(-0.05 * crf)


def fps(encoder: str, crf: int) -> float:
    return {"libx264": 100.0, "libx265": 40.0}[encoder] + crf


def kbps(encoder: str, crf: int) -> float:
    return {"libx264": 4000.0, "libx265": 2800.0}[encoder] * 2 ** (-(crf - 20) / 6)


def command(encoder: str, preset: str, crf: int) -> str:
    return shlex.join(["/opt/ffmpeg/bin/ffmpeg", *RUNNER_ARGS, "-threads", "2", "-i", "/cache/ref clip.mkv",
                       "-map", "0:v:0", "-c:v", encoder, "-preset", preset, "-crf", str(crf), "-threads", "2",
                       "-x264-params", "aq-mode=2", "-an", "-f", "matroska", f"/out/{encoder}-{crf}.mkv"])


def write_ladders(root: Path, *, run_id: str = "run-1", repetitions: int = 3, node: str = "node-a",
                  spread: float = 0.5, input_name: str = "clip", p5_below: dict[str, float] | None = None) -> None:
    """libx264 veryfast (measured energy) and libx265 medium (estimated) CRF ladders; ``p5_below``: each
    encoder's 5th-percentile VMAF that far below its mean (none recorded without it)."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for encoder, preset in (("libx264", "veryfast"), ("libx265", "medium")):
        for crf in CRFS:
            for rep in range(1, repetitions + 1):
                offset = (rep - 2) if repetitions == 3 else 0  # -1, 0, +1
                half = T_HALF * spread if repetitions == 3 else 0.0
                frames = 100
                energy = jpf(encoder, crf) * frames * (1 + 0.01 * offset)
                write_job_row(root, JobRow(
                    campaign="decide", run_id=run_id, job_id=f"{encoder}-{crf}-{rep}-{node}",
                    config_id=f"{encoder}-{crf}", repetition=rep, node=node, input_name=input_name,
                    input_fps=70.0, input_frames=frames, encoder=encoder, preset=preset, rate_control="crf",
                    crf=crf, input_width=1280, input_height=720, output_width=1280, output_height=720,
                    status="ok", attempts=1, threads=2, extra_args="-x264-params aq-mode=2",
                    started_at=start + timedelta(minutes=len(CRFS) * rep + crf), wall_s=frames / fps(encoder, crf),
                    frames=frames, encode_fps=fps(encoder, crf), bitrate_kbps=kbps(encoder, crf),
                    vmaf=vmaf_bound(encoder, crf) + half + spread * offset, energy_j=energy,
                    vmaf_p5=vmaf_bound(encoder, crf) + half + spread * offset - p5_below[encoder]
                    if p5_below else None,
                    joules_per_frame=energy / frames,
                    energy_source="estimated" if encoder == "libx265" else "rapl",
                    ffmpeg_cmd=command(encoder, preset, crf)))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_ladders(root)
    return root


def test_cheapest_configuration_whose_lower_bound_meets_the_target(results: Path) -> None:
    (answer,) = recommend(results, Target(vmaf=93)).answers
    best = answer.recommendation
    assert best is not None
    # Bounds: x264 crf 20 → 98, 26 → 94.4, 32 → 90.8; x265 crf 26 → 95.9, 32 → 92.3. x264 crf 26 is cheapest.
    assert (best.config, best.node, best.repetitions) == ("libx264 veryfast crf 26 1280x720", "node-a", 3)
    assert best.vmaf_bound == pytest.approx(94.4)
    assert best.value == pytest.approx(jpf("libx264", 26), rel=1e-3) and not best.energy_estimated
    runners = [(c.config, c.costs_more_pct, c.energy_estimated) for c in answer.runners_up]
    assert [r[0] for r in runners] == ["libx264 veryfast crf 20 1280x720", "libx265 medium crf 26 1280x720",
                                       "libx265 medium crf 20 1280x720"]
    assert runners[0][1] == pytest.approx((math.exp(0.05 * 6) - 1) * 100, rel=1e-3)
    assert runners[1][1] == pytest.approx(200.0, rel=1e-3) and runners[1][2]  # estimated energy stays marked
    assert all(c.significantly_more for c in answer.runners_up)


def test_mean_above_but_lower_bound_below_does_not_meet(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_ladders(root, spread=2.0)  # x264 crf 26: bound 94.4, mean 94.4 + 4.97
    answer = recommend(root, Target(vmaf=95.5)).answers[0]
    assert answer.recommendation is not None
    assert answer.recommendation.config != "libx264 veryfast crf 26 1280x720"
    assert answer.recommendation.vmaf_bound is not None and answer.recommendation.vmaf_bound >= 95.5


def test_a_percentile_target_holds_for_the_worst_frames(tmp_path: Path) -> None:
    """libx264's worst frames fall 6 below its mean, libx265's 1: judged on the 5th percentile, x264's
    bounds are 98 − 6 = 92 at best, none meets 93, and x265 crf 26 (95.9 − 1 = 94.9) is the cheapest."""
    root = tmp_path / "results"
    write_ladders(root, p5_below={"libx264": 6.0, "libx265": 1.0})
    mean = recommend(root, Target(vmaf=93)).answers[0].recommendation
    assert mean is not None and mean.config == "libx264 veryfast crf 26 1280x720"
    answer = recommend(root, Target(vmaf=93, vmaf_percentile=5))
    best = answer.answers[0].recommendation
    assert best is not None and best.config == "libx265 medium crf 26 1280x720"
    assert best.vmaf_bound == pytest.approx(94.9) and best.vmaf_judged == pytest.approx(94.9 + 0.5 * T_HALF)
    assert best.vmaf == pytest.approx(95.9 + 0.5 * T_HALF)
    assert all(c.encoder == "libx265" for c in answer.answers[0].runners_up)
    text = answer.markdown()
    assert "VMAF p5 ≥ 93 (the 5th percentile of the frames)" in text and "mean VMAF" in text


def test_a_percentile_target_needs_rows_that_kept_it(results: Path) -> None:
    with pytest.raises(ResultsError, match="no vmaf_p5 in these runs"):
        recommend(results, Target(vmaf=93, vmaf_percentile=5))


def test_interpolates_between_the_bracketing_rungs_and_says_so(results: Path) -> None:
    answer = recommend(results, Target(vmaf=93)).answers[0]
    # x264: bound 110 − 0.6·crf = 93 at crf 28.33; crf 28 (bound 93.2) is the setting that still meets it.
    # x265's in-between setting (crf 30) costs more than the recommendation: not worth proposing.
    (x264,) = answer.interpolated
    assert (x264.rate_value, x264.interpolated, x264.between, x264.repetitions) == (28, True, ("crf 26", "crf 32"), 0)
    assert x264.vmaf_bound == pytest.approx(93.2)
    assert x264.value == pytest.approx(jpf("libx264", 28), rel=1e-3)
    assert x264.costs_more_pct == pytest.approx((math.exp(-0.1) - 1) * 100, rel=1e-2)
    assert x264.bitrate_kbps == pytest.approx(kbps("libx264", 28), rel=1e-3)
    # The command is the measured one, rate changed, measurement flags and paths replaced.
    assert x264.command == ("ffmpeg -threads 2 -i INPUT -map 0:v:0 -c:v libx264 -preset veryfast -crf 28 "
                            "-threads 2 -x264-params aq-mode=2 -an -f matroska OUTPUT.mkv")
    assert answer.recommendation is not None
    assert answer.recommendation.command == x264.command.replace("-crf 28", "-crf 26")
    text = recommend(results, Target(vmaf=93)).markdown()
    assert "**not measured**" in text and "between crf 26 and crf 32" in text
    assert f"{jpf('libx265', 26):.3g}*" in text  # a runner-up's estimated energy, marked
    # Least bits: x265 (0.7× the bits) wins at crf 26; 111.5 − 0.6·crf = 93 at 30.83, so crf 30 (93.5).
    (x265,) = recommend(results, Target(vmaf=93, minimize="bitrate")).answers[0].interpolated
    assert (x265.config, x265.energy_estimated) == ("libx265 medium crf 30 1280x720", True)
    assert x265.value == pytest.approx(kbps("libx265", 30), rel=1e-3)
    assert x265.joules_per_frame == pytest.approx(jpf("libx265", 30), rel=1e-3)


def test_never_beyond_the_measured_range_and_the_nearest_misses(results: Path) -> None:
    # Every rung of both ladders meets VMAF 86: nothing to interpolate, nothing past crf 38 proposed.
    assert recommend(results, Target(vmaf=86)).answers[0].interpolated == []
    # Above the best bound (x265 crf 20: 99.5): nothing meets, nothing is extrapolated.
    answer = recommend(results, Target(vmaf=100)).answers[0]
    assert answer.recommendation is None and answer.interpolated == []
    nearest = answer.nearest[0]
    assert (nearest.config, nearest.shortfalls) == (
        "libx265 medium crf 20 1280x720", ["VMAF 99.50 (lower bound) is 0.50 below 100"])
    assert "Nothing meets the target" in recommend(results, Target(vmaf=100)).markdown()


def test_speed_requirements_say_which_constraint_failed_and_by_how_much(results: Path) -> None:
    # x264 fps = 100 + crf, x265 40 + crf (no spread); real time here is the input's 70 fps, which
    # the x265 rungs meeting VMAF 93 (crf 20: 60 fps, crf 26: 66 fps) miss.
    realtime = recommend(results, Target(vmaf=93, realtime=True)).answers[0]
    assert realtime.recommendation is not None and realtime.recommendation.config == "libx264 veryfast crf 26 1280x720"
    assert [c.config for c in realtime.runners_up] == ["libx264 veryfast crf 20 1280x720"]
    answer = recommend(results, Target(vmaf=96, min_fps=125), nearest=8).answers[0]
    assert answer.recommendation is None
    by_config = {m.config: m.shortfalls for m in answer.nearest}
    assert answer.nearest[0].config == "libx264 veryfast crf 26 1280x720"  # 1.7 % short on VMAF: nearest
    assert by_config["libx264 veryfast crf 26 1280x720"] == ["VMAF 94.40 (lower bound) is 1.60 below 96"]
    assert by_config["libx264 veryfast crf 20 1280x720"] == [
        "120.0 fps (lower bound) is 5.0 (4%) below the 125 fps required"]
    assert by_config["libx265 medium crf 20 1280x720"] == [
        "60.0 fps (lower bound) is 65.0 (52%) below the 125 fps required"]
    assert by_config["libx265 medium crf 26 1280x720"] == [
        "VMAF 95.90 (lower bound) is 0.10 below 96", "66.0 fps (lower bound) is 59.0 (47%) below the 125 fps required"]


def test_other_objectives_rank_differently(results: Path) -> None:
    least_bits = recommend(results, Target(vmaf=93, minimize="bitrate")).answers[0].recommendation
    assert least_bits is not None and least_bits.config == "libx265 medium crf 26 1280x720"
    fastest = recommend(results, Target(vmaf=93, minimize="time")).answers[0].recommendation
    assert fastest is not None and fastest.config == "libx264 veryfast crf 26 1280x720"
    with pytest.raises(ResultsError, match="FFWATT_PRICE_PER_KWH"):
        recommend(results, Target(vmaf=93, minimize="cost"))


def test_single_repetition_is_judged_on_its_value_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_ladders(root, repetitions=1)
    answer = recommend(root, Target(vmaf=93)).answers[0]
    assert answer.recommendation is not None and answer.recommendation.repetitions == 1
    assert answer.recommendation.config == "libx264 veryfast crf 26 1280x720"
    assert all(c.significantly_more is None for c in answer.runners_up)
    assert any("single repetition" in note for note in answer.notes)


def test_scope_filters_and_their_errors(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_ladders(root, run_id="run-a", node="node-a")
    write_ladders(root, run_id="run-b", node="node-b", input_name="other")
    everything = recommend(root, Target(vmaf=93), Scope(runs=["run-a", "run-b"]))
    assert [a.input_name for a in everything.answers] == ["clip", "other"]
    only_b = recommend(root, Target(vmaf=93), Scope(runs=["run-a", "run-b"], node="node-b"))
    assert [a.input_name for a in only_b.answers] == ["other"]
    with pytest.raises(ResultsError, match=r"--pool nvidia: .* they have pools cpu"):
        recommend(root, Target(vmaf=93), Scope(runs=["run-a"], pool="nvidia"))
    with pytest.raises(ResultsError, match=r"--input nope: .* they have clip"):
        recommend(root, Target(vmaf=93), Scope(runs=["run-a"], input_name="nope"))
    with pytest.raises(ResultsError, match="no run 'missing'"):
        recommend(root, Target(vmaf=93), Scope(runs=["missing"]))


def test_the_recommendation_names_its_margin_over_the_runner_up_and_how_sure(results: Path) -> None:
    recommendation = recommend(results, Target(vmaf=93))
    (answer,) = recommendation.answers
    margin = answer.margin
    assert margin is not None and margin.different
    # x264 crf 20 against crf 26: 0.1 e^(-0.05 x 20) / 0.1 e^(-0.05 x 26) = e^0.3 -> 34.99 % more J/frame.
    assert margin.runner_up == "libx264 veryfast crf 20 1280x720" and margin.repetitions == (3, 3)
    assert margin.more_pct == pytest.approx((math.exp(0.3) - 1) * 100, rel=1e-3)
    # Each side's spread is 1 % of its mean: the interval of the difference hugs 35 % and p is tiny.
    assert margin.interval_pct is not None and 30 < margin.interval_pct[0] < 34.99 < margin.interval_pct[1] < 40
    assert margin.p_value is not None and margin.p_value < 0.001
    assert "Ahead of libx264 veryfast crf 20 1280x720 by 35.0 %" in recommendation.markdown()
    # Its own interval: sd 1 % of the mean over 3 repetitions -> t(0.975, 2) x 1 % / sqrt(3) = 2.48 % of it.
    assert answer.recommendation is not None and answer.recommendation.value_ci_pct == pytest.approx(T_HALF, rel=1e-3)
    assert "± 2.5 %" in recommendation.markdown()


def test_it_cant_tell_only_where_the_intervals_overlap(tmp_path: Path) -> None:
    root = tmp_path / "results"
    # Two presets 2 % apart in J/frame, each repetition spread by 10 %: Welch can't separate them.
    for preset, scale in (("veryfast", 1.0), ("fast", 1.02)):
        for rep, jpf_value in enumerate((0.9 * scale, 1.0 * scale, 1.1 * scale), 1):
            write_job_row(root, JobRow(
                campaign="close", run_id="run-1", job_id=f"{preset}-{rep}", config_id=preset, repetition=rep,
                node="n", input_name="clip", input_fps=30.0, encoder="libx264", preset=preset, rate_control="crf",
                crf=23, status="ok", attempts=1, wall_s=1.0, frames=100, encode_fps=100.0, bitrate_kbps=1000.0,
                vmaf=95.0, energy_j=jpf_value * 100, joules_per_frame=jpf_value, energy_source="rapl"))
    recommendation = recommend(root, Target(vmaf=80))
    (answer,) = recommendation.answers
    assert answer.recommendation is not None and answer.recommendation.config == "libx264 veryfast crf 23"
    assert answer.margin is not None and answer.margin.different is False
    assert answer.margin.more_pct == pytest.approx(2.0, rel=1e-6)
    words = " ".join(recommendation.markdown().split())
    assert "Can't tell it from libx264 fast crf 23: +2.0 %, but their intervals overlap" in words
    assert "after 3 and 3 repetitions" in words
