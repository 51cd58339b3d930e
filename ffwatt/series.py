"""A job's series: what its node's exporters said over the job's window, in long form, beside its row.

When a job's row is written, the samples of ``[started_at - 2 s, ended_at + 2 s]`` on its
node are written too, one file per job::

    <results_dir>/_series/campaign=<name>/run_id=<run>/job-<job_id>.parquet

with the columns of :func:`series_schema` (``run_id, job_id, node, metric, labels, timestamp,
value, source``). The leading ``_`` keeps them out of the job table: pyarrow's dataset
discovery, and so ``pandas.read_parquet(results_dir)``, skips names starting with ``_``.

Which of a node's series belong to a job is said once, here (:data:`NODE_SERIES`,
:data:`JOB_SERIES`): the store's export query and the campaign's own in-process sampler
both use it, so a job's series read the same whichever ``source`` they came from.

:func:`cross_check` sets the row's :class:`~ffwatt.schema.SeriesColumns`: the energy the
series' counters gained over the encode window, next to the row's own ``energy_j``. Each
counter value is placed at the time it was read, not the time it was scraped: an exporter's
background sampler reads RAPL and NVML once a second and a scrape serves the latest reading,
up to a second old; ``ffwatt_sampler_last_success_age_seconds``, scraped with it, says how old.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ffwatt.errors import ResultsError
from ffwatt.files import write_atomic
from ffwatt.schema import JobRow, SeriesColumns, SeriesSource, is_missing

__all__ = [
    "AGREEMENT",
    "CHECKED_FROM_S",
    "JOB_SERIES",
    "MARGIN_S",
    "NODE_SERIES",
    "SCRAPE_S",
    "SERIES_DIR",
    "SOURCE_WORDS",
    "Series",
    "cross_check",
    "disagrees",
    "is_job_series",
    "job_window",
    "labels_json",
    "read_series",
    "series_dataset",
    "series_markdown",
    "series_of",
    "series_path",
    "series_schema",
    "series_table",
    "write_series",
]

SERIES_DIR = "_series"
MARGIN_S = 2.0  # the window is the encode and this much on either side
SCRAPE_S = 1.0  # the stack's scrape interval: a window is complete within one scrape of its end
AGREEMENT = 0.02  # series and row energy agree within this relative gap...
CHECKED_FROM_S = 30.0  # ...for jobs at least this long: 1 Hz samples can't resolve a few seconds
# How far the readings bracketing the encode's start and end may lie from them: two missed
# 1 s readings at most, else the interpolated counter is a guess.
MAX_GAP_S = 2.5

# A node's series that are every job's on it: energy counters and power (RAPL measured, the CPU
# estimate, GPUs), CPU utilisation and the estimate's basis, every GPU series, node_exporter's CPU
# time, frequency and temperatures, and the samplers' ages (to place counter readings in time).
NODE_SERIES = (r"ffwatt_(rapl|cpu|gpu)_.+|ffwatt_sampler_last_success_age_seconds"
               r"|node_cpu_seconds_total|node_cpu_(scaling_)?frequency_hertz|node_thermal_zone_temp"
               r"|node_hwmon_temp_celsius")
# ...and those of one job only: its FFmpeg's progress, labelled with its job_id.
JOB_SERIES = r"ffwatt_ffmpeg_.+"
_NODE, _JOB = re.compile(NODE_SERIES), re.compile(JOB_SERIES)
# Labels a store adds from the scrape target: the node is a column, the rest say nothing of the job.
_TARGET_LABELS = frozenset({"__name__", "node", "instance", "job", "exporter", "pool"})

# Where a job's series came from, in words for tables and reports.
SOURCE_WORDS: dict[str, str] = {"store": "the metrics store", "local": "the campaign's own 1 Hz sampler"}

_AGE_METRIC = "ffwatt_sampler_last_success_age_seconds"
# energy_source part -> (counter, labels every series of it must have (one of), sampler that reads it). RAPL:
# the packages and DRAM, as the row's energy_j adds them.
_COUNTERS: dict[str, tuple[str, dict[str, str], str]] = {
    "rapl": ("ffwatt_rapl_energy_joules_total", {"kind": "package|dram"}, "rapl"),
    "estimated": ("ffwatt_cpu_estimated_energy_joules_total", {}, "rapl"),
    "nvml": ("ffwatt_gpu_energy_joules_total", {}, "gpu"),
}


@dataclass(frozen=True)
class Series:
    """One series' samples: ``labels`` as :func:`labels_json` writes them, times in ms since the epoch."""

    metric: str
    labels: str
    timestamps_ms: np.ndarray  # int64
    values: np.ndarray  # float64

    def label(self, name: str) -> str | None:
        value = json.loads(self.labels).get(name)
        return None if value is None else str(value)


