"""Time series samples (e.g. scraped Prometheus power readings) aggregated per job window.

Samples are long-format: ``timestamp``, ``node``, ``metric``, ``value``. A job's window
is ``[started_at, ended_at]`` on its node. The mean is computed with cumulative sums
and ``searchsorted`` per node: O((samples + jobs) log samples), no Python loop over jobs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["window_means"]


def _as_ns(values: pd.Series) -> np.ndarray:
    naive = pd.to_datetime(values, utc=True).dt.tz_localize(None)
    return naive.to_numpy(dtype="datetime64[ns]").view("int64")


def window_means(jobs: pd.DataFrame, samples: pd.DataFrame, *, metric: str,
                 start: str = "started_at", end: str = "ended_at") -> pd.DataFrame:
    """Per job: ``<metric>_mean`` and ``<metric>_samples`` (count) of the samples of ``metric``
    taken on the job's node within its window (inclusive). Jobs with no sample get NaN / 0."""
    picked = samples[samples["metric"] == metric]
    out = pd.DataFrame(index=jobs.index)
    means = np.full(len(jobs), np.nan)
    counts = np.zeros(len(jobs), dtype=np.int64)
    job_start, job_end = _as_ns(jobs[start]), _as_ns(jobs[end])
    job_nodes = jobs["node"].to_numpy()
    for node, group in picked.groupby("node", sort=False):
        ts = _as_ns(group["timestamp"])
        order = np.argsort(ts, kind="stable")
        ts = ts[order]
        csum = np.concatenate([[0.0], np.cumsum(group["value"].to_numpy(dtype=float)[order])])
        which = np.flatnonzero(job_nodes == node)
        lo = np.searchsorted(ts, job_start[which], side="left")
        hi = np.searchsorted(ts, job_end[which], side="right")
        n = hi - lo
        counts[which] = n
        with np.errstate(invalid="ignore", divide="ignore"):
            means[which] = np.where(n > 0, (csum[hi] - csum[lo]) / np.maximum(n, 1), np.nan)
    out[f"{metric}_mean"] = means
    out[f"{metric}_samples"] = counts
    return out
