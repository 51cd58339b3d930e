from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from ffwatt.errors import ResultsError
from ffwatt.files import write_atomic
from ffwatt.results import (
    RunSummary,
    list_runs,
    read_results,
    read_rows,
    resolve_run,
    write_job_row,
    write_run_summary,
)
from ffwatt.schema import JobRow


def row(job_id: str, run_id: str = "r1", **extra) -> JobRow:
    values = dict(campaign="c", run_id=run_id, job_id=job_id, config_id="cfg", repetition=1, node="n",
                  input_name="a", encoder="libx264", rate_control="crf", crf=23, status="ok", attempts=1,
                  started_at=datetime.now(UTC), frames=10, wall_s=1.5)
    return JobRow(**(values | extra))


def test_rows_round_trip_through_parquet(tmp_path: Path):
    write_job_row(tmp_path, row("a"))
    write_job_row(tmp_path, row("b", status="failed", error="boom", frames=None))
    frame = read_results(tmp_path, campaign="c", run_id="r1")
    assert list(frame["job_id"]) == ["a", "b"]
    assert frame.loc[1, "error"] == "boom" and pd.isna(frame.loc[1, "frames"])
    assert frame.loc[0, "frames"] == 10 and frame.loc[0, "campaign"] == "c"


def test_rows_of_schema_6_read_back_in_todays_terms(tmp_path: Path):
    """A file written before schema 7 has none of its quality and format columns: they read as null,
    but pix_fmt as yuv420p, what those jobs encoded, so they pool with today's 8-bit rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ffwatt.schema import arrow_schema

    added = {"pix_fmt", "psnr_min", "psnr_p1", "psnr_p5", "ssim_min", "ssim_p1", "ssim_p5", "vmaf_hmean", "vmaf_min",
             "vmaf_p1", "vmaf_p5", "vmaf_neg", "vmaf_phone", "quality_scaler", "quality_pix_fmt", "quality_frames"}
    old = pa.schema([f for f in arrow_schema() if f.name not in added | {"campaign", "run_id"}],
                    metadata={"ffwatt_schema_version": "6"})
    record = row("old", vmaf=91.5).model_dump()
    directory = tmp_path / "campaign=c" / "run_id=r1"
    directory.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{k: record[k] for k in old.names}], schema=old), directory / "job-old.parquet")
    write_job_row(tmp_path, row("new", vmaf=90.0, vmaf_p5=80.0, pix_fmt="yuv420p"))
    frame = read_results(tmp_path).set_index("job_id")
    assert frame.loc["old", "vmaf"] == 91.5 and pd.isna(frame.loc["old", "vmaf_p5"])
    assert pd.isna(frame.loc["old", "quality_frames"]) and frame.loc["new", "vmaf_p5"] == 80.0
    assert list(frame["pix_fmt"]) == ["yuv420p", "yuv420p"]
    (old_row,) = [r for r in read_rows(tmp_path, "c", "r1") if r.job_id == "old"]
    assert old_row.pix_fmt == "yuv420p" and old_row.vmaf_model is None


def test_writing_a_job_again_in_the_same_run_replaces_its_row(tmp_path: Path):
    write_job_row(tmp_path, row("a", status="failed", error="first attempt", attempts=1))
    write_job_row(tmp_path, row("a", attempts=2))
    frame = read_results(tmp_path)
    assert len(frame) == 1 and frame.loc[0, "attempts"] == 2 and frame.loc[0, "status"] == "ok"
    write_job_row(tmp_path, row("a", run_id="r2"))
    assert len(read_results(tmp_path)) == 2 and len(read_results(tmp_path, run_id="r2")) == 1


def test_plain_pandas_reads_the_dataset(tmp_path: Path):
    write_job_row(tmp_path, row("a"))
    write_job_row(tmp_path, row("b", run_id="r2"))
    frame = pd.read_parquet(tmp_path)
    assert sorted(frame["job_id"]) == ["a", "b"] and set(frame["run_id"].astype(str)) == {"r1", "r2"}


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path):
    target = tmp_path / "x" / "file.parquet"

    def explode(tmp: Path) -> None:
        tmp.write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, explode)
    assert list(target.parent.iterdir()) == []


def test_runs_are_listed_and_a_missing_dataset_says_what_to_do(tmp_path: Path):
    write_job_row(tmp_path, row("a"))
    assert [(r.campaign, r.run_id, r.state) for r in list_runs(tmp_path)] == [("c", "r1", "unknown (no _run.json)")]
    with pytest.raises(ResultsError, match="run a campaign first"):
        read_results(tmp_path / "nothing")
    with pytest.raises(ResultsError, match="`ffwatt results runs` lists the runs there"):
        resolve_run(tmp_path, "no-such-run")


def summary(state: str, pid: int, **extra) -> RunSummary:
    return RunSummary(campaign="c", run_id="r1", state=state, host=socket.gethostname(), pid=pid,
                      started_at=datetime.now(UTC), jobs=3, **extra)


def test_a_run_still_marked_running_whose_process_is_gone_is_crashed(tmp_path: Path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_run_summary(tmp_path, summary("running", gone.pid))
    (run,) = list_runs(tmp_path)
    assert run.summary is not None and run.summary.state == "running" and run.state == "crashed"
    write_run_summary(tmp_path, summary("running", os.getpid()))
    assert list_runs(tmp_path)[0].state == "running"  # this process: alive
    write_run_summary(tmp_path, summary("interrupted", gone.pid, ok=1, failed=1))
    assert list_runs(tmp_path)[0].state == "interrupted" and list_runs(tmp_path)[0].summary.missing == 1


def test_files_that_arent_job_files_are_ignored_with_one_warning(tmp_path: Path, caplog):
    write_job_row(tmp_path, row("a"))
    (tmp_path / "README.txt").write_text("notes")
    run = tmp_path / "campaign=c" / "run_id=r1"
    (run / "notes.txt").write_text("mine")
    (run / "plot.png").write_bytes(b"not parquet")
    with caplog.at_level(logging.WARNING, logger="ffwatt.results"):
        frame = read_results(tmp_path)
    assert list(frame.job_id) == ["a"]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "ignored 2 file(s) that aren't job files" in warning and "notes.txt" in warning


def test_result_files_honour_the_umask(tmp_path: Path):
    previous = os.umask(0o022)
    try:
        path = write_job_row(tmp_path, row("a"))
        write_run_summary(tmp_path, summary("complete", os.getpid()))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((path.parent / "_run.json").stat().st_mode) == 0o644
