"""The Parquet results dataset.

Layout (Hive-style, so ``pandas.read_parquet(results_dir)`` works as is)::

    <results_dir>/campaign=<name>/run_id=<flow run id>/job-<job_id>.parquet
    <results_dir>/campaign=<name>/run_id=<flow run id>/_run.json   (summary)

``campaign`` and ``run_id`` live in the directory names, not inside the files.
Each file is written to a hidden temporary name and renamed into place, so a
reader never sees a partial file, and a job written again in the same run
(a retry) replaces its row instead of adding one. Readers take the job files by
name (``job-*.parquet`` in run directories): anything else a person leaves in the
tree (a README, a notebook's output) is ignored, with one warning naming it.

A run's ``_run.json`` is written when it starts (``running``) and again when it
ends (``complete``, or ``interrupted`` by Ctrl-C or SIGTERM); a run still
``running`` whose process has gone from this host is shown ``crashed``.
"""

from __future__ import annotations

import glob
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from ffwatt.campaign import AdaptiveRepetitions
from ffwatt.errors import ResultsError
from ffwatt.files import write_atomic
from ffwatt.nodefacts import IdleBaseline, NodeFacts
from ffwatt.schema import DEFAULT_PIX_FMT, JobRow, arrow_schema

__all__ = [
    "ControlCheck",
    "RunInfo",
    "RunState",
    "RunSummary",
    "job_files",
    "list_runs",
    "read_results",
    "read_rows",
    "read_run_summary",
    "resolve_run",
    "row_counts",
    "run_dir",
    "write_job_row",
    "write_run_summary",
]

log = logging.getLogger("ffwatt.results")
RunState = Literal["running", "complete", "interrupted", "crashed"]
_PARTITION_COLUMNS = ("campaign", "run_id")
_PARTITIONING = ds.partitioning(
    pa.schema([("campaign", pa.string()), ("run_id", pa.string())]), flavor="hive"
)


def run_dir(results_dir: Path, campaign: str, run_id: str) -> Path:
    return results_dir / f"campaign={campaign}" / f"run_id={run_id}"


class ControlCheck(BaseModel):
    """The run's control encode at its start and end: how far the node drifted in between."""

    label: str  # the control's configuration, in words
    joules_per_frame: tuple[float | None, float | None]  # start, end
    encode_fps: tuple[float | None, float | None]
    drift_pct: dict[str, float]  # metric -> (end - start) / start in percent, where both were measured
    threshold_pct: float
    unstable: bool  # a drift beyond the threshold: differences between configurations may be the node's

    def words(self) -> str:
        drifts = ", ".join(f"{metric} {pct:+.1f} %" for metric, pct in self.drift_pct.items()) or "not measured"
        verdict = ("UNSTABLE: beyond" if self.unstable else "stable within") + f" {self.threshold_pct:g} %"
        return f"control encode ({self.label}) from the run's start to its end: {drifts}; {verdict}"


class RunSummary(BaseModel):
    """A run's summary, written beside its rows as ``_run.json``: its state, counts, times, why jobs
    failed, and the facts and idle baseline of every node that ran its jobs."""

    campaign: str
    run_id: str
    state: RunState
    host: str  # where the campaign flow runs, and its process: "crashed" is judged by them
    pid: int
    started_at: datetime
    ended_at: datetime | None = None
    wall_s: float | None = None
    jobs: int  # in the campaign
    ok: int = 0
    failed: int = 0
    skipped: int = 0  # live sweep steps past the one where real time broke
    failures: dict[str, int] = {}  # why jobs failed (short reason) -> how many
    encode_wall_s: float = 0.0
    nodes: dict[str, NodeFacts] = {}
    idle_baselines: dict[str, IdleBaseline] = {}
    # Adaptive repetitions: the rule the rounds followed and the seed that shuffled them (null: a fixed number).
    repetitions: AdaptiveRepetitions | None = None
    shuffle_seed: int | None = None
    control: ControlCheck | None = None  # the fixed reference encode at the run's start and end

    @property
    def missing(self) -> int:
        """Jobs without a row: never reached (an interrupted or crashed run)."""
        return self.jobs - self.ok - self.failed - self.skipped

    def observed_state(self) -> RunState:
        """The state as seen now: a run still marked running whose process is gone is crashed."""
        if self.state == "running" and self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return "crashed"
            except PermissionError:
                pass
        return self.state


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
        # The same words for every job of the run, so a run's failures group into one line.
        raise ResultsError(f"can't write the job's row in {path.parent}: {exc.strerror or exc}; free space or fix "
                           "FFWATT_RESULTS_DIR") from exc
    return path


def write_run_summary(results_dir: Path, summary: RunSummary) -> Path:
    path = run_dir(results_dir, summary.campaign, summary.run_id) / "_run.json"
    try:
        write_atomic(path, lambda tmp: tmp.write_text(summary.model_dump_json(indent=2)))
    except OSError as exc:
        raise ResultsError(f"can't write the run's summary to {path}: {exc.strerror or exc}; free space or fix "
                           "FFWATT_RESULTS_DIR") from exc
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


def job_files(results_dir: Path, *, campaign: str | None = None, run_id: str | None = None) -> list[Path]:
    """The job files of the runs asked for; anything else in their run directories is ignored,
    with one warning naming what was left out."""
    pattern = (f"campaign={glob.escape(campaign) if campaign else '*'}/"
               f"run_id={glob.escape(run_id) if run_id else '*'}")
    files, ignored = [], []
    for directory in sorted(results_dir.glob(pattern)):
        for path in directory.iterdir():
            if path.name.startswith("job-") and path.name.endswith(".parquet"):
                files.append(path)
            elif not path.name.startswith((".", "_")):
                ignored.append(path)
    if ignored:
        shown = ", ".join(str(p) for p in ignored[:3]) + (f" and {len(ignored) - 3} more" if len(ignored) > 3 else "")
        log.warning("ignored %d file(s) that aren't job files: %s", len(ignored), shown)
    return files


