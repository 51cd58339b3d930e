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

import pandas as pd

from ffwatt.results import read_results
from ffwatt.schema import CONFIG_COLUMNS, config_label, is_estimated
from ffwatt.series import CHECKED_FROM_S, disagrees, read_series

__all__ = ["JOB_COLUMNS", "POWER_METRICS", "load_series", "power_over_time", "series_checks"]

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
    table = read_series(results_dir, campaign=campaign, run_id=run_id, job_id=job_id, metrics=metrics,
                        columns=_SAMPLE_COLUMNS, dictionaries=("campaign", "run_id", "job_id", "node", "metric",
                                                               "labels", "source"))
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
