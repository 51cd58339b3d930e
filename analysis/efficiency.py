"""Efficiency figures per job and per configuration.

Every figure that depends on ``energy_j`` inherits its provenance: a job whose
``energy_source`` has an estimated part (``estimated``, ``estimated+nvml``) has
``energy_estimated=True`` (:func:`ffwatt.schema.is_estimated`), and a configuration
is ``energy_estimated`` when ANY of its repetitions was, with ``energy_sources``
listing what was mixed ("estimated", "rapl", "rapl+estimated").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.stats import repetition_stats
from ffwatt.schema import CONFIG_COLUMNS, is_estimated

__all__ = [
    "EFFICIENCY_METRICS",
    "config_efficiency",
    "job_efficiency",
]

# The quality figures beyond the means: each metric's low end over its frames, the other VMAF models.
_LOW_END = ("psnr_min", "psnr_p1", "psnr_p5", "ssim_min", "ssim_p1", "ssim_p5", "vmaf_hmean", "vmaf_min", "vmaf_p1",
            "vmaf_p5", "vmaf_neg", "vmaf_phone")
# Per-job figures summarised per configuration (those absent in a frame are skipped).
EFFICIENCY_METRICS: tuple[str, ...] = (
    "wall_s", "encode_fps", "bitrate_kbps", "psnr", "ssim", "vmaf", *_LOW_END, "energy_j", "net_energy_j",
    "joules_per_frame", "frames_per_joule", "pixels_per_joule", "avg_power_w", "net_power_w",
    "vmaf_per_joule", "qoe_pixels_per_joule", "kbps_per_watt", "cost_per_video_hour",
    "co2_g_per_video_hour", "gpu_energy_j",
)

_NUMERIC = (
    "input_width", "input_height", "input_fps", "input_frames", "crf", "qp", "target_bitrate_kbps",
    "output_width", "output_height", "wall_s", "cpu_user_s", "cpu_sys_s", "frames", "encode_fps",
    "bitrate_kbps", "output_bytes", "psnr", "ssim", "vmaf", *_LOW_END, "energy_j", "joules_per_frame",
    "idle_power_w", "net_energy_j", "attributed_energy_j", "avg_power_w", "cost", "co2_g",
    "gpu_energy_j",
)
_MEASURES = ("wall_s", "cpu_user_s", "cpu_sys_s", "frames", "encode_fps", "bitrate_kbps", "output_bytes",
             "psnr", "ssim", "vmaf", *_LOW_END, "energy_j", "joules_per_frame", "idle_power_w", "net_energy_j",
             "attributed_energy_j", "avg_power_w", "cost", "co2_g", "gpu_energy_j")


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    """num / den, NaN where den is 0 or missing (a zero-joule job is a broken reading, not infinity)."""
    den = den.where(den > 0)
    return num / den


def job_efficiency(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with float measures and the per-job efficiency columns added.

    Added: ``joules_per_frame`` (filled where missing), ``frames_per_joule``, ``output_pixels``
    (width × height × frames), ``pixels_per_joule``, ``avg_power_w`` (energy_j / wall_s),
    ``net_power_w`` (net_energy_j / wall_s, else avg_power_w − idle_power_w, when either exists),
    ``vmaf_per_joule``, ``qoe_pixels_per_joule`` (pixels × VMAF/100 per joule), ``kbps_per_watt``,
    ``video_hours`` (frames / input_fps / 3600), ``cost_per_video_hour`` and
    ``co2_g_per_video_hour`` (when cost / co2_g exist) and ``energy_estimated``.
    Columns that can't be computed from what the frame has are left out.
    """
    out = frame.copy()
    for column in _NUMERIC:
        if column in out.columns:
            # Nullable Int64/Float64 -> float64 with NaN, so numpy and matplotlib take them as they are.
            out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    if "status" in out.columns:
        # A failed job's partial measurements must not leak into any efficiency figure.
        failed = out["status"] != "ok"
        for column in _MEASURES:
            if column in out.columns:
                out.loc[failed, column] = np.nan

    has = set(out.columns)
    if {"energy_j", "frames"} <= has:
        computed = _ratio(out["energy_j"], out["frames"])
        out["joules_per_frame"] = out["joules_per_frame"].fillna(computed) if "joules_per_frame" in has \
            else computed
        out["frames_per_joule"] = _ratio(out["frames"], out["energy_j"])
    if {"output_width", "output_height", "frames"} <= has:
        out["output_pixels"] = out["output_width"] * out["output_height"] * out["frames"]
        if "energy_j" in has:
            out["pixels_per_joule"] = _ratio(out["output_pixels"], out["energy_j"])
            if "vmaf" in has:
                out["qoe_pixels_per_joule"] = _ratio(out["output_pixels"] * out["vmaf"] / 100.0,
                                                     out["energy_j"])
    if {"energy_j", "wall_s"} <= has:
        # The row's own figure is over the meter's window; jobs without one get energy over wall time.
        computed = _ratio(out["energy_j"], out["wall_s"])
        out["avg_power_w"] = out["avg_power_w"].fillna(computed) if "avg_power_w" in has else computed
        if "net_energy_j" in has:
            out["net_power_w"] = _ratio(out["net_energy_j"], out["wall_s"])
            if "idle_power_w" in has:
                out["net_power_w"] = out["net_power_w"].fillna(out["avg_power_w"] - out["idle_power_w"])
        elif "idle_power_w" in has:
            out["net_power_w"] = out["avg_power_w"] - out["idle_power_w"]
        if "bitrate_kbps" in has:
            out["kbps_per_watt"] = _ratio(out["bitrate_kbps"], out["avg_power_w"])
    if {"vmaf", "energy_j"} <= has:
        out["vmaf_per_joule"] = _ratio(out["vmaf"], out["energy_j"])
    if {"frames", "input_fps"} <= has:
        # Output has the input's frame rate (ffwatt doesn't resample time).
        out["video_hours"] = _ratio(out["frames"], out["input_fps"]) / 3600.0
        if "cost" in has:
            out["cost_per_video_hour"] = _ratio(out["cost"], out["video_hours"])
        if "co2_g" in has:
            out["co2_g_per_video_hour"] = _ratio(out["co2_g"], out["video_hours"])
    source = out["energy_source"] if "energy_source" in has else pd.Series(None, index=out.index, dtype=object)
    # One call of the predicate per distinct source, not per row.
    out["energy_estimated"] = source.map({value: is_estimated(value) for value in source.dropna().unique()}
                                         ).fillna(False).astype(bool)
    return out


