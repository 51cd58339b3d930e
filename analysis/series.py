"""Jobs' series (``results/_series``) joined to their jobs, and what the report draws from them.

Loading goes through pyarrow filters and column projection (:func:`ffwatt.series.read_series`,
:func:`ffwatt.results.read_results` with ``columns``): a run's power samples come into memory,
not every sample and every column of the dataset.

Power is kept in parts that are never added together: CPU measured (RAPL packages), CPU
estimated (the CPU power model over /proc/stat busy time) and GPU (NVML), each part with its
``estimated`` flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ffwatt.results import read_results
from ffwatt.schema import CONFIG_COLUMNS, config_label, is_estimated
from ffwatt.series import CHECKED_FROM_S, disagrees, read_series, series_dataset

__all__ = ["JOB_COLUMNS", "POWER_METRICS", "load_series", "power_over_time", "power_summary", "sample_counts",
           "series_checks"]

# The job columns a sample is joined with by default: who ran it, its configuration, its window.
JOB_COLUMNS: tuple[str, ...] = ("campaign", "run_id", "job_id", "config_id", "repetition", *CONFIG_COLUMNS,
                                "status", "started_at", "ended_at", "wall_s", "energy_source")
_SAMPLE_COLUMNS = ("campaign", "run_id", "job_id", "node", "metric", "labels", "timestamp", "value", "source")
# metric -> (part, estimated, label every summed series has, as it reads in the labels JSON)
POWER_METRICS: dict[str, tuple[str, bool, str]] = {
    "ffwatt_rapl_power_watts": ("cpu", False, '"kind":"package"'),
    "ffwatt_cpu_estimated_power_watts": ("cpu", True, ""),
    "ffwatt_gpu_power_watts": ("gpu", False, ""),
}


def load_series(results_dir: Path, *, campaign: str | None = None, run_id: str | Sequence[str] | None = None,
                job_id: str | Sequence[str] | None = None, metrics: Sequence[str] | None = None,
                job_columns: Sequence[str] | None = JOB_COLUMNS) -> pd.DataFrame:
    """Samples of the runs, jobs and metrics asked for (each narrows what is read), each joined to its
    job's ``job_columns`` and with ``t_s``, seconds since the job's encode began. ``job_columns=None``
    gives the samples alone."""
    results_dir = Path(results_dir)
    # Dictionary-read only the columns no filter is on: row-group statistics can't prune on those.
    table = read_series(results_dir, campaign=campaign, run_id=run_id, job_id=job_id, metrics=metrics,
                        columns=_SAMPLE_COLUMNS, dictionaries=("node", "labels", "source"))
    samples = table.to_pandas()
    for column in ("campaign", "run_id", "job_id", "node", "metric", "labels", "source"):
        samples[column] = samples[column].astype(str)
    if not job_columns:
        return samples
    wanted = list(dict.fromkeys(["campaign", "run_id", "job_id", *job_columns]))
    jobs = read_results(results_dir, campaign=campaign, run_id=run_id if isinstance(run_id, str) else None,
                        columns=[c for c in wanted if c != "node"])
    joined = samples.merge(jobs, on=["campaign", "run_id", "job_id"], how="left")
    if "started_at" in joined.columns:
        joined["t_s"] = (joined["timestamp"] - joined["started_at"]).dt.total_seconds()
    return joined


def power_over_time(samples: pd.DataFrame) -> pd.DataFrame:
    """Per job, sample time and part (``cpu``/``gpu``): the watts of its node, packages and GPUs summed,
    measured and estimated apart (``estimated``). Carries the samples' job columns along."""
    parts = []
    for metric, (part, estimated, label) in POWER_METRICS.items():
        picked = samples[samples["metric"] == metric]
        if label:
            picked = picked[picked["labels"].str.contains(label, regex=False)]
        if picked.empty:
            continue
        keys = [c for c in picked.columns if c not in ("metric", "labels", "value", "source")]
        summed = picked.groupby(keys, dropna=False, sort=False, observed=True)["value"].sum().reset_index()
        parts.append(summed.rename(columns={"value": "watts"}).assign(part=part, estimated=estimated))
    if not parts:
        return pd.DataFrame(columns=["job_id", "node", "timestamp", "watts", "part", "estimated"])
    return pd.concat(parts, ignore_index=True).sort_values(["job_id", "part", "timestamp"]).reset_index(drop=True)


