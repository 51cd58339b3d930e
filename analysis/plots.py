"""Figures for the report and notebooks, drawn on matplotlib's Agg canvas.

Functions return a :class:`matplotlib.figure.Figure` built without pyplot, so nothing
here changes the caller's backend (a notebook keeps its inline display). Points whose
energy was estimated are drawn hollow and labelled "(estimated)".
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from analysis.bd import curve_label
from analysis.live import SWEEP_KEYS
from ffwatt.schema import config_label

__all__ = [
    "density_plot",
    "efficiency_bars",
    "figure_png",
    "history_plot",
    "ladder_plot",
    "live_sweep_plot",
    "node_timeline_plot",
    "pareto_plot",
    "png_base64",
    "power_fit_plot",
    "power_plot",
    "quality_power_plot",
    "rate_quality_plot",
]


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def png_base64(fig: Figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI, for a self-contained HTML file."""
    return "data:image/png;base64," + base64.b64encode(figure_png(fig)).decode("ascii")


def _new(width: float = 7.5, height: float = 4.5) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot(1, 1, 1)


def efficiency_bars(configs: pd.DataFrame, metric: str, *, title: str, unit: str) -> Figure:
    """Horizontal bars of ``metric`` per configuration with 95 % CI whiskers; estimated hatched."""
    data = configs.dropna(subset=[metric]).sort_values(metric)
    fig, ax = _new(7.5, max(2.5, 0.3 * len(data) + 1.2))
    labels = [config_label(r) + (" (estimated)" if r.get("energy_estimated") else "") for _, r in data.iterrows()]
    y = np.arange(len(data))
    low, high = data.get(f"{metric}_ci_low"), data.get(f"{metric}_ci_high")
    err = None
    if low is not None and high is not None:
        err = np.vstack([(data[metric] - low).clip(lower=0).fillna(0), (high - data[metric]).clip(lower=0).fillna(0)])
    bars = ax.barh(y, data[metric], xerr=err, color="#4c78a8", capsize=3)
    for bar, estimated in zip(bars, data.get("energy_estimated", pd.Series(False, index=data.index))):
        if estimated:
            bar.set_hatch("//")
            bar.set_facecolor("#c7d7ea")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel(f"{metric} ({unit})")
    ax.set_title(title)
    return fig


def pareto_plot(configs: pd.DataFrame, x: str, y: str, *, front: str = "pareto", title: str,
                color: str | None = None) -> Figure:
    """Scatter of ``y`` against ``x`` per encoder; the points flagged ``front`` are joined by a line."""
    fig, ax = _new()
    for encoder, group in configs.groupby("encoder", sort=True):
        est = group.get("energy_estimated", pd.Series(False, index=group.index)).astype(bool)
        scatter = ax.scatter(group.loc[~est, x], group.loc[~est, y], label=str(encoder), s=30)
        if est.any():
            ax.scatter(group.loc[est, x], group.loc[est, y], s=30, facecolors="none",
                       edgecolors=scatter.get_facecolor()[0] if len(group.loc[~est]) else "C0",
                       label=f"{encoder} (estimated)")
    if front in configs.columns:
        on = configs[configs[front]].sort_values(x)
        ax.plot(on[x], on[y], "k--", lw=1, label="Pareto front")
    if color and color in configs.columns:
        ax.set_title(f"{title} (front uses {color} too)")
    else:
        ax.set_title(title)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(fontsize=7)
    return fig


def rate_quality_plot(configs: pd.DataFrame, x: str, y: str, *, curve_keys: Sequence[str], title: str,
                      log_x: bool = True) -> Figure:
    """One line per curve (encoder/preset/rate control): ``y`` against ``x`` (log axis)."""
    fig, ax = _new()
    keys = [k for k in curve_keys if k in configs.columns]
    for value, group in configs.dropna(subset=[x, y]).groupby(keys, dropna=False, sort=True):
        label = curve_label(dict(zip(keys, value)))
        if "energy_estimated" in group.columns and group["energy_estimated"].any() and "energy" in x:
            label += " (estimated)"
        g = group.sort_values(x)
        ax.plot(g[x], g[y], marker="o", label=label)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return fig


def power_fit_plot(measured: pd.Series, predicted: pd.Series, *, title: str, unit: str) -> Figure:
    """Predicted against measured, with the identity line."""
    fig, ax = _new(5, 4.5)
    ax.scatter(measured, predicted, s=20)
    lo = float(np.nanmin([measured.min(), predicted.min()]))
    hi = float(np.nanmax([measured.max(), predicted.max()]))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(f"measured ({unit})")
    ax.set_ylabel(f"predicted ({unit})")
    ax.set_title(title)
    return fig


