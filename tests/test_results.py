from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from ffwatt.errors import ResultsError
from ffwatt.results import list_runs, read_results, write_atomic, write_job_row
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
    assert [(c, r) for c, r, _ in list_runs(tmp_path)] == [("c", "r1")]
    with pytest.raises(ResultsError, match="run a campaign first"):
        read_results(tmp_path / "nothing")
