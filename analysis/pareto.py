"""Pareto fronts: the configurations no other one beats on every objective at once; and the convex hull
of rate against quality, the efficient frontier a per-title ladder's rungs are chosen on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_OBJECTIVES", "Direction", "pareto_front", "pareto_mask", "rate_quality_hull"]

Direction = Literal["min", "max"]
DEFAULT_OBJECTIVES: dict[str, Direction] = {"energy_j": "min", "vmaf": "max", "encode_fps": "max"}


def pareto_mask(values: np.ndarray, directions: Sequence[Direction]) -> np.ndarray:
    """True for the non-dominated rows of ``values`` (n × d). A row dominates another when it is
    at least as good on every objective and strictly better on one; exact ties both stay on the
    front. Rows with a NaN are never on it."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(directions):
        raise ValueError(f"values must be n × {len(directions)}")
    signs = np.array([1.0 if d == "max" else -1.0 for d in directions])  # everything to maximise
    finite = np.all(np.isfinite(x), axis=1)
    mask = np.zeros(len(x), dtype=bool)
    pts = x[finite] * signs
    if len(pts) == 0:
        return mask
    on_front = np.ones(len(pts), dtype=bool)
    chunk = max(1, 2_000_000 // max(len(pts), 1))  # bounds the n × chunk × d comparison in memory
    for start in range(0, len(pts), chunk):
        block = pts[start:start + chunk]  # the rows being tested
        ge = np.all(pts[None, :, :] >= block[:, None, :], axis=2)
        gt = np.any(pts[None, :, :] > block[:, None, :], axis=2)
        on_front[start:start + chunk] = ~np.any(ge & gt, axis=1)
    mask[np.flatnonzero(finite)] = on_front
    return mask


def pareto_front(frame: pd.DataFrame, objectives: Mapping[str, Direction] | None = None, *,
                 by: Sequence[str] = ("input_name",)) -> pd.DataFrame:
    """``frame`` with a boolean ``pareto`` column: non-dominated within each group of ``by``
    (per input by default; pass ``by=()`` for one front across everything). Objectives default
    to energy (min), VMAF (max) and speed (max); give two of them for a 2-D front."""
    objectives = dict(objectives or DEFAULT_OBJECTIVES)
    missing = [c for c in objectives if c not in frame.columns]
    if missing:
        raise KeyError(f"pareto objectives not in the frame: {missing}")
    out = frame.copy()
    values = out[list(objectives)].to_numpy(dtype=float)
    directions = list(objectives.values())
    mask = np.zeros(len(out), dtype=bool)
    # Group by position (ngroup), so a non-unique index can't mix groups up.
    codes = out.groupby(list(by), dropna=False, sort=False).ngroup().to_numpy() if by else np.zeros(len(out), int)
    for code in np.unique(codes):
        where = np.flatnonzero(codes == code)
        mask[where] = pareto_mask(values[where], directions)
    out["pareto"] = mask
    return out


def rate_quality_hull(rate: Sequence[float] | np.ndarray, quality: Sequence[float] | np.ndarray) -> np.ndarray:
    """Indices of the points on the upper convex hull of (rate, quality), by rising rate, from the lowest
    rate up to the highest quality: every point below it spends more bits for its quality than a mix of
    two hull points would (Netflix's per-title encoding picks rungs on this hull across resolutions).
    Rate is linear, as in rate–distortion theory. At equal rate only the best quality counts; points
    with a NaN are never on it."""
    x, y = np.asarray(rate, dtype=float), np.asarray(quality, dtype=float)
    usable = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    order = usable[np.lexsort((-y[usable], x[usable]))]  # by rate, the best quality first at equal rate
    hull: list[int] = []
    for i in order:
        if hull and x[hull[-1]] == x[i]:
            continue  # the same rate, lower quality
        # Drop the last point while it lies on or below the line from the one before it to this one.
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            if (x[a] - x[o]) * (y[i] - y[o]) - (y[a] - y[o]) * (x[i] - x[o]) >= 0:
                hull.pop()
            else:
                break
        hull.append(int(i))
    if not hull:
        return np.array([], dtype=int)
    top = int(np.argmax(y[hull]))  # past the best quality, more bits buy less: not on the frontier
    return np.array(hull[:top + 1], dtype=int)
