"""Repetition statistics: mean, standard deviation, Student-t confidence intervals, and the
one significance test every comparison uses.

Two configurations (or one configuration in two runs) are called different on a metric
when Welch's unequal-variance t-test, two-sided, rejects equal means at level ``alpha``
(0.05, matching the 95 % intervals). Welch rather than Student because an upgrade can
change the spread as well as the mean; rather than "intervals don't overlap" because that
rule is far too conservative (two 95 % intervals may overlap by a quarter of their width
while p < 0.01), so it misses real 10 % regressions with three repetitions. With one
repetition there is no variance to test against, and the verdict says it cannot decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# Student's t from scipy.special (stdtr: CDF, stdtrit: quantile): the same functions scipy.stats'
# t distribution calls, without its half-second import, which ffwatt recommend would pay.
from scipy.special import stdtr, stdtrit

from ffwatt.schema import is_missing

__all__ = ["Comparison", "Welch", "ci_pct", "compare", "mean_ci", "repetition_stats", "settled", "settling",
           "t_critical", "welch"]


def t_critical(n: int, confidence: float = 0.95) -> float:
    """Two-sided Student-t critical value for ``n`` samples (``n - 1`` degrees of freedom)."""
    if n < 2:
        return float("nan")
    return float(stdtrit(n - 1, 0.5 + confidence / 2.0))


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, float, int]:
    """(mean, sample std, ci_low, ci_high, n) of the finite values; CI is NaN below 2 samples."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), float("nan"), 0
    mean = float(x.mean())
    if n < 2:
        return mean, float("nan"), float("nan"), float("nan"), n
    std = float(x.std(ddof=1))
    half = t_critical(n, confidence) * std / np.sqrt(n)
    return mean, std, mean - half, mean + half, n