def config_efficiency(frame: pd.DataFrame, *, by: Sequence[str] = ("node",),
                      metrics: Sequence[str] = EFFICIENCY_METRICS, confidence: float = 0.95) -> pd.DataFrame:
    """One row per configuration (× ``by``, the node by default): each metric's mean over the ok
    repetitions under its own name, plus ``<metric>_std``, ``<metric>_ci_low``/``_ci_high`` and
    ``n`` (ok repetitions), ``n_failed``, ``energy_estimated`` and ``energy_sources``.

    ``frame`` may be raw job rows or the output of :func:`job_efficiency`.
    """
    jobs = frame if "energy_estimated" in frame.columns else job_efficiency(frame)
    if "kind" in jobs.columns:  # a run's control encodes (read with controls=True) measure the node: no configuration
        jobs = jobs[jobs["kind"] != "control"]
    # A density step's copies at once is part of its configuration (and of its id): carried, so it is named.
    keys = list(dict.fromkeys(k for k in ("config_id", *CONFIG_COLUMNS, "concurrency", *by) if k in jobs.columns))
    ok = jobs[jobs["status"] == "ok"] if "status" in jobs.columns else jobs
    present = [m for m in metrics if m in jobs.columns]
    stats = repetition_stats(ok, present, keys=keys, confidence=confidence)
    stats = stats.rename(columns={f"{m}_mean": m for m in present})
    # Provenance per configuration, vectorised: one "any" per distinct energy_source value.
    source = ok["energy_source"] if "energy_source" in ok.columns else pd.Series(None, index=ok.index, dtype=object)
    names = sorted(str(v) for v in source.dropna().unique() if str(v))
    flags = pd.DataFrame({name: (source == name).fillna(False).to_numpy() for name in names}, index=ok.index)
    flags["energy_estimated"] = ok["energy_estimated"].to_numpy()
    labels = flags.groupby([ok[k] for k in keys], dropna=False, sort=True).any().reset_index()
    labels["energy_sources"] = ""
    for name in names:
        labels["energy_sources"] = labels["energy_sources"].where(
            ~labels[name], labels["energy_sources"] + "+" + name)
    labels["energy_sources"] = labels["energy_sources"].str.lstrip("+")
    labels = labels.drop(columns=names)
    out = stats.merge(labels, on=keys, how="left")
    if "status" in jobs.columns:
        failed = jobs[jobs["status"] != "ok"].groupby(keys, dropna=False).size().rename("n_failed").reset_index()
        out = out.merge(failed, on=keys, how="outer") if not failed.empty else out.assign(n_failed=0)
        out["n_failed"] = out["n_failed"].fillna(0).astype(int)
        out["n"] = out["n"].fillna(0).astype(int)
        out["energy_estimated"] = out["energy_estimated"].fillna(False).astype(bool)
        out["energy_sources"] = out["energy_sources"].fillna("")
    order = list(dict.fromkeys(k for k in (*CONFIG_COLUMNS, "concurrency", *by, "config_id") if k in out.columns))
    return out.sort_values(order, na_position="last").reset_index(drop=True)