def labels_json(labels: Mapping[str, str]) -> str:
    """A series' own labels as compact JSON with sorted keys (the target's labels left out)."""
    return json.dumps({k: labels[k] for k in sorted(labels) if k not in _TARGET_LABELS}, separators=(",", ":"))


def is_job_series(metric: str, labels: Mapping[str, str], job_id: str) -> bool:
    """Whether ``metric{labels}`` is one of job ``job_id``'s series (its node's, or its own)."""
    if _NODE.fullmatch(metric):
        return True
    return bool(_JOB.fullmatch(metric)) and labels.get("job_id") == job_id


def job_window(row: JobRow) -> tuple[float, float] | None:
    """The job's series window in unix seconds (encode start - 2 s, end + 2 s); None when it never encoded."""
    if row.started_at is None or row.ended_at is None:
        return None
    return row.started_at.timestamp() - MARGIN_S, row.ended_at.timestamp() + MARGIN_S


def _field(name: str, kind: pa.DataType, description: str, unit: str = "") -> pa.Field:
    return pa.field(name, kind, nullable=False, metadata={"unit": unit, "description": description})


def series_schema() -> pa.Schema:
    """The Arrow schema of a series file."""
    return pa.schema([
        _field("run_id", pa.string(), "Prefect flow run id of the campaign run (as in the job's row)."),
        _field("job_id", pa.string(), "The job whose window this sample falls in."),
        _field("node", pa.string(), "Node that ran the job, whose exporters gave the sample."),
        _field("metric", pa.string(), "Metric name as the exporter exposes it (docs/metrics.md, node_exporter's)."),
        _field("labels", pa.string(), "The series' other labels as JSON with sorted keys (zone, kind, index, "
                                      "job_id...); the scrape target's node, instance, job, exporter, pool left out."),
        _field("timestamp", pa.timestamp("ms", tz="UTC"), "When the sample was scraped (store) or collected (local)."),
        _field("value", pa.float64(), "The sample's value, in the metric's unit."),
        _field("source", pa.string(), "store (the metrics store's export API) or local (the campaign read the "
                                      "node's exporters in-process at 1 Hz)."),
    ])


def series_markdown() -> str:
    """The series file's columns as the Markdown table kept in docs/schema.md."""
    lines = ["| column | type | unit | description |", "| --- | --- | --- | --- |"]
    for field in series_schema():
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        lines.append(f"| `{field.name}` | {field.type} | {meta['unit'] or '-'} | {meta['description']} |")
    return "\n".join(lines) + "\n"