def series_checks(jobs: pd.DataFrame) -> pd.DataFrame:
    """Every job's cross-check: ``config`` in words, its series columns, ``checked`` (long enough to
    judge, :data:`~ffwatt.series.CHECKED_FROM_S`) and ``disagrees`` (checked and beyond
    :data:`~ffwatt.series.AGREEMENT`); ``estimated`` when either energy rests on an estimate."""
    if "series_source" not in jobs.columns:
        return pd.DataFrame()
    out = jobs.copy()
    out["config"] = [config_label(r) for _, r in out.iterrows()]
    wall = pd.to_numeric(out.get("wall_s"), errors="coerce")
    gap = pd.to_numeric(out["series_energy_gap"], errors="coerce")
    out["checked"] = (wall >= CHECKED_FROM_S) & gap.notna()
    out["disagrees"] = [disagrees(w, g) for w, g in zip(wall, gap)]
    out["gap_pct"] = gap * 100
    out["estimated"] = [is_estimated(a) or is_estimated(b)
                        for a, b in zip(out["energy_source"], out["series_energy_source"])]
    return out


_PARTS = ("cpu", "cpu_estimated", "gpu")


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    """A string or dictionary column as (codes, distinct values)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_dictionary(array.type):
        array = array.dictionary_encode()
    return array.indices.to_numpy(zero_copy_only=False), array.dictionary.to_pylist()


def _partition_filter(campaign: str | None, run_id: str | None) -> ds.Expression | None:
    where = None
    for name, value in (("campaign", campaign), ("run_id", run_id)):
        if value is not None:
            where = ds.field(name) == value if where is None else where & (ds.field(name) == value)
    return where


class _Windows:
    """Jobs' encode windows (ms) by run, looked up by a file's job ids."""

    def __init__(self, jobs: pd.DataFrame) -> None:
        known = jobs.dropna(subset=["started_at", "ended_at"])
        start = known["started_at"].dt.as_unit("ms").astype("int64").to_numpy()
        end = known["ended_at"].dt.as_unit("ms").astype("int64").to_numpy()
        job_ids = known["job_id"].astype(str).to_numpy()
        run_codes, run_names = pd.factorize(known["run_id"].astype(str).to_numpy())
        order = np.argsort(run_codes, kind="stable")
        edges = np.cumsum(np.bincount(run_codes, minlength=len(run_names)))[:-1]
        self._by_run = {str(run): (pd.Index(job_ids[rows]), start[rows], end[rows])
                        for run, rows in zip(run_names, np.split(order, edges))}

    def bounds(self, run_id: str, job_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) per job id, NaN for jobs these rows don't have."""
        found = self._by_run.get(run_id)
        if found is None:
            return np.full(len(job_ids), np.nan), np.full(len(job_ids), np.nan)
        index, start, end = found
        where = index.get_indexer(job_ids)
        return (np.where(where >= 0, start[where], np.nan).astype(float),
                np.where(where >= 0, end[where], np.nan).astype(float))


def power_summary(results_dir: Path, *, campaign: str | None = None, run_id: str | None = None,
                  jobs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per job (``campaign, run_id, job_id``) and power part (``cpu``, ``cpu_estimated``, ``gpu``):
    ``samples`` (sample times), ``mean_w`` and ``max_w`` of the part's watts (packages and GPUs summed
    at each sample time), over the job's encode when ``jobs`` gives its ``started_at``/``ended_at``,
    else over its whole window.

    Read one file at a time with a pyarrow filter on the power metrics (row groups of other metrics
    are skipped by their statistics) and column projection, so memory is one file's power samples
    whatever the dataset's size."""
    # metric stays a plain string: row-group statistics can't prune on a dictionary-read column.
    dataset = series_dataset(results_dir, dictionaries=("job_id", "labels"))
    where = ds.field("metric").isin(list(POWER_METRICS))
    partitions = _partition_filter(campaign, run_id)
    where = where if partitions is None else where & partitions
    windows = _Windows(jobs) if jobs is not None else None
    parts = []
    for fragment in dataset.get_fragments(filter=where):
        # A file's campaign and run are its directories': not read (nor held) once per sample.
        table = fragment.to_table(schema=dataset.schema, filter=where,
                                  columns=["job_id", "metric", "labels", "timestamp", "value"])
        if table.num_rows:
            parts.append(_fragment_power(table, windows, ds.get_partition_keys(fragment.partition_expression)))
    if not parts:
        return pd.DataFrame(columns=["campaign", "run_id", "job_id", "part", "samples", "mean_w", "max_w"])
    return pd.concat(parts, ignore_index=True)


