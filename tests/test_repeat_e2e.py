"""Adaptive repetitions through the real flow: two x264 presets on a short 360p clip, repeated in
shuffled rounds until each settles (or reaches the maximum), judged here by hand."""

from __future__ import annotations

import os
import statistics
import subprocess

import pytest
import yaml

from ffwatt.results import read_results, read_run_summary
from tests.conftest import ffwatt_cli

pytestmark = pytest.mark.e2e

# Student's t, two-sided 95 %, from a printed table, by degrees of freedom.
T_95 = {2: 4.303, 3: 3.182, 4: 2.776}
CI_PCT = 5.0


def _within(values: list[float]) -> bool:
    half = T_95[len(values) - 1] * statistics.stdev(values) / len(values) ** 0.5
    return half / abs(statistics.mean(values)) * 100 <= CI_PCT


@pytest.fixture(scope="module")
def adaptive_run(prefect_server: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("adaptive")
    spec = {"name": "adaptive",
            "inputs": [{"name": "clip", "source": "testsrc2", "size": "640x360", "fps": 24, "duration_s": 1}],
            "matrix": {"encoders": [{"name": "libx264", "presets": ["veryfast", "slow"]}],
                       "rate_control": [{"mode": "crf", "values": [23]}]},
            "repetitions": {"min": 3, "max": 5, "ci_pct": CI_PCT},
            "quality": [], "idle_baseline_s": 1}
    file = work / "adaptive.yaml"
    file.write_text(yaml.safe_dump(spec))
    env = {**os.environ, **prefect_server, "FFWATT_HOME": str(work / "home"),
           "FFWATT_RESULTS_DIR": str(work / "results"), "COLUMNS": "200"}
    done = subprocess.run([ffwatt_cli(), "campaign", "run", str(file)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return read_results(work / "results", campaign="adaptive"), done.stdout, env, work


def test_each_configuration_ran_interleaved_until_settled_or_at_max(adaptive_run):
    frame, stdout, _, _ = adaptive_run
    assert (frame.status == "ok").all() and frame.job_id.is_unique
    runs = frame.sort_values("started_at")
    # Interleaved rounds: repetition r of every configuration still running before any repetition r + 1.
    assert runs.repetition.is_monotonic_increasing
    for config_id, group in runs.groupby("config_id"):
        rows = group.sort_values("repetition")
        assert list(rows.repetition) == list(range(1, len(rows) + 1)) and 3 <= len(rows) <= 5
        jpf, wall = list(rows.joules_per_frame), list(rows.wall_s)
        settled = _within(jpf) and _within(wall)
        assert settled or len(rows) == 5, (config_id, jpf, wall)
        if len(rows) > 3:  # it went on because it hadn't settled one repetition earlier
            assert not (_within(jpf[:-1]) and _within(wall[:-1])), (config_id, jpf, wall)
    assert set(frame.preset) == {"veryfast", "slow"}
    # The conditions each ran in: jobs (not controls), the wait to settle bounded, the load split by owner.
    assert (frame.kind == "job").all() and frame.settle_s.between(0, 30).all()
    assert frame.background_busy.between(0, 1).all() and (frame.observer_cpu_s >= 0).all()
    assert frame.cpu_freq_mhz_mean.isna().all() or (frame.cpu_freq_mhz_mean > 0).all()
    assert "repetitions per configuration" in stdout and ("settled" in stdout or "at max" in stdout)


def test_the_run_records_its_rule_and_shuffle_seed_and_show_says_how_each_ended(adaptive_run):
    frame, _, env, work = adaptive_run
    summary = read_run_summary(work / "results", "adaptive", frame.run_id.iloc[0])
    assert summary is not None and summary.state == "complete" and summary.shuffle_seed is not None
    assert summary.repetitions is not None and (summary.repetitions.min, summary.repetitions.max) == (3, 5)
    assert summary.ok == len(frame) == summary.jobs
    shown = subprocess.run([ffwatt_cli(), "results", "show", "--campaign", "adaptive"], env=env,
                           capture_output=True, text=True, timeout=120, check=True)
    for preset in ("veryfast", "slow"):
        (line,) = [line for line in shown.stdout.splitlines() if f"libx264 {preset} crf 23" in line
                   and ("settled" in line or "at max" in line)]
        n = int((frame.preset == preset).sum())
        assert f" {n} " in line
    assert "3 to 5, settled within 5 %" in " ".join(shown.stdout.split())  # the title may wrap
    assert "control encode (control libx264 veryfast crf 23 640x360) from the run's start to its end" in \
        " ".join(shown.stdout.split())


def test_the_control_encode_ran_at_the_start_and_end_and_judged_the_drift(adaptive_run):
    frame, _, _, work = adaptive_run
    every = read_results(work / "results", campaign="adaptive", controls=True).sort_values("started_at")
    controls = every[every.kind == "control"]
    assert list(controls.job_id) == ["control-start", "control-end"] and (controls.status == "ok").all()
    assert every.job_id.iloc[0] == "control-start" and every.job_id.iloc[-1] == "control-end"
    summary = read_run_summary(work / "results", "adaptive", frame.run_id.iloc[0])
    assert summary is not None and summary.control is not None
    start, end = controls.joules_per_frame
    assert summary.control.drift_pct["joules_per_frame"] == pytest.approx((end - start) / start * 100)
    assert summary.control.unstable == any(abs(p) > 10 for p in summary.control.drift_pct.values())