def history_plot(history: pd.DataFrame, metric: str, *, title: str, unit: str) -> Figure:
    """``metric`` of each configuration (× node) over its runs' start times, with 95 % CI whiskers;
    configurations with estimated energy are drawn dashed and labelled so."""
    fig, ax = _new(9, 5)
    data = history.dropna(subset=[metric, "started_at"])
    for (config, node), group in data.groupby(["config", "node"], sort=True):
        g = group.sort_values("started_at")
        low, high = g.get(f"{metric}_ci_low"), g.get(f"{metric}_ci_high")
        err = None
        if low is not None and high is not None:
            err = np.vstack([(g[metric] - low).clip(lower=0).fillna(0), (high - g[metric]).clip(lower=0).fillna(0)])
        estimated = bool(g.get("energy_estimated", pd.Series(False, index=g.index)).any())
        label = f"{config} on {node}" + (" (estimated)" if estimated else "")
        ax.errorbar(g["started_at"].dt.tz_convert(None), g[metric], yerr=err, marker="o", capsize=3,
                    linestyle="--" if estimated else "-", label=label)
    ax.set_ylabel(f"{metric} ({unit})")
    ax.set_xlabel("run start (UTC)")
    ax.set_title(title)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.autofmt_xdate()
    return fig


_PART_STYLE = {("cpu", False): "-", ("cpu", True): "--", ("gpu", False): ":"}


def _power_lines(ax: Any, power: pd.DataFrame, *, x: str, color: Any, label: str | None) -> None:
    """A job's power parts as lines: CPU measured solid, CPU estimated dashed, GPU dotted."""
    for (part, estimated), line in power.groupby(["part", "estimated"], sort=True):
        words = f"{label}: {part.upper()}" + (" (estimated)" if estimated else "") if label else None
        ax.plot(line[x], line["watts"], _PART_STYLE.get((part, bool(estimated)), "-"), color=color, lw=1.2,
                label=words)


def power_plot(power: pd.DataFrame, *, by: str, title: str, most: int = 24) -> Figure:
    """Watts against seconds since each job's encode began (0), from its series: one line per job
    (``by="job"``), or a panel per configuration with a line per repetition (``by="config"``, at most
    ``most`` panels). CPU and GPU, measured and estimated, are drawn apart, never summed."""
    data = power.assign(config=[config_label(r) for _, r in power.iterrows()]) if by == "config" else power
    if by == "job":
        fig, ax = _new(8, 4.5)
        for i, (job_id, job) in enumerate(data.groupby("job_id", sort=False)):
            name = config_label(job.iloc[0]) + f" #{job['repetition'].iloc[0]}" if "encoder" in job else str(job_id)
            _power_lines(ax, job, x="t_s", color=f"C{i % 10}", label=name)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel("seconds since the encode began")
        ax.set_ylabel("W")
        ax.set_title(title)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return fig
    configs = list(dict.fromkeys(data["config"]))[:most]
    columns = min(3, len(configs))
    rows = -(-len(configs) // columns)
    fig = Figure(figsize=(4 * columns, 2.6 * rows + 0.6))
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True)
    for ax, config in zip(axes.flat, configs):
        for i, (_, job) in enumerate(data[data["config"] == config].groupby("job_id", sort=False)):
            _power_lines(ax, job, x="t_s", color=f"C{i % 10}", label=None if i else "rep 1")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(config, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(configs):]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: a line per repetition (solid: CPU measured, dashed: CPU estimated, dotted: GPU); "
                 "x: seconds since the encode began", fontsize=9)
    fig.tight_layout()
    return fig