def _fragment_power(table: pa.Table, windows: _Windows | None, where: dict[str, str]) -> pd.DataFrame:
    metric, metric_names = _codes(table.column("metric"))
    labels, label_values = _codes(table.column("labels"))
    job, job_ids = _codes(table.column("job_id"))
    stamps = table.column("timestamp").cast(pa.int64()).to_numpy()
    values = table.column("value").to_numpy()
    # Which part each metric is, and which label sets count (RAPL: packages only, never subzones).
    part_of = np.array([_PARTS.index("cpu_estimated" if POWER_METRICS[m][1] else POWER_METRICS[m][0])
                        for m in metric_names], dtype=np.int8)
    wanted = np.array([[POWER_METRICS[m][2] in text for text in label_values] for m in metric_names],
                      dtype=bool).reshape(len(metric_names), len(label_values))
    keep = wanted[metric, labels]
    if windows is not None:
        start, end = windows.bounds(where.get("run_id", ""), job_ids)
        keep &= ~((stamps < start[job]) | (stamps > end[job]))  # jobs without a row (NaN) keep their window
    samples = pa.table({"job": job[keep], "part": part_of[metric][keep], "t": stamps[keep], "w": values[keep]})
    # Several packages or GPUs: their watts are added at each sample time before averaging over time.
    series_per_part = np.bincount(part_of[np.unique(metric[keep] * len(label_values) + labels[keep])
                                          // len(label_values)], minlength=len(_PARTS))
    if series_per_part.max(initial=0) > 1:
        samples = samples.group_by(["job", "part", "t"], use_threads=True).aggregate([("w", "sum")]).rename_columns(
            ["job", "part", "t", "w"])
    stats = samples.group_by(["job", "part"], use_threads=True).aggregate([("w", "count"), ("w", "mean"), ("w", "max")])
    return pd.DataFrame({
        "campaign": where.get("campaign", ""), "run_id": where.get("run_id", ""),
        "job_id": pd.Categorical.from_codes(stats.column("job").to_numpy(), categories=job_ids),
        "part": pd.Categorical.from_codes(stats.column("part").to_numpy(), categories=list(_PARTS)),
        "samples": stats.column("w_count").to_numpy(), "mean_w": stats.column("w_mean").to_numpy(),
        "max_w": stats.column("w_max").to_numpy()})


def sample_counts(results_dir: Path, *, campaign: str | None = None, run_id: str | None = None) -> pd.DataFrame:
    """Samples per job and metric (``campaign, run_id, job_id, metric, samples``), to find jobs whose
    series are short of what their window should hold. Reads only the job and metric columns'
    dictionary codes, one row group at a time (campaign and run are the file's directories)."""
    dataset = series_dataset(results_dir)
    parts = []
    for fragment in dataset.get_fragments(filter=_partition_filter(campaign, run_id)):
        keys = ds.get_partition_keys(fragment.partition_expression)
        source = pq.ParquetFile(fragment.path, read_dictionary=["job_id", "metric"])
        ids: pa.Array | None = None  # the file's job ids, in the order first seen
        seen: pa.Array | None = None  # the last row group's job dictionary, and its codes in ids
        into = np.zeros(0, dtype=np.int64)
        totals: dict[str, np.ndarray] = {}
        for group in range(source.num_row_groups):
            table = source.read_row_group(group, columns=["job_id", "metric"])
            jobs, metrics = table.column("job_id").combine_chunks(), table.column("metric").combine_chunks()
            if seen is None or not jobs.dictionary.equals(seen):  # row groups of one file mostly share it
                ids = jobs.dictionary if ids is None else pa.concat_arrays(
                    [ids, pc.filter(jobs.dictionary, pc.invert(pc.is_in(jobs.dictionary, value_set=ids)))])
                into = pc.index_in(jobs.dictionary, value_set=ids).to_numpy(zero_copy_only=False).astype(np.int64)
                seen = jobs.dictionary
            width = len(ids) if ids is not None else 0
            job = into[jobs.indices.to_numpy(zero_copy_only=False)]
            names = metrics.dictionary.to_pylist()
            codes = metrics.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            counts = np.bincount(codes * width + job, minlength=len(names) * width)
            for m, name in enumerate(names):
                found = counts[m * width:(m + 1) * width]
                total = totals.get(name)
                if total is not None:
                    found[: len(total)] += total
                totals[name] = found
        job_ids = pd.Index(ids.to_pylist() if ids is not None else [], dtype=object)
        for name, total in totals.items():
            present = np.flatnonzero(total)
            parts.append(pd.DataFrame({"campaign": keys.get("campaign", ""), "run_id": keys.get("run_id", ""),
                                       "job_id": pd.Categorical.from_codes(present, categories=job_ids),
                                       "metric": name, "samples": total[present]}))
    if not parts:
        return pd.DataFrame(columns=["campaign", "run_id", "job_id", "metric", "samples"])
    return pd.concat(parts, ignore_index=True)
