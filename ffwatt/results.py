"""The Parquet results dataset.

Layout (Hive-style, so ``pandas.read_parquet(results_dir)`` works as is)::

    <results_dir>/campaign=<name>/run_id=<flow run id>/job-<job_id>.parquet
    <results_dir>/campaign=<name>/run_id=<flow run id>/_run.json   (summary)

``campaign`` and ``run_id`` live in the directory names, not inside the files.
Each file is written to a hidden temporary name and renamed into place, so a
reader never sees a partial file, and a job written again in the same run
(a retry) replaces its row instead of adding one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from ffwatt.errors import ResultsError
from ffwatt.nodefacts import IdleBaseline, NodeFacts
from ffwatt.schema import JobRow, arrow_schema

__all__ = [
    "RunSummary",
    "list_runs",
    "read_results",
    "read_run_summary",
    "run_dir",
    "write_atomic",
    "write_job_row",
    "write_run_summary",
]

_PARTITION_COLUMNS = ("campaign", "run_id")
_PARTITIONING = ds.partitioning(
    pa.schema([("campaign", pa.string()), ("run_id", pa.string())]), flavor="hive"
)


def run_dir(results_dir: Path, campaign: str, run_id: str) -> Path:
    return results_dir / f"campaign={campaign}" / f"run_id={run_id}"


class RunSummary(BaseModel):
    """A run's summary, written beside its rows as ``_run.json``: counts, times, and the facts
    and idle baseline of every node that ran its jobs."""

    campaign: str
    run_id: str
    started_at: datetime
    ended_at: datetime
    wall_s: float
    jobs: int
    ok: int
    failed: int
    encode_wall_s: float
    nodes: dict[str, NodeFacts]
    idle_baselines: dict[str, IdleBaseline]


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_job_row(results_dir: Path, row: JobRow) -> Path:
    """Write one job's row; writing the same job of the same run again replaces it."""
    record = row.model_dump()
    schema = arrow_schema()
    file_schema = pa.schema([f for f in schema if f.name not in _PARTITION_COLUMNS], metadata=schema.metadata)
    table = pa.Table.from_pylist([{k: record[k] for k in file_schema.names}], schema=file_schema)
    path = run_dir(results_dir, row.campaign, row.run_id) / f"job-{row.job_id}.parquet"
    try:
        write_atomic(path, lambda tmp: pq.write_table(table, tmp))
    except OSError as exc:
        raise ResultsError(f"can't write results to {path}: {exc.strerror}; check FFWATT_RESULTS_DIR") from exc
    return path


def write_run_summary(results_dir: Path, summary: RunSummary) -> Path:
    path = run_dir(results_dir, summary.campaign, summary.run_id) / "_run.json"
    write_atomic(path, lambda tmp: tmp.write_text(summary.model_dump_json(indent=2)))
    return path


def read_run_summary(results_dir: Path, campaign: str, run_id: str) -> RunSummary | None:
    """The run's summary; None while it runs (or when it was interrupted before writing one)."""
    path = run_dir(results_dir, campaign, run_id) / "_run.json"
    if not path.exists():
        return None
    try:
        return RunSummary.model_validate_json(path.read_text())
    except (OSError, ValidationError) as exc:
        raise ResultsError(f"can't read the run summary {path}: {exc}") from exc


def read_results(
    results_dir: Path, *, campaign: str | None = None, run_id: str | None = None
) -> pd.DataFrame:
    """Job rows under ``results_dir``, optionally one campaign and/or run, in schema column order."""
    if not results_dir.is_dir():
        raise ResultsError(f"no results at {results_dir}; run a campaign first (ffwatt campaign run FILE)")
    try:
        dataset = ds.dataset(results_dir, format="parquet", partitioning=_PARTITIONING,
                             schema=arrow_schema())
        condition = None
        for column, value in (("campaign", campaign), ("run_id", run_id)):
            if value is not None:
                term = ds.field(column) == value
                condition = term if condition is None else condition & term
        table = dataset.to_table(filter=condition)
    except (pa.ArrowException, OSError) as exc:
        raise ResultsError(f"can't read results under {results_dir}: {exc}") from exc
    # Nullable integers, so a failed job's missing frame count doesn't turn the column into floats.
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    return frame.sort_values(["started_at", "job_id"], na_position="last").reset_index(drop=True)


def list_runs(results_dir: Path, campaign: str | None = None) -> list[tuple[str, str, float]]:
    """(campaign, run_id, last-modified time) of each run, oldest first."""
    runs = []
    pattern = f"campaign={campaign}" if campaign else "campaign=*"
    for directory in results_dir.glob(f"{pattern}/run_id=*"):
        mtimes = [p.stat().st_mtime for p in directory.iterdir()]
        runs.append((directory.parent.name.split("=", 1)[1], directory.name.split("=", 1)[1],
                     max(mtimes, default=directory.stat().st_mtime)))
    return sorted(runs, key=lambda item: item[2])
