"""Bjøntegaard deltas: average differences between two rate–quality curves.

Both curves are fitted as ``log(rate) = f(quality)`` (for BD-rate) or
``quality = g(log(rate))`` (for BD-quality), and the fitted functions are integrated
over the interval where the curves overlap. Two fits are offered:

``method="cubic"``
    VCEG-M33 (Bjøntegaard, 2001): a least-squares cubic polynomial through the
    points (exact interpolation for the usual 4 points), integrated analytically.
    Can overshoot / become non-monotonic when points are unevenly spaced.

``method="pchip"`` (default)
    Piecewise cubic Hermite interpolation (PCHIP, Fritsch–Carlson), as adopted in
    VCEG-AL22 and the JCT-VC / JVET common test conditions spreadsheets. It is
    monotone between points and doesn't overshoot. Integrated exactly here
    (``PchipInterpolator.integrate``), not by trapezoids on samples.

BD-rate = ``exp(mean(log R_test - log R_anchor)) - 1`` in percent: negative means
the test curve needs fewer bits for the same quality. BD-energy is the same
computation with ``energy_j`` in place of the bitrate: % change in joules at equal
quality. Natural logs are used; the base cancels in the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy.interpolate import PchipInterpolator

from ffwatt.errors import NotComputable
from ffwatt.schema import CURVE_COLUMNS, config_label

__all__ = ["MIN_POINTS", "BDMethod", "bd_energy", "bd_quality", "bd_rate", "bd_table", "curve_label"]

BDMethod = Literal["cubic", "pchip"]
MIN_POINTS = 4  # a cubic needs 4; the CTCs use 4 rate points per curve


def _clean(rate: Sequence[float], quality: Sequence[float], name: str) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, dtype=float)
    q = np.asarray(quality, dtype=float)
    if r.shape != q.shape:
        raise NotComputable(f"{name}: {r.size} rates but {q.size} quality values")
    keep = np.isfinite(r) & np.isfinite(q)
    r, q = r[keep], q[keep]
    if r.size < MIN_POINTS:
        raise NotComputable(f"{name} has {r.size} usable points; BD needs at least {MIN_POINTS}")
    if np.any(r <= 0):
        raise NotComputable(f"{name} has a rate <= 0; BD works on log(rate)")
    return np.log(r), q


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: BDMethod) -> float:
    """Integral over [lo, hi] of the curve y(x) fitted through the points."""
    if method == "cubic":
        antiderivative = np.polyint(np.polyfit(x, y, 3))
        return float(np.polyval(antiderivative, hi) - np.polyval(antiderivative, lo))
    if method == "pchip":
        order = np.argsort(x)
        xs, ys = x[order], y[order]
        if np.any(np.diff(xs) == 0):
            raise NotComputable("two points share the same abscissa; PCHIP needs distinct values")
        return float(PchipInterpolator(xs, ys).integrate(lo, hi))
    raise ValueError(f"unknown BD method {method!r}; use 'cubic' or 'pchip'")


def _average_delta(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray,
                   method: BDMethod) -> float:
    lo, hi = max(x1.min(), x2.min()), min(x1.max(), x2.max())
    if hi <= lo:
        raise NotComputable("the two curves don't overlap; BD is only defined on their common range")
    return (_integral(x2, y2, lo, hi, method) - _integral(x1, y1, lo, hi, method)) / (hi - lo)


def bd_rate(anchor_rate: Sequence[float], anchor_quality: Sequence[float],
            test_rate: Sequence[float], test_quality: Sequence[float],
            *, method: BDMethod = "pchip") -> float:
    """Average % change in rate of ``test`` vs ``anchor`` at equal quality (negative = saves bits)."""
    log_r1, q1 = _clean(anchor_rate, anchor_quality, "anchor")
    log_r2, q2 = _clean(test_rate, test_quality, "test")
    return float((np.exp(_average_delta(q1, log_r1, q2, log_r2, method)) - 1.0) * 100.0)


def bd_energy(anchor_energy_j: Sequence[float], anchor_quality: Sequence[float],
              test_energy_j: Sequence[float], test_quality: Sequence[float],
              *, method: BDMethod = "pchip") -> float:
    """Average % change in joules of ``test`` vs ``anchor`` at equal quality (negative = saves energy).

    BD-rate's computation with ``log(energy_j)`` in place of ``log(bitrate)``.
    """
    return bd_rate(anchor_energy_j, anchor_quality, test_energy_j, test_quality, method=method)


def bd_quality(anchor_rate: Sequence[float], anchor_quality: Sequence[float],
               test_rate: Sequence[float], test_quality: Sequence[float],
               *, method: BDMethod = "pchip") -> float:
    """Average quality difference (test − anchor, e.g. dB for PSNR) at equal rate: BD-PSNR / BD-VMAF."""
    log_r1, q1 = _clean(anchor_rate, anchor_quality, "anchor")
    log_r2, q2 = _clean(test_rate, test_quality, "test")
    return _average_delta(log_r1, q1, log_r2, q2, method)


def curve_label(key: dict[str, object]) -> str:
    """A curve in words, e.g. ``libx264 veryfast crf``: its encoder setting, without input or size."""
    return config_label({k: key.get(k) for k in ("encoder", "preset", "rate_control")})


def bd_table(configs: pd.DataFrame, *, quality: str = "vmaf", rate: str = "bitrate_kbps",
             energy: str = "energy_j", anchor: str | None = None) -> pd.DataFrame:
    """BD figures between rate–quality curves of ``configs`` (per-configuration means, e.g. from
    :func:`analysis.efficiency.config_efficiency`), within each input and output size.

    A curve is an encoder/preset/rate-control family; its points are its configurations. The
    anchor is the curve whose label starts with ``anchor`` (an encoder name), else the first
    curve in sorted order; every other curve is compared to it. Rows that can't be computed
    (fewer than 4 points, no overlap) are kept with the reason in ``note``.
    """
    keys = [k for k in CURVE_COLUMNS if k in configs.columns]
    group_keys = [k for k in ("input_name", "output_width", "output_height") if k in keys]
    rows: list[dict[str, object]] = []
    has_energy = energy in configs.columns
    for group_value, group in configs.groupby(group_keys, dropna=False, sort=True):
        curves = []
        for curve_value, points in group.groupby(keys, dropna=False, sort=True):
            key = dict(zip(keys, curve_value))
            pts = points.dropna(subset=[rate, quality]).sort_values(rate)
            curves.append((curve_label(key), pts))
        if len(curves) < 2:
            continue
        anchor_idx = next((i for i, (label, _) in enumerate(curves) if anchor and label.startswith(anchor)), 0)
        a_label, a_pts = curves[anchor_idx]
        for label, pts in curves[:anchor_idx] + curves[anchor_idx + 1:]:
            row: dict[str, object] = dict(zip(group_keys, group_value if isinstance(group_value, tuple)
                                              else (group_value,)))
            row.update(anchor=a_label, test=label, quality=quality, n_anchor=len(a_pts), n_test=len(pts))
            estimated = False
            if "energy_estimated" in pts.columns:
                estimated = bool(pts["energy_estimated"].any() or a_pts["energy_estimated"].any())
            row["energy_estimated"] = estimated
            notes = []
            for name, fn, x in (("bd_rate_pct", bd_rate, rate), ("bd_quality", bd_quality, rate),
                                ("bd_energy_pct", bd_energy, energy)):
                for method in ("pchip", "cubic"):
                    column = name if method == "pchip" else f"{name}_cubic"
                    if x not in pts.columns:
                        row[column] = float("nan")
                        continue
                    try:
                        a = a_pts.dropna(subset=[x])
                        t = pts.dropna(subset=[x])
                        row[column] = fn(a[x], a[quality], t[x], t[quality], method=method)
                    except NotComputable as exc:
                        row[column] = float("nan")
                        if str(exc) not in notes:
                            notes.append(str(exc))
            if not has_energy:
                notes.append(f"no {energy} column")
            row["note"] = "; ".join(notes)
            rows.append(row)
    return pd.DataFrame(rows)