def node_timeline_plot(power: pd.DataFrame, jobs: pd.DataFrame, *, title: str) -> Figure:
    """Per node, its jobs on the wall clock: each job's encode shaded (coloured by encoder) under the
    node's power over the job's window; CPU and GPU, measured and estimated, apart."""
    nodes = sorted(jobs["node"].dropna().unique())
    fig = Figure(figsize=(10, 2.4 * max(1, len(nodes)) + 0.6))
    axes = fig.subplots(max(1, len(nodes)), 1, squeeze=False, sharex=True)[:, 0]
    encoders = sorted(jobs["encoder"].dropna().unique())
    colors = {encoder: f"C{i % 10}" for i, encoder in enumerate(encoders)}
    for ax, node in zip(axes, nodes):
        mine = jobs[(jobs["node"] == node) & jobs["started_at"].notna()]
        for _, job in mine.iterrows():
            ax.axvspan(job["started_at"].tz_convert(None), job["ended_at"].tz_convert(None),
                       color=colors.get(job["encoder"], "grey"), alpha=0.25, lw=0)
        for _, job in power[power["node"] == node].groupby("job_id", sort=False):
            at = job.assign(clock=job["timestamp"].dt.tz_convert(None))
            _power_lines(ax, at, x="clock", color="k", label=None)
        ax.set_ylabel(f"{node}\nW", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = [Patch(color=colors[e], alpha=0.4, label=e) for e in encoders]
    axes[0].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1].set_xlabel("UTC")
    axes[0].set_title(f"{title} (shaded: encodes; solid: CPU measured, dashed: estimated, dotted: GPU)", fontsize=9)
    fig.autofmt_xdate()
    return fig


def _n_axes(axes: Sequence[Any], ns: pd.Series, label: str) -> None:
    """A sweep's x axes: N on a base-2 log scale, a tick at every N measured."""
    ticks = sorted({int(n) for n in ns})
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(n) for n in ticks])
        ax.set_xlabel(label)
        ax.legend(fontsize=7)


def live_sweep_plot(steps: pd.DataFrame, *, title: str, tolerance: float = 0.0) -> Figure:
    """Live sweeps (rows of :func:`analysis.live.live_steps`): streams at once against the lowest
    speed (left, with the real-time line) and against watts per stream (right). A step that didn't
    hold real time is drawn with an x; estimated watts hollow and labelled so."""
    fig = Figure(figsize=(11, 4.5))
    speed_ax, watts_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    keys = [k for k in SWEEP_KEYS if k in steps.columns]
    for index, (key, unsorted) in enumerate(steps.groupby(keys, sort=True)):
        sweep = unsorted.sort_values("live_streams")
        color = f"C{index % 10}"
        label = " ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        held = sweep["held"].astype(bool)
        speed_ax.plot(sweep["live_streams"], sweep["speed"], color=color, label=label)
        speed_ax.scatter(sweep.loc[held, "live_streams"], sweep.loc[held, "speed"], color=color, s=30)
        speed_ax.scatter(sweep.loc[~held, "live_streams"], sweep.loc[~held, "speed"], color=color, marker="x", s=40)
        estimated = bool(sweep["energy_estimated"].any())
        watts_ax.plot(sweep["live_streams"], sweep["live_watts_per_stream"], color=color, marker="o",
                      markerfacecolor="none" if estimated else color,
                      label=label + (" (estimated)" if estimated else ""))
    speed_ax.axhline(1.0 - tolerance, color="k", linestyle="--", linewidth=1, label="real time")
    _n_axes((speed_ax, watts_ax), steps["live_streams"], "streams at once")
    speed_ax.set_ylabel("lowest speed (x)")
    speed_ax.set_title("Speed (x = real time not held)")
    watts_ax.set_ylabel("W per stream (above idle)")
    watts_ax.set_title("Watts per stream")
    fig.suptitle(title)
    return fig


def quality_power_plot(frames: pd.DataFrame, power: pd.DataFrame, *, title: str, metric: str = "vmaf",
                       low: float | None = None) -> Figure:
    """One job's per-frame ``metric`` (left axis, each frame at its ``t_s``) and its node's 1 Hz power
    (right axis, CPU measured solid, estimated dashed, GPU dotted) on one time axis: seconds since the
    encode began, the encode shaded. ``low``: the row's 5th percentile, drawn as a line."""
    fig, ax = _new(10, 4.5)
    watts = ax.twinx()
    if not power.empty:
        _power_lines(watts, power.sort_values("t_s"), x="t_s", color="C3", label="power")
        watts.scatter(power["t_s"], power["watts"], color="C3", s=8)
    # From zero: a flat draw mustn't look like a swing.
    watts.set_ylim(0, 1.15 * float(power["watts"].max()) if not power.empty else None)
    watts.set_ylabel("W (1 Hz samples)", color="C3")
    watts.tick_params(axis="y", colors="C3")
    data = frames.sort_values("t_s")
    ax.plot(data["t_s"], data[metric], color="C0", lw=1, label=f"{metric} per frame")
    if low is not None:
        ax.axhline(low, color="C0", linestyle=":", lw=1, label=f"{metric} 5th percentile ({low:.1f})")
    if "wall_s" in data.columns and data["wall_s"].notna().any():
        ax.axvspan(0, float(data["wall_s"].iloc[0]), color="grey", alpha=0.12, lw=0, label="encode")
    ax.set_zorder(watts.get_zorder() + 1)  # frames over watts, the legend over both
    ax.patch.set_visible(False)
    ax.set_xlabel("seconds since the encode began (frames placed by pts over the encode)")
    ax.set_ylabel(metric, color="C0")
    ax.tick_params(axis="y", colors="C0")
    handles, labels = ax.get_legend_handles_labels()
    more, words = watts.get_legend_handles_labels()
    ax.legend(handles + more, labels + words, fontsize=7, loc="lower left")
    ax.set_title(title, fontsize=10)
    return fig