def ci_pct(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> float:
    """The interval's half-width in percent of the mean: how tightly the repetitions pin the figure down
    (NaN below 2 values, or at a zero mean)."""
    mean, _, low, high, n = mean_ci(values, confidence)
    if n < 2 or not mean:
        return float("nan")
    return (high - low) / 2.0 / abs(mean) * 100.0


def settled(joules_per_frame: Sequence[float], wall_s: Sequence[float], limit_pct: float) -> bool:
    """Whether a configuration's repetitions have settled: the 95 % interval of its joules per frame AND
    of its wall time within ``limit_pct`` % of the mean. A figure it lacks (no energy reading) never settles."""
    return all(np.isfinite(pct) and pct <= limit_pct for pct in (ci_pct(joules_per_frame), ci_pct(wall_s)))


def settling(frame: pd.DataFrame, limit_pct: float, max_n: int) -> pd.DataFrame:
    """Per configuration of ``frame`` (job rows): ``config_id``, ``n`` ok repetitions, the mean and interval
    half-width (% of the mean) of ``joules_per_frame`` and ``wall_s``, and ``state``: settled, at max (stopped
    at ``max_n`` unsettled) or unsettled (a run cut short)."""
    ok = frame[frame["status"] == "ok"] if "status" in frame.columns else frame
    out = []
    for config_id, group in ok.groupby("config_id", sort=False):
        jpf, wall = group["joules_per_frame"].astype(float), group["wall_s"].astype(float)
        state = "settled" if settled(jpf, wall, limit_pct) else "at max" if len(group) >= max_n else "unsettled"
        out.append({"config_id": config_id, "n": len(group), "joules_per_frame": jpf.mean(),
                    "joules_per_frame_ci_pct": ci_pct(jpf), "wall_s": wall.mean(), "wall_s_ci_pct": ci_pct(wall),
                    "state": state})
    return pd.DataFrame(out, columns=["config_id", "n", "joules_per_frame", "joules_per_frame_ci_pct", "wall_s",
                                      "wall_s_ci_pct", "state"])


def repetition_stats(frame: pd.DataFrame, metrics: Sequence[str], *, keys: Sequence[str],
                     confidence: float = 0.95) -> pd.DataFrame:
    """Per group of ``keys``: ``<m>_mean``, ``<m>_std``, ``<m>_ci_low``, ``<m>_ci_high`` and ``<m>_n``
    (values it had) for each metric, and ``n`` (rows in the group). Vectorised: one groupby, t values
    per distinct n."""
    keys = list(keys)
    grouped = frame.groupby(keys, dropna=False, sort=True)
    out = grouped.size().rename("n").reset_index()
    if not metrics:
        return out
    values = frame[list(metrics)].astype("float64")
    agg = values.groupby([frame[k] for k in keys], dropna=False, sort=True).agg(["mean", "std", "count"])
    agg = agg.reset_index(drop=True)
    columns: dict[str, np.ndarray] = {}
    for m in metrics:
        mean, std, count = agg[(m, "mean")], agg[(m, "std")], agg[(m, "count")].astype(int)
        # scipy's ppf once per distinct n, not once per group (10k groups: seconds vs milliseconds).
        table = {int(c): t_critical(int(c), confidence) for c in count.unique()}
        tvals = count.map(table).astype(float)
        half = tvals * std / np.sqrt(count.where(count > 0))
        columns[f"{m}_mean"] = mean.to_numpy()
        columns[f"{m}_std"] = std.to_numpy()
        columns[f"{m}_ci_low"] = (mean - half).to_numpy()
        columns[f"{m}_ci_high"] = (mean + half).to_numpy()
        columns[f"{m}_n"] = count.to_numpy()
    # All at once: a column at a time fragments the frame (pandas warns past 100).
    return pd.concat([out, pd.DataFrame(columns, index=out.index)], axis=1)


@dataclass(frozen=True)
class Welch:
    """Welch's unequal-variance t-test of ``a − b`` from two samples' summaries."""

    difference: float  # mean_a − mean_b
    ci: tuple[float, float]  # interval of the difference at the confidence asked
    t: float
    df: float
    p_value: float  # two-sided


def welch(a_mean: float, a_std: float, a_n: int, b_mean: float, b_std: float, b_n: int,
          confidence: float = 0.95) -> Welch | None:
    """Welch's t-test of two means from (mean, sample std, n); None when either has fewer than
    2 values (no variance to test against).

    Where both samples have no spread at all (a deterministic figure such as a CRF encode's
    bitrate, repeated exactly), any difference is certain (p = 0) and none is certainly none
    (p = 1): the test's limit as the variances go to zero.
    """
    if a_n < 2 or b_n < 2 or not all(np.isfinite(v) for v in (a_mean, a_std, b_mean, b_std)):
        return None
    difference = a_mean - b_mean
    va, vb = a_std ** 2 / a_n, b_std ** 2 / b_n
    se = float(np.sqrt(va + vb))
    if se == 0.0:
        return Welch(difference, (difference, difference), float("inf") if difference else 0.0, float("inf"),
                     0.0 if difference else 1.0)
    # Welch–Satterthwaite degrees of freedom.
    df = (va + vb) ** 2 / (va ** 2 / (a_n - 1) + vb ** 2 / (b_n - 1))
    t = difference / se
    p_value = float(2.0 * stdtr(df, -abs(t)))
    half = float(stdtrit(df, 0.5 + confidence / 2.0)) * se
    return Welch(difference, (difference - half, difference + half), t, float(df), p_value)


@dataclass(frozen=True)
class Comparison:
    """Whether two configurations differ on one metric, by Welch's t-test on their repetitions."""

    metric: str
    a_mean: float
    a_ci: tuple[float, float]
    b_mean: float
    b_ci: tuple[float, float]
    different: bool
    verdict: str  # "a lower", "a higher", "not different", or "cannot decide: <why>"
    test: Welch | None = None  # None when it cannot decide

    @property
    def change_pct(self) -> float:
        """(a − b) / |b| in percent: how much ``a`` differs, relative to ``b``."""
        return (self.a_mean - self.b_mean) / abs(self.b_mean) * 100.0 if self.b_mean else float("nan")

    @property
    def change_pct_ci(self) -> tuple[float, float]:
        """The interval of the difference relative to ``|b|`` (``b``'s mean taken as exact)."""
        if self.test is None or not self.b_mean:
            return float("nan"), float("nan")
        low, high = self.test.ci
        return low / abs(self.b_mean) * 100.0, high / abs(self.b_mean) * 100.0


def compare(a: pd.Series | dict[str, Any], b: pd.Series | dict[str, Any], metric: str, *,
            alpha: float = 0.05) -> Comparison:
    """Compare two rows of :func:`analysis.efficiency.config_efficiency` (or of
    :func:`repetition_stats`) on ``metric`` by Welch's two-sided t-test at level ``alpha``.

    Different when p < alpha. With fewer than 2 repetitions on either side there is no
    variance to test against: the verdict says it cannot decide, and ``different`` is False.
    """
    def _get(row: Any, suffix: str) -> float:
        value = row.get(f"{metric}{suffix}") if suffix else row.get(metric, row.get(f"{metric}_mean"))
        return float("nan") if is_missing(value) else float(value)

    def _n(row: Any) -> int:
        value = row.get(f"{metric}_n", row.get("n"))
        return 0 if is_missing(value) else int(value)

    a_mean, b_mean = _get(a, ""), _get(b, "")
    a_ci, b_ci = (_get(a, "_ci_low"), _get(a, "_ci_high")), (_get(b, "_ci_low"), _get(b, "_ci_high"))
    a_n, b_n = _n(a), _n(b)
    test = welch(a_mean, _get(a, "_std"), a_n, b_mean, _get(b, "_std"), b_n, 1.0 - alpha)
    if test is None:
        why = (f"cannot decide: {min(a_n, b_n)} repetition(s) with a {metric}, Welch's test needs 2 on each side"
               if np.isfinite(a_mean) and np.isfinite(b_mean) else f"cannot decide: no {metric} on one side")
        return Comparison(metric, a_mean, a_ci, b_mean, b_ci, False, why)
    if test.p_value >= alpha:
        return Comparison(metric, a_mean, a_ci, b_mean, b_ci, False, "not different", test)
    return Comparison(metric, a_mean, a_ci, b_mean, b_ci, True, "a lower" if test.difference < 0 else "a higher",
                      test)
