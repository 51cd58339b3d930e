"""A power model: a node's average watts and a job's joules from what the job asks for.

Features: one-hot encoder, one-hot encoder/preset (a preset means something different
per encoder), log output pixels, log frame rate and log bitrate. Two ridge regressions
(closed form, numpy) share them:

* ``avg_power_w`` (energy_j / wall_s), linear, and
* ``log(joules_per_frame)``, so joules = exp(prediction) × frames (energy scales
  multiplicatively with pixels and preset effort).

The model is fitted on one node's (or one node kind's) rows; it knows nothing about
other hardware. It refuses to extrapolate: an encoder or preset it never saw, or a
resolution / fps / bitrate outside the fitted range, raises :class:`ExtrapolationError`
unless the caller passes ``allow_extrapolation=True``, and then the row says
``extrapolated=True`` and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.efficiency import job_efficiency
from ffwatt.errors import ExtrapolationError, NotComputable

__all__ = ["CVScore", "PowerModel", "fit_power_model"]

_NUMERIC_FEATURES = ("log_pixels", "log_fps", "log_bitrate")
_REQUIRED = ("encoder", "preset", "output_width", "output_height", "input_fps", "bitrate_kbps")


@dataclass(frozen=True)
class CVScore:
    """k-fold cross-validated error of one target."""

    target: str
    folds: int
    mape_pct: float
    rmse: float
    unit: str


def _features(frame: pd.DataFrame) -> pd.DataFrame:
    preset = frame["preset"].astype(object).where(frame["preset"].notna(), "default").astype(str)
    return pd.DataFrame({
        "encoder": frame["encoder"].astype(str).to_numpy(),
        "encoder_preset": (frame["encoder"].astype(str) + "/" + preset).to_numpy(),
        "log_pixels": np.log(frame["output_width"].astype(float) * frame["output_height"].astype(float)).to_numpy(),
        "log_fps": np.log(frame["input_fps"].astype(float)).to_numpy(),
        "log_bitrate": np.log(frame["bitrate_kbps"].astype(float)).to_numpy(),
    })


def _design(feats: pd.DataFrame, encoders: Sequence[str], presets: Sequence[str],
            mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    num = (feats[list(_NUMERIC_FEATURES)].to_numpy(dtype=float) - mean) / scale
    enc = (feats["encoder"].to_numpy()[:, None] == np.asarray(encoders)[None, :]).astype(float)
    pre = (feats["encoder_preset"].to_numpy()[:, None] == np.asarray(presets)[None, :]).astype(float)
    return np.hstack([np.ones((len(feats), 1)), num, enc, pre])


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    penalty = alpha * np.eye(x.shape[1])
    penalty[0, 0] = 0.0  # the intercept isn't shrunk
    return np.linalg.solve(x.T @ x + penalty, x.T @ y)


@dataclass(frozen=True)
class _Fit:
    encoders: tuple[str, ...]
    presets: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef_watts: np.ndarray
    coef_log_jpf: np.ndarray


def _fit(feats: pd.DataFrame, watts: np.ndarray, log_jpf: np.ndarray, alpha: float) -> _Fit:
    num = feats[list(_NUMERIC_FEATURES)].to_numpy(dtype=float)
    mean, scale = num.mean(axis=0), num.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)  # a constant feature (one resolution) stays 0 after centring
    encoders = tuple(sorted(feats["encoder"].unique()))
    presets = tuple(sorted(feats["encoder_preset"].unique()))
    x = _design(feats, encoders, presets, mean, scale)
    return _Fit(encoders, presets, mean, scale, _ridge(x, watts, alpha), _ridge(x, log_jpf, alpha))


def _predict(fit: _Fit, feats: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    x = _design(feats, fit.encoders, fit.presets, fit.mean, fit.scale)
    return x @ fit.coef_watts, x @ fit.coef_log_jpf


@dataclass(frozen=True)
class PowerModel:
    """A fitted power model. Build with :func:`fit_power_model`; use :meth:`predict`."""

    _fit: _Fit = field(repr=False)
    alpha: float
    n_rows: int
    encoder_presets: tuple[str, ...]
    ranges: dict[str, tuple[float, float]]  # fitted range of output_pixels, input_fps, bitrate_kbps
    cv: tuple[CVScore, ...]
    energy_estimated: bool  # some training energy was estimated, not measured
    nodes: tuple[str, ...]

    def coefficients(self) -> pd.DataFrame:
        """Coefficients of both targets (numeric features are standardised)."""
        names = ["intercept", *_NUMERIC_FEATURES, *(f"encoder={e}" for e in self._fit.encoders),
                 *(f"preset={p}" for p in self._fit.presets)]
        return pd.DataFrame({"feature": names, "avg_power_w": self._fit.coef_watts,
                             "log_joules_per_frame": self._fit.coef_log_jpf})

    def _why_outside(self, feats: pd.DataFrame, raw: pd.DataFrame) -> list[str]:
        reasons = []
        seen_encoders = set(self._fit.encoders)
        for i in range(len(feats)):
            why = []
            if feats["encoder"].iat[i] not in seen_encoders:
                why.append(f"encoder {feats['encoder'].iat[i]!r} never seen")
            elif feats["encoder_preset"].iat[i] not in self._fit.presets:
                why.append(f"preset {feats['encoder_preset'].iat[i]!r} never seen")
            for name, value in (("output_pixels", raw["output_width"].iat[i] * raw["output_height"].iat[i]),
                                ("input_fps", raw["input_fps"].iat[i]),
                                ("bitrate_kbps", raw["bitrate_kbps"].iat[i])):
                lo, hi = self.ranges[name]
                if not lo <= float(value) <= hi:
                    why.append(f"{name}={float(value):g} outside fitted [{lo:g}, {hi:g}]")
            reasons.append("; ".join(why))
        return reasons

    def predict(self, jobs: pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]], *,
                allow_extrapolation: bool = False) -> pd.DataFrame:
        """Predicted ``avg_power_w``, ``joules_per_frame`` and (when ``frames`` is given) ``energy_j``.

        ``jobs`` needs encoder, preset, output_width, output_height, input_fps, bitrate_kbps.
        Outside the fitted data it raises :class:`ExtrapolationError`; with
        ``allow_extrapolation=True`` it predicts anyway and flags the rows
        (``extrapolated``, ``extrapolation_reason``).
        """
        raw = pd.DataFrame([jobs]) if isinstance(jobs, Mapping) else pd.DataFrame(jobs).reset_index(drop=True)
        missing = [c for c in _REQUIRED if c not in raw.columns]
        if missing:
            raise ValueError(f"power model input lacks {missing}")
        feats = _features(raw)
        reasons = self._why_outside(feats, raw)
        outside = [r for r in reasons if r]
        if outside and not allow_extrapolation:
            raise ExtrapolationError(
                f"refusing to extrapolate for {len(outside)} row(s): {outside[0]}"
                " (pass allow_extrapolation=True to predict anyway, flagged)")
        watts, log_jpf = _predict(self._fit, feats)
        out = pd.DataFrame({"avg_power_w": watts, "joules_per_frame": np.exp(log_jpf)})
        if "frames" in raw.columns:
            out["energy_j"] = out["joules_per_frame"] * raw["frames"].astype(float)
        out["extrapolated"] = [bool(r) for r in reasons]
        out["extrapolation_reason"] = reasons
        out["energy_estimated"] = self.energy_estimated
        return out


def _cv(feats: pd.DataFrame, watts: np.ndarray, log_jpf: np.ndarray, alpha: float, k: int,
        seed: int) -> tuple[CVScore, ...]:
    n = len(feats)
    folds = min(k, n)
    order = np.random.default_rng(seed).permutation(n)
    pred_w, pred_j = np.full(n, np.nan), np.full(n, np.nan)
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        fit = _fit(feats.iloc[train], watts[train], log_jpf[train], alpha)
        # A fold may hold a preset its training part lacks; the one-hot is then all zeros,
        # i.e. the encoder's average: that is the honest out-of-sample error.
        pred_w[test], pred_j[test] = _predict(fit, feats.iloc[test])
    jpf, pj = np.exp(log_jpf), np.exp(pred_j)
    return (
        CVScore("avg_power_w", folds, float(np.mean(np.abs(pred_w - watts) / watts) * 100),
                float(np.sqrt(np.mean((pred_w - watts) ** 2))), "W"),
        CVScore("joules_per_frame", folds, float(np.mean(np.abs(pj - jpf) / jpf) * 100),
                float(np.sqrt(np.mean((pj - jpf) ** 2))), "J/frame"),
    )


def fit_power_model(frame: pd.DataFrame, *, alpha: float = 1.0, k: int = 5, seed: int = 0,
                    exclude_estimated: bool = False) -> PowerModel:
    """Fit on the ok rows of ``frame`` that have energy, wall time and the features; report
    k-fold CV error. ``exclude_estimated`` drops rows whose energy was estimated (an estimate
    from busy CPU time × an assumed power model only teaches the model that assumption)."""
    jobs = frame if "avg_power_w" in frame.columns else job_efficiency(frame)
    usable = jobs[(jobs["status"] == "ok") if "status" in jobs.columns else slice(None)]
    if exclude_estimated:
        usable = usable[~usable["energy_estimated"]]
    need = ["avg_power_w", "joules_per_frame", "output_width", "output_height", "input_fps", "bitrate_kbps"]
    usable = usable.dropna(subset=need)
    usable = usable[(usable[need] > 0).all(axis=1)].reset_index(drop=True)
    if len(usable) < 3:
        raise NotComputable(f"power model needs at least 3 ok jobs with energy; got {len(usable)}")
    feats = _features(usable)
    watts = usable["avg_power_w"].to_numpy(dtype=float)
    log_jpf = np.log(usable["joules_per_frame"].to_numpy(dtype=float))
    pixels = usable["output_width"] * usable["output_height"]
    ranges = {name: (float(col.min()), float(col.max())) for name, col in
              (("output_pixels", pixels), ("input_fps", usable["input_fps"]),
               ("bitrate_kbps", usable["bitrate_kbps"]))}
    fit = _fit(feats, watts, log_jpf, alpha)
    return PowerModel(
        _fit=fit, alpha=alpha, n_rows=len(usable), encoder_presets=fit.presets, ranges=ranges,
        cv=_cv(feats, watts, log_jpf, alpha, k, seed),
        energy_estimated=bool(usable["energy_estimated"].any()),
        nodes=tuple(sorted(usable["node"].astype(str).unique())) if "node" in usable.columns else (),
    )