def density_plot(steps: pd.DataFrame, outcomes: pd.DataFrame, *, title: str) -> Figure:
    """Density sweeps (rows of :func:`analysis.density.density_steps`): copies at once against aggregate
    frames/s (left, with 95 % whiskers) and against J/frame (right); the knee marked by a dotted line,
    steps reached by bisection drawn as diamonds, estimated energy hollow and labelled so."""
    fig = Figure(figsize=(11, 4.5))
    fps_ax, jpf_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    measured = steps[steps["n"] > 0]
    for index, ((node, sweep_id), unsorted) in enumerate(measured.groupby(["node", "density_sweep_id"], sort=True)):
        sweep = unsorted.sort_values("concurrency")
        color = f"C{index % 10}"
        estimated = bool(sweep["energy_estimated"].any())
        label = f"{sweep['config'].iloc[0]} on {node}"
        for ax, metric in ((fps_ax, "encode_fps"), (jpf_ax, "joules_per_frame")):
            low, high = sweep[f"{metric}_ci_low"], sweep[f"{metric}_ci_high"]
            err = np.vstack([(sweep[metric] - low).clip(lower=0).fillna(0),
                             (high - sweep[metric]).clip(lower=0).fillna(0)])
            hollow = estimated and metric == "joules_per_frame"
            ax.errorbar(sweep["concurrency"], sweep[metric], yerr=err, color=color, capsize=3, marker="none",
                        label=label + (" (estimated)" if hollow else ""))
            for bisected, marker in ((False, "o"), (True, "D")):
                some = sweep[(sweep["phase"] == "bisection") == bisected]
                ax.scatter(some["concurrency"], some[metric], color=color, marker=marker, s=36,
                           facecolors="none" if hollow else color)
        knee = outcomes[(outcomes["node"] == node) & (outcomes["density_sweep_id"] == sweep_id)]["knee"]
        if not knee.empty and pd.notna(knee.iloc[0]):
            for ax in (fps_ax, jpf_ax):
                ax.axvline(float(knee.iloc[0]), color=color, linestyle=":", linewidth=1.2)
    _n_axes((fps_ax, jpf_ax), measured["concurrency"], "copies at once")
    fps_ax.set_ylabel("aggregate frames/s")
    fps_ax.set_title("Throughput")
    jpf_ax.set_ylabel("J/frame (the node's, per frame of every copy)")
    jpf_ax.set_title("Energy per frame")
    fig.suptitle(f"{title} (diamonds: reached by bisection; dotted: the knee)")
    return fig


def ladder_plot(points: pd.DataFrame, hull: pd.DataFrame, rungs: pd.DataFrame, *, title: str) -> Figure:
    """Every encode of one input as bitrate against VMAF, a colour per output size, the convex hull as a
    dashed line, and the ladder's rungs ringed and numbered."""
    fig, ax = _new(8, 5)
    for index, (size, group) in enumerate(points.groupby("size", sort=False)):
        ax.scatter(group["bitrate_kbps"], group["vmaf"], color=f"C{index % 10}", s=24, label=str(size))
    ax.plot(hull["bitrate_kbps"], hull["vmaf"], "k--", lw=1, label="convex hull")
    ax.scatter(rungs["bitrate_kbps"], rungs["vmaf"], s=160, facecolors="none", edgecolors="k", lw=1.5,
               label="rungs (least-energy encode)")
    for number, (_, rung) in enumerate(rungs.iterrows(), 1):
        ax.annotate(str(number), (rung["bitrate_kbps"], rung["vmaf"]), textcoords="offset points", xytext=(6, -10),
                    fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("bitrate (kbit/s, log axis; the hull is convex on a linear one)")
    ax.set_ylabel("VMAF")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return fig