def _read_table(results_dir: Path, campaign: str | None, run_id: str | None,
                columns: Sequence[str] | None = None, controls: bool = False) -> pa.Table:
    if not results_dir.is_dir():
        raise ResultsError(f"no results at {results_dir}; run a campaign first (ffwatt campaign run FILE)")
    files = job_files(results_dir, campaign=campaign, run_id=run_id)
    try:
        dataset = ds.dataset([str(f) for f in files], format="parquet", partitioning=_PARTITIONING,
                             partition_base_dir=str(results_dir), schema=arrow_schema())
        # A run's control encodes (kind=control) measure the node, not a configuration: read only when asked.
        jobs = None if controls else (ds.field("kind") != "control") | ds.field("kind").is_null()
        table = dataset.to_table(columns=list(columns) if columns is not None else None, filter=jobs)
    except (pa.ArrowException, OSError) as exc:
        raise ResultsError(f"can't read results under {results_dir}: {exc}") from exc
    return _as_current(table)


def _as_current(table: pa.Table) -> pa.Table:
    """Rows of earlier schema versions in today's terms. Columns they lack read as null (the dataset's
    schema is today's), except where null would be wrong: a row from before schema 7 has no pix_fmt,
    and encoded 8-bit 4:2:0 from its 8-bit reference, the same configuration as a yuv420p job now."""
    if "pix_fmt" in table.column_names:
        index = table.column_names.index("pix_fmt")
        table = table.set_column(index, table.schema.field(index), pc.fill_null(table.column(index), DEFAULT_PIX_FMT))
    return table


def row_counts(results_dir: Path, campaign: str, run_id: str) -> dict[str, int]:
    """How many of a run's rows on disk are ok, failed or skipped: what a run cut short holds, whatever its
    summary last said (one written when it started counts nothing)."""
    counts: dict[str, int] = {}
    for status in _read_table(results_dir, campaign, run_id, columns=["status"]).column("status").to_pylist():
        counts[status] = counts.get(status, 0) + 1
    return counts


def read_rows(results_dir: Path, campaign: str, run_id: str, *, controls: bool = False) -> list[JobRow]:
    """One run's rows as :class:`JobRow` objects (to resume the run, or re-summarize it); its control
    encodes too with ``controls``."""
    return [JobRow.model_validate(record)
            for record in _read_table(results_dir, campaign, run_id, controls=controls).to_pylist()]


def read_results(
    results_dir: Path, *, campaign: str | None = None, run_id: str | None = None,
    columns: Sequence[str] | None = None, controls: bool = False,
) -> pd.DataFrame:
    """Job rows under ``results_dir``, optionally one campaign and/or run, in schema column order;
    ``columns`` reads only those (a large dataset's other columns never enter memory); ``controls`` adds
    the runs' control encodes (kind=control), which are no configuration to compare."""
    table = _read_table(results_dir, campaign, run_id, columns, controls)
    order = [(c, "ascending", "at_end") for c in ("started_at", "job_id") if c in table.column_names]
    if order:  # in Arrow: several times faster than pandas on a million rows
        table = table.sort_by(order)
    # Nullable integers, so a failed job's missing frame count doesn't turn the column into floats.
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


@dataclass(frozen=True)
class RunInfo:
    """A run in the dataset: where it is, when it last changed, and its summary if it has one."""

    campaign: str
    run_id: str
    modified: float  # unix time of its newest file
    summary: RunSummary | None

    @property
    def state(self) -> str:
        return self.summary.observed_state() if self.summary else "unknown (no _run.json)"


def list_runs(results_dir: Path, campaign: str | None = None) -> list[RunInfo]:
    """Every run (of one campaign), oldest first."""
    runs = []
    pattern = f"campaign={glob.escape(campaign)}" if campaign else "campaign=*"
    for directory in results_dir.glob(f"{pattern}/run_id=*"):
        mtimes = [p.stat().st_mtime for p in directory.iterdir()]
        name, run_id = directory.parent.name.split("=", 1)[1], directory.name.split("=", 1)[1]
        try:
            summary = read_run_summary(results_dir, name, run_id)
        except ResultsError as exc:
            log.warning("%s", exc)
            summary = None
        runs.append(RunInfo(name, run_id, max(mtimes, default=directory.stat().st_mtime), summary))
    return sorted(runs, key=lambda run: run.modified)


def resolve_run(results_dir: Path, run: str = "latest", campaign: str | None = None) -> tuple[str, str]:
    """(campaign, run_id) for ``run``: a run id, or ``latest`` (the most recently written run)."""
    results_dir = Path(results_dir)
    if run == "latest":
        runs = list_runs(results_dir, campaign)
        if not runs:
            where = f" for campaign {campaign!r}" if campaign else ""
            raise ResultsError(f"no runs under {results_dir}{where}; run a campaign first (ffwatt campaign run FILE)")
        return runs[-1].campaign, runs[-1].run_id
    pattern = f"campaign={glob.escape(campaign) if campaign else '*'}/run_id={glob.escape(run)}"
    matches = sorted(results_dir.glob(pattern))
    if not matches:
        raise ResultsError(f"no run {run!r} under {results_dir}; `ffwatt results runs` lists the runs there")
    if len(matches) > 1:
        names = ", ".join(m.parent.name.split("=", 1)[1] for m in matches)
        raise ResultsError(f"run {run!r} exists in several campaigns ({names}); pass --campaign")
    return matches[0].parent.name.split("=", 1)[1], run