def series_table(series: Sequence[Series], *, run_id: str, job_id: str, node: str,
                 source: SeriesSource) -> pa.Table:
    """The long-form table of a job's series, sorted by metric, labels and time."""
    ordered = sorted(series, key=lambda s: (s.metric, s.labels))
    counts = np.array([len(s.values) for s in ordered], dtype=np.int64)
    total = int(counts.sum())
    which = np.repeat(np.arange(len(ordered), dtype=np.int32), counts)

    def repeated(values: list[str]) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(which), pa.array(values, pa.string())).cast(pa.string())

    def constant(value: str) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(total, np.int32)),
                                              pa.array([value])).cast(pa.string())

    empty = np.zeros(0)
    timestamps = np.concatenate([s.timestamps_ms for s in ordered]) if ordered else empty.astype(np.int64)
    values = np.concatenate([s.values for s in ordered]) if ordered else empty
    return pa.Table.from_arrays([
        constant(run_id), constant(job_id), constant(node),
        repeated([s.metric for s in ordered]), repeated([s.labels for s in ordered]),
        pa.array(timestamps.astype(np.int64), pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        pa.array(values.astype(np.float64), pa.float64()), constant(source),
    ], schema=series_schema())


def series_path(results_dir: Path, campaign: str, run_id: str, job_id: str) -> Path:
    return Path(results_dir) / SERIES_DIR / f"campaign={campaign}" / f"run_id={run_id}" / f"job-{job_id}.parquet"


def write_series(results_dir: Path, campaign: str, table: pa.Table) -> Path:
    """Write one job's series table; written again for the same job of the same run, it replaces it."""
    run_id, job_id = table.column("run_id")[0].as_py(), table.column("job_id")[0].as_py()
    path = series_path(results_dir, campaign, run_id, job_id)
    try:
        write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    except OSError as exc:
        raise ResultsError(f"can't write a job's series to {path}: {exc.strerror}; check FFWATT_RESULTS_DIR") from exc
    return path


_PARTITIONING = ds.partitioning(pa.schema([("campaign", pa.string()), ("run_id", pa.string())]), flavor="hive")


def series_dataset(results_dir: Path, *, dictionaries: Sequence[str] = ()) -> ds.Dataset:
    """Every job's series under ``results_dir`` as one pyarrow dataset (``campaign`` from the directory
    names); ``dictionaries``: string columns to read dictionary-encoded (far less memory at scale), but
    not those a filter is on: row-group statistics can't prune on a dictionary-read column."""
    root = Path(results_dir) / SERIES_DIR
    if not root.is_dir():
        raise ResultsError(f"no series under {root}: none of these runs wrote any (ffwatt writes them since "
                           "schema 4); run a campaign")
    fields = [pa.field(f.name, pa.dictionary(pa.int32(), pa.string()) if f.name in dictionaries else f.type,
                       metadata=f.metadata) for f in series_schema()]
    fields.append(pa.field("campaign", pa.dictionary(pa.int32(), pa.string()) if "campaign" in dictionaries
                           else pa.string()))
    file_format = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=list(dictionaries)))
    try:
        return ds.dataset(str(root), format=file_format, partitioning=_PARTITIONING, schema=pa.schema(fields),
                          exclude_invalid_files=False)
    except (pa.ArrowException, OSError) as exc:
        raise ResultsError(f"can't read the series under {root}: {exc}") from exc


def read_series(results_dir: Path, *, campaign: str | None = None, run_id: str | Sequence[str] | None = None,
                job_id: str | Sequence[str] | None = None, metrics: Sequence[str] | None = None,
                columns: Sequence[str] | None = None, dictionaries: Sequence[str] = ()) -> pa.Table:
    """The samples asked for, as an Arrow table: each argument narrows by a pyarrow filter (whole
    directories and row groups are skipped), ``columns`` reads only those columns."""
    conditions: list[Any] = []
    for name, wanted in (("campaign", campaign), ("run_id", run_id), ("job_id", job_id), ("metric", metrics)):
        if wanted is None:
            continue
        values = [wanted] if isinstance(wanted, str) else list(wanted)
        conditions.append(ds.field(name) == values[0] if len(values) == 1 else ds.field(name).isin(values))
    where = None
    for condition in conditions:
        where = condition if where is None else where & condition
    dataset = series_dataset(results_dir, dictionaries=dictionaries)
    try:
        return dataset.to_table(columns=list(columns) if columns else None, filter=where)
    except (pa.ArrowException, OSError) as exc:
        raise ResultsError(f"can't read the series under {Path(results_dir) / SERIES_DIR}: {exc}") from exc


def _read_times(series: Series, ages: Mapping[int, float]) -> np.ndarray:
    """When each value was read: its timestamp less its sampler's age at that scrape, in seconds."""
    age = np.array([ages.get(int(t), 0.0) for t in series.timestamps_ms])
    return series.timestamps_ms / 1000.0 - age


