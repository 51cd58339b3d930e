"""The outcome every campaign run publishes: jobs ok and failed with reasons, the table, the front,
the recommendation and where the files are; and the artifact keys Prefect accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from analysis.outcome import run_outcome_markdown
from analysis.synthetic import write_synthetic_run
from ffwatt.results import write_job_row
from ffwatt.schema import JobRow


def test_outcome_lists_failures_with_reasons_and_the_decisions(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_synthetic_run(root, campaign="demo", run_id="run-1", crfs=(18, 23, 28, 33), repetitions=2)
    started = datetime(2026, 1, 2, tzinfo=UTC)
    write_job_row(root, JobRow(
        campaign="demo", run_id="run-1", job_id="failed-1", config_id="cfg-failed", repetition=1, node="node-a",
        input_name="clip-720p", encoder="libx264", preset="medium", rate_control="cbr", target_bitrate_kbps=1500,
        status="failed", error="transcode: FFmpeg exited 1 | Unrecognized option 'foo'", attempts=2,
        started_at=started, ended_at=started + timedelta(seconds=1)))
    text = run_outcome_markdown(root, "demo", "run-1", target_vmaf=88)
    assert "**16 of 17 jobs ok, 1 failed**" in text
    assert "| clip-720p libx264 medium cbr 1500k | node-a | 1 | transcode: FFmpeg exited 1 \\| Unrecognized" in text
    assert "| clip-720p libx265 medium crf 18 1280x720 | node-a | 2 | 0 |" in text
    assert "0.7" in text and "*" in text  # libx265's estimated J/frame, marked
    assert "### Pareto front (J/frame min, vmaf max, fps max)" in text
    assert "### Recommendation for VMAF ≥ 88, least energy" in text and "Recommended: libx264 medium crf" in text
    assert f"- Parquet: `{(root / 'campaign=demo' / 'run_id=run-1').resolve()}`" in text
    assert "- HTML report: `ffwatt report run-1 --campaign demo` writes it" in text


def test_outcome_says_why_parts_are_missing(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_synthetic_run(root, campaign="demo", run_id="run-1", crfs=(37,), repetitions=1)
    text = run_outcome_markdown(root, "demo", "run-1")
    assert "Nothing meets the target" in text and "below 93" in text


def test_artifact_keys_are_what_prefect_accepts() -> None:
    from tasks.publish import artifact_key

    assert artifact_key("campaign", "quick") == "campaign-quick"
    assert artifact_key("regression", "My_Campaign v2") == "regression-my-campaign-v2"
