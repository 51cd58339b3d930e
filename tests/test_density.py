"""VOD density and exact sweep limits: the campaign's density section, its steps and ids, the saturation
rule and bisection worked by hand, the node's course through a sweep (skips past the break, bisection
steps after it), a real step of two copies at once, a sweep's figures and knee from made-up rows, and
``ffwatt plan``'s arithmetic on them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analysis.density import density_outcomes, density_steps
from analysis.efficiency import job_efficiency
from ffwatt.errors import CampaignError, ResultsError
from ffwatt.jobs import expand, grew, next_bisection, sweep_groups, sweep_step
from ffwatt.results import read_results, write_job_row
from ffwatt.schema import JobRow, config_label
from ffwatt.settings import load_settings
from ffwatt.validation import parse_campaign
from flows.sweep import course, note_step, skip_reason
from tests.conftest import ffwatt


def density_campaign(**density: object) -> dict:
    return {"name": "density", "inputs": [{"name": "clip", "source": "testsrc2", "size": "320x240", "fps": 30,
                                           "duration_s": 1}],
            "matrix": {"encoders": [{"name": "libx264", "presets": ["ultrafast"]}],
                       "rate_control": [{"mode": "crf", "values": [30]}]},
            "density": {"concurrency": [1, 2, 4], **density}, "quality": [], "idle_baseline_s": 0}


# --- the rules, by hand ----------------------------------------------------------------------------

def test_a_step_grew_when_at_least_the_gain_above_the_last_step_that_grew():
    # 100 -> 150 (+50 %: grew) -> 155 (+3.3 % on 150: didn't) -> 160 (+6.7 % on 150, the last that grew: grew)
    assert grew({1: 100.0, 2: 150.0, 4: 155.0, 8: 160.0}, 0.05) == {1: True, 2: True, 4: False, 8: True}
    # A failed step (no figure) didn't grow; the next is judged against the last that did.
    assert grew({1: 100.0, 2: None, 3: 104.0, 4: 106.0}, 0.05) == {1: True, 2: False, 3: False, 4: True}


@pytest.mark.parametrize(("held", "expected"), [
    ({1: True, 2: True, 4: False}, 3),            # bench.live's case: held 2, broke at 4, 3 never tried
    ({1: True, 2: True, 3: False, 4: False}, None),  # 2 held, 3 broke: neighbours, the limit is 2
    ({1: True, 2: True, 4: True, 8: False}, 6),
    ({1: True, 2: True, 4: True, 6: True, 8: False}, 7),
    ({1: True, 2: True, 4: True, 6: False, 8: False}, 5),
    ({2: False, 4: False}, 1),                    # nothing held: 0 streams always hold, so 1 is next
    ({1: False}, None),
    ({1: True, 2: True}, None),                   # nothing broke
])
def test_bisection_halves_the_gap_between_the_last_that_held_and_the_first_that_broke(held, expected):
    assert next_bisection(held) == expected


def test_density_steps_double_until_the_cap_with_one_sweep_and_stable_ids():
    campaign = parse_campaign(density_campaign(until_saturated=True, max_concurrency=16, concurrency=[1, 2, 4]))
    jobs = expand(campaign)
    assert [(j.density.concurrency, j.sweep_phase) for j in jobs if j.density] == [
        (1, "listed"), (2, "listed"), (4, "listed"), (8, "doubling"), (16, "doubling")]
    assert len({j.density.sweep_id for j in jobs if j.density}) == 1 and len({j.config_id for j in jobs}) == 5
    assert [len(group) for group in sweep_groups(jobs)] == [5]
    assert expand(campaign)[2].job_id == jobs[2].job_id
    # A step reached by bisection has the id it would have had listed.
    three = sweep_step(campaign, jobs[2], 3)
    listed = expand(parse_campaign(density_campaign(concurrency=[1, 2, 3, 4])))
    assert three.job_id == next(j.job_id for j in listed if j.density and j.density.concurrency == 3)
    assert (three.sweep_phase, three.density.concurrency) == ("bisection", 3)  # type: ignore[union-attr]
    assert "x3" in three.label


@pytest.mark.parametrize(("changes", "message"), [
    ({"live": {"ladder": [{"size": "640x360", "bitrate_kbps": 800}]}}, "a campaign is live or density, not both"),
    ({"density": {"concurrency": [8], "max_concurrency": 4}}, "max_concurrency (4) is below the largest step"),
    ({"density": {"concurrency": [0]}}, "density.concurrency[0]: Input should be greater than or equal to 1 (got 0)"),
])
def test_a_density_section_that_can_t_run_says_what_to_change(changes: dict, message: str):
    spec = density_campaign()
    spec.update(changes)
    if "live" in changes:
        spec["matrix"] = {"encoders": ["libx264"]}
        spec["inputs"][0]["duration_s"] = 5
    with pytest.raises(CampaignError) as caught:
        parse_campaign(spec)
    assert message in str(caught.value)


# --- the node's course through a sweep -----------------------------------------------------------

def test_the_course_skips_past_the_break_then_bisects(ffwatt_env: Path):
    """Made-up throughputs stand in for encodes: 1 -> 100 fps, 2 -> 180, 4 -> 250, 8 -> 255 (saturated:
    +2 %), so 16 is skipped; bisection then measures 6 (+4 % on 250: no) and 5 (262.5 needed; 270: grew)."""
    settings = load_settings()
    campaign = parse_campaign(density_campaign(until_saturated=True, max_concurrency=16))
    fps = {1: 100.0, 2: 180.0, 4: 250.0, 8: 255.0, 6: 260.0, 5: 270.0}
    ran, skipped = [], []
    for job in course(campaign, expand(campaign), "run-1", settings):
        n = job.density.concurrency  # type: ignore[union-attr]
        why = skip_reason(settings, "run-1", job)
        if why is not None:
            skipped.append((n, why))
            continue
        ran.append((n, job.sweep_phase))
        note_step(settings, "run-1", job, fps=fps[n])
    assert ran == [(1, "listed"), (2, "listed"), (4, "listed"), (8, "doubling"), (6, "bisection"),
                   (5, "bisection")]
    assert skipped == [(16, "skipped: the node saturated at 8 copies (255.0 fps aggregate, +2.0 % on 250.0 fps "
                            "at 4; 5% needed)")]


def test_a_live_sweep_bisects_between_the_streams_that_held_and_those_that_broke(ffwatt_env: Path):
    settings = load_settings()
    campaign = parse_campaign({"name": "live", "inputs": [{"name": "clip", "source": "testsrc2", "duration_s": 5}],
                               "matrix": {"encoders": ["libx264"]},
                               "live": {"ladder": [{"size": "640x360", "bitrate_kbps": 800}], "streams": [1, 2, 4]}})
    held = {1: True, 2: True, 4: False, 3: True}
    ran = []
    for job in course(campaign, expand(campaign), "run-1", settings):
        n = job.live.streams  # type: ignore[union-attr]
        ran.append(n)
        note_step(settings, "run-1", job, held=held[n], why="" if held[n] else "lowest speed 0.719")
    assert ran == [1, 2, 4, 3]  # the largest real-time N is 3, not the 2 doubling alone would say
    off = parse_campaign({**campaign.model_dump(mode="json"),
                          "live": {**campaign.live.model_dump(mode="json"), "bisect": False}})  # type: ignore[union-attr]
    assert [j.live.streams for j in course(off, expand(off), "run-2", settings)] == [1, 2, 4]  # type: ignore[union-attr]


# --- a real step: two copies at once -------------------------------------------------------------

def test_two_copies_at_once_are_one_row_with_every_copy_s_frames(ffwatt_env: Path):
    """The transcode step and the row, as plain functions (no Prefect): real FFmpeg, two copies at once."""
    from tasks.energy import energy_report
    from tasks.generate import prepare_reference
    from tasks.record import build_row
    from tasks.transcode import encode

    settings = load_settings()
    campaign = parse_campaign(density_campaign(concurrency=[2]))
    (job,) = expand(campaign)
    reference = prepare_reference(campaign.inputs[0], campaign.reference_format, settings)
    encoded = encode(job, reference, "run-1", attempt=1, settings=settings)
    energy = energy_report(encoded.energy, ffmpeg_cpu_s=encoded.cpu_s, frames=encoded.frames, idle=None,
                           settings=settings)
    row = build_row(job=job, run_id="run-1", node="node-a", reference=reference, encoded=encoded, energy=energy)
    assert row.status == "ok", row.error
    # 1 s at 30 fps, twice over: 60 frames in the step's window; the size and bitrate are one copy's.
    assert (row.concurrency, row.frames, row.sweep_phase, row.density_sweep_id) == (2, 60, "listed",
                                                                                     job.density.sweep_id)  # type: ignore[union-attr]
    assert row.encode_fps == pytest.approx(60 / row.wall_s)  # type: ignore[operator]
    assert row.bitrate_kbps == pytest.approx(row.output_bytes * 8 / 1.0 / 1000)  # type: ignore[operator]
    assert row.joules_per_frame == pytest.approx(row.energy_j / 60)  # type: ignore[operator]
    assert "x2" in config_label(row)
    assert not list(settings.home.rglob("*-copy2.mkv"))  # the second copy's output is gone


# --- a sweep's figures and its knee, from made-up rows ---------------------------------------------

def _row(n: int, rep: int, fps: float, watts: float, *, phase: str = "listed", status: str = "ok") -> JobRow:
    frames = 100 * n
    wall = frames / fps
    start = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=10 * rep + n)
    ok = status == "ok"
    return JobRow(campaign="density", run_id="run-1", job_id=f"j{n}-{rep}", config_id=f"c{n}", repetition=rep,
                  node="node-a", input_name="clip", encoder="libx264", preset="veryfast", rate_control="crf", crf=23,
                  output_width=1280 if ok else None, output_height=720 if ok else None, input_fps=30.0,
                  status=status, error=None if ok else "skipped: the node saturated", attempts=1,
                  started_at=start if ok else None, wall_s=wall if ok else None, frames=frames if ok else None,
                  encode_fps=fps if ok else None, energy_j=watts * wall if ok else None,
                  energy_source="rapl" if ok else None, concurrency=n, density_sweep_id="sweep",
                  density_saturation_gain=0.05, sweep_phase=phase)


def test_the_knee_and_the_n_with_the_most_frames_per_joule(tmp_path: Path):
    """Two repetitions. Aggregate fps: N=1: 50, 54 (mean 52); N=2: 90, 94 (92); N=4: 100, 104 (102,
    +11.1 % and +10.6 % on N=2: grew); N=8: 102, 106 (+2 % on 100, +1.9 % on 104: saturated); N=6 by
    bisection in rep 1 only: 103 (+3 %: no). Watts 40, 60, 80, 84 at N = 1, 2, 4, 8 (and 82 at 6), so
    frames per joule = fps / W: 1.3, 1.533, 1.275, ~1.238: the most at N=2, the knee at N=4."""
    root = tmp_path / "results"
    for rep, shift in ((1, 0.0), (2, 4.0)):
        for n, fps, watts in ((1, 50.0, 40.0), (2, 90.0, 60.0), (4, 100.0, 80.0), (8, 102.0, 84.0)):
            write_job_row(root, _row(n, rep, fps + shift, watts))
    write_job_row(root, _row(6, 1, 103.0, 82.0, phase="bisection"))
    write_job_row(root, _row(16, 1, 1.0, 1.0, status="skipped", phase="doubling"))
    frame = read_results(root)
    steps = density_steps(frame).set_index("concurrency")
    assert steps.loc[4, "encode_fps"] == pytest.approx(102.0)
    assert steps.loc[2, "frames_per_joule"] == pytest.approx((90 / 60 + 94 / 60) / 2)
    # The interval of two repetitions: mean ± t(0.975, 1)·s/√2, s = 4/√2 · ... = 2·√2 for fps 90, 94.
    assert steps.loc[2, "encode_fps_ci_low"] == pytest.approx(92 - 12.706204736 * 2.8284271 / 1.4142136, rel=1e-6)
    assert list(steps["grew"]) == [True, True, True, False, False, False]
    assert (steps.loc[6, "phase"], steps.loc[16, "n_skipped"]) == ("bisection", 1)
    (outcome,) = density_outcomes(frame).itertuples()
    assert (outcome.knee, outcome.saturated_at, outcome.best_n) == (4, 6, 2)
    assert outcome.best_frames_per_joule == pytest.approx(92 / 60)
    assert outcome.steps == "1,2,4,6*,8"
    assert job_efficiency(frame)["energy_estimated"].sum() == 0


# --- ffwatt plan, by hand --------------------------------------------------------------------------

def test_plan_nodes_kwh_cost_and_co2_by_hand(tmp_path: Path):
    """The sweep above, planned at its most frames per joule (N=2: 92 fps, 60 W, so J/frame = 60/90 and
    60/94, mean 0.65248...). 10 h of 30 fps content a day: 1 080 000 frames; at 92 fps that is 11 739.1
    node-seconds (3.26 h): one node. Encoding: 1 080 000 × 0.652482 / 3.6e6 = 0.195745 kWh; idle at 8 W
    for the other 86 400 − 11 739.1 s: 0.165913 kWh; 0.361658 kWh in all, at 0.20 a kWh 0.0723316, at
    400 g/kWh 0.144663 kg."""
    root = tmp_path / "results"
    for rep, shift in ((1, 0.0), (2, 4.0)):
        for n, fps, watts in ((1, 50.0, 40.0), (2, 90.0, 60.0), (4, 100.0, 80.0), (8, 102.0, 84.0)):
            write_job_row(root, _row(n, rep, fps + shift, watts).model_copy(update={"idle_power_w": 8.0}))
    from analysis.plan import plan

    answer = plan(root, 10, price_per_kwh=0.2, co2_g_per_kwh=400)
    (node,) = answer.plans
    jpf = (60 / 90 + 60 / 94) / 2
    busy = 1_080_000 / 92
    encoding, idle = 1_080_000 * jpf / 3.6e6, (86_400 - busy) * 8 / 3.6e6
    assert (node.concurrency, node.nodes.value, node.why_concurrency) == (2, 1, "the most frames per joule measured")
    assert node.joules_per_frame.value == pytest.approx(jpf)
    assert node.encoding_kwh_per_day.value == pytest.approx(encoding)
    assert node.idle_kwh_per_day.value == pytest.approx(idle)
    assert node.kwh_per_day.value == pytest.approx(0.361658, rel=1e-5)
    assert node.cost_per_day is not None and node.cost_per_day.value == pytest.approx(0.0723316, rel=1e-5)
    assert node.co2_kg_per_day is not None and node.co2_kg_per_day.value == pytest.approx(0.144663, rel=1e-5)
    # The interval's low end rests on the high end of fps and the low end of J/frame.
    assert node.kwh_per_day.low is not None and node.kwh_per_day.high is not None
    assert node.kwh_per_day.low < node.kwh_per_day.value < node.kwh_per_day.high
    # 1000 h a day at 4 copies (102 fps): 108 000 000 frames, 1 058 823.5 node-seconds: 13 nodes (12.25).
    many = plan(root, 1000, concurrency=4).plans[0]
    assert (many.nodes.value, many.cost_per_day) == (13, None)
    with pytest.raises(ResultsError, match=r"--concurrency 3: .* was measured at 1, 2, 4, 8 copies at once"):
        plan(root, 10, concurrency=3)


def test_the_plan_command_says_what_it_rests_on_and_refuses_a_run_without_density(tmp_path: Path):
    root = tmp_path / "results"
    for n, fps, watts in ((1, 50.0, 40.0), (2, 90.0, 60.0)):
        write_job_row(root, _row(n, 1, fps, watts))
    env = {"FFWATT_RESULTS_DIR": str(root)}
    done = ffwatt("plan", "--hours", "10", env=env)
    assert done.returncode == 0, done.stderr
    assert "Measured figures the plan rests on" in done.stdout and "no interval" in done.stdout
    data = json.loads(ffwatt("plan", "--hours", "10", "-o", "json", env=env).stdout)
    assert data["plans"][0]["aggregate_fps"]["value"] == pytest.approx(90.0)
    write_job_row(root, _row(1, 1, 50.0, 40.0).model_copy(update={"run_id": "plain", "concurrency": None,
                                                                  "density_sweep_id": None}))
    refused = ffwatt("plan", "--hours", "10", "--run", "plain", env=env)
    assert refused.returncode == 2 and "has no density sweep steps" in refused.stderr
    assert ffwatt("plan", "--hours", "0", env=env).returncode == 2


def test_the_report_draws_the_sweep_and_names_the_knee_and_the_bisection_steps(tmp_path: Path):
    # The section alone: the whole report is drawn by tests/test_analysis_report.py and the e2e test.
    from analysis.report import _density_section

    root = tmp_path / "results"
    for rep, shift in ((1, 0.0), (2, 4.0)):
        for n, fps, watts in ((1, 50.0, 40.0), (2, 90.0, 60.0), (4, 100.0, 80.0), (8, 102.0, 84.0)):
            write_job_row(root, _row(n, rep, fps + shift, watts))
    write_job_row(root, _row(6, 1, 103.0, 82.0, phase="bisection"))
    section = _density_section(read_results(root))
    assert "<img alt='density'" in section and "1,2,4,6*,8" in section
    assert "bisection" in section and "knee N" in section


def test_the_run_s_outcome_names_the_n_with_the_most_frames_per_joule(tmp_path: Path):
    from analysis.outcome import run_outcome_markdown

    root = tmp_path / "results"
    for n, fps, watts in ((1, 50.0, 40.0), (2, 90.0, 60.0), (4, 100.0, 80.0)):
        write_job_row(root, _row(n, 1, fps, watts))
    write_job_row(root, _row(8, 1, 1.0, 1.0, status="skipped", phase="doubling"))
    text = run_outcome_markdown(root, "density", "run-1")
    # frames/J = fps / W: 1.25, 1.5, 1.25: the most at 2 copies.
    assert "Most frames per joule: libx264 veryfast crf 23 1280x720 on node-a: 2 copies at once." in text
    assert "3 of 4 jobs ok, 0 failed, 1 skipped" in text and "crf 23 1280x720 x4" in text