def _increase(times: np.ndarray, values: np.ndarray, start: float, end: float) -> float | str:
    """A counter's increase over ``[start, end]`` from its readings, resets counted as in PromQL's
    increase(); a string says why it can't be told."""
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    if len(times) < 2 or times[0] > start or times[-1] < end:
        return "has no reading before the encode's start and after its end"
    steps = np.diff(values)
    cumulative = np.concatenate([[values[0]], values[0] + np.cumsum(np.where(steps < 0, values[1:], steps))])
    for at in (start, end):
        after = int(np.searchsorted(times, at, side="left"))
        before = int(np.searchsorted(times, at, side="right")) - 1
        if times[min(after, len(times) - 1)] - times[max(before, 0)] > MAX_GAP_S:
            return f"has no reading within {MAX_GAP_S:g} s of the encode's {'start' if at == start else 'end'}"
    return float(np.interp(end, times, cumulative) - np.interp(start, times, cumulative))


def _labels_match(series: Series, wanted: Mapping[str, str]) -> bool:
    return all(series.label(k) in v.split("|") for k, v in wanted.items())


def _series_energy(row: JobRow, series: Sequence[Series]) -> tuple[float | None, str | None, str | None]:
    """(joules, their sources, why not): the counters of the row's energy sources over its encode."""
    assert row.started_at is not None and row.ended_at is not None and row.energy_source
    start, end = row.started_at.timestamp(), row.ended_at.timestamp()
    ages: dict[str, dict[int, float]] = {}
    for s in series:
        if s.metric == _AGE_METRIC and (sampler := s.label("sampler")):
            ages[sampler] = dict(zip(s.timestamps_ms.tolist(), s.values.tolist()))
    total, sources = 0.0, []
    for part in row.energy_source.split("+"):
        if part not in _COUNTERS:
            return None, None, f"no counter for energy source {part!r} in the series"
        metric, wanted, sampler = _COUNTERS[part]
        counters = [s for s in series if s.metric == metric and _labels_match(s, wanted)]
        if not counters:
            shown = metric + ("{" + ",".join(f'{k}="{v}"' for k, v in wanted.items()) + "}" if wanted else "")
            return None, None, (f"the series have no {shown} (the node's exporter read another source "
                                "than the job's meter)")
        for counter in counters:
            gained = _increase(_read_times(counter, ages.get(sampler, {})), counter.values, start, end)
            if isinstance(gained, str):
                return None, None, f"{counter.metric}{counter.labels} {gained}"
            total += gained
        sources.append(part)
    return total, "+".join(sources), None


def cross_check(row: JobRow, series: Sequence[Series], source: SeriesSource) -> SeriesColumns:
    """The row's series columns for ``series`` (what was written for it) from ``source``."""
    columns = SeriesColumns(series_source=source, series_samples=sum(len(s.values) for s in series))
    if not series:
        columns.series_source = None
        columns.series_missing = f"the {source} series had no samples of node {row.node} in the job's window"
        return columns
    if row.started_at is None or row.ended_at is None or not row.energy_source or is_missing(row.energy_j):
        return columns  # nothing to cross-check: the row has no energy figure
    joules, sources, why = _series_energy(row, series)
    columns.series_missing = f"incomplete: {why}" if why else None
    columns.series_energy_j, columns.series_energy_source = joules, sources
    if joules is not None and row.energy_j:
        columns.series_energy_gap = (joules - row.energy_j) / row.energy_j
    return columns


def disagrees(wall_s: Any, gap: Any) -> bool:
    """Whether a job long enough to be checked has series energy beyond :data:`AGREEMENT` of its row's."""
    if is_missing(wall_s) or is_missing(gap):
        return False
    return float(wall_s) >= CHECKED_FROM_S and abs(float(gap)) > AGREEMENT


def series_of(table: pa.Table) -> list[Series]:
    """A series table (one job's, as :func:`read_series` gives it) back as :class:`Series`."""
    keys = list(zip(table.column("metric").cast(pa.string()).to_pylist(),
                    table.column("labels").cast(pa.string()).to_pylist()))
    stamps = table.column("timestamp").cast(pa.int64()).to_numpy()
    values = table.column("value").to_numpy()
    rows: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(keys):
        rows.setdefault(key, []).append(i)
    out = []
    for (metric, labels), where in sorted(rows.items()):
        picked = np.asarray(where)[np.argsort(stamps[where], kind="stable")]
        out.append(Series(metric, labels, stamps[picked], values[picked]))
    return out
