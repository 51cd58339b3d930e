"""The run's control encode: drift judged by hand, and control rows kept out of every configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.efficiency import config_efficiency
from ffwatt.campaign import Campaign
from ffwatt.results import read_results, write_job_row
from ffwatt.schema import JobRow
from ffwatt.validation import parse_campaign
from flows.control import control_jobs, judge


def _row(job_id: str, *, jpf: float | None, fps: float | None, kind: str = "job", config: str = "a") -> JobRow:
    return JobRow(campaign="c", run_id="r", job_id=job_id, config_id=config, repetition=1, node="n",
                  input_name="clip", encoder="libx264", preset="veryfast", rate_control="crf", crf=23,
                  status="ok", attempts=1, energy_source="rapl", joules_per_frame=jpf, encode_fps=fps,
                  energy_j=None if jpf is None else jpf * 60, frames=60, wall_s=None if fps is None else 60 / fps,
                  kind=kind)  # type: ignore[arg-type]


def test_drift_beyond_the_threshold_flags_the_run_with_its_figures():
    start = _row("control-start", jpf=0.050, fps=200.0, kind="control")
    end = _row("control-end", jpf=0.056, fps=190.0, kind="control")
    check = judge(start, end, 10.0)
    # J/frame (0.056 - 0.050) / 0.050 = +12 %; fps (190 - 200) / 200 = -5 %.
    assert check.drift_pct == {"joules_per_frame": pytest.approx(12.0), "encode_fps": pytest.approx(-5.0)}
    assert check.unstable and check.joules_per_frame == (0.050, 0.056) and check.encode_fps == (200.0, 190.0)
    assert "joules_per_frame +12.0 %, encode_fps -5.0 %; UNSTABLE: beyond 10 %" in check.words()
    assert not judge(start, end, 15.0).unstable
    failed = _row("control-end", jpf=None, fps=None, kind="control")
    assert judge(start, failed, 10.0).drift_pct == {} and not judge(start, failed, 10.0).unstable


def test_control_rows_are_read_only_when_asked_and_never_a_configuration(tmp_path: Path):
    write_job_row(tmp_path, _row("j1", jpf=0.1, fps=100.0))
    write_job_row(tmp_path, _row("control-start", jpf=0.05, fps=200.0, kind="control", config="ctl"))
    assert list(read_results(tmp_path, campaign="c").job_id) == ["j1"]
    both = read_results(tmp_path, campaign="c", controls=True)
    assert sorted(both.job_id) == ["control-start", "j1"]
    assert list(config_efficiency(both).config_id) == ["a"]  # even when a frame holds them


def test_the_control_encode_is_the_same_fixed_job_in_every_campaign():
    def campaign(name: str, threads: int | None) -> Campaign:
        return parse_campaign({"name": name, "inputs": [{"name": "x", "source": "smptebars"}], "threads": threads,
                               "matrix": {"encoders": ["libx265"], "rate_control": [{"mode": "crf", "values": [30]}]}})
    one, other = control_jobs(campaign("one", None)), control_jobs(campaign("two", 4))
    assert one["start"].config_id == one["end"].config_id == other["start"].config_id
    assert (one["start"].job_id, one["end"].job_id) == ("control-start", "control-end")
    assert one["start"].encoder == "libx264" and one["start"].input.name == "control" and one["start"].quality == []


def test_compare_says_when_a_run_was_flagged_unstable(tmp_path: Path):
    from datetime import UTC, datetime

    from analysis.regression import compare_runs
    from analysis.synthetic import write_synthetic_run
    from ffwatt.results import read_run_summary, write_run_summary

    write_synthetic_run(tmp_path, campaign="reg", run_id="before", repetitions=3, seed=1)
    write_synthetic_run(tmp_path, campaign="reg", run_id="after", repetitions=3, seed=2,
                        start=datetime(2026, 1, 2, tzinfo=UTC))
    assert not any("unstable" in note for note in compare_runs(tmp_path, "before", "after").notes)
    summary = read_run_summary(tmp_path, "reg", "after")
    assert summary is not None
    drifted = judge(_row("control-start", jpf=0.050, fps=200.0, kind="control"),
                    _row("control-end", jpf=0.060, fps=200.0, kind="control"), 10.0)  # +20 % J/frame
    write_run_summary(tmp_path, summary.model_copy(update={"control": drifted}))
    notes = compare_runs(tmp_path, "before", "after").notes
    assert any(note.startswith("The candidate run is flagged unstable") and "joules_per_frame +20.0 %" in note
               for note in notes), notes
