"""One self-contained HTML report for a run (optionally against another run).

Images are PNGs embedded as base64, styles are inline: the file opens from disk in
any browser, mails as one attachment, and needs no server.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.bd import MIN_POINTS, bd_table
from analysis.density import density_outcomes, density_steps, is_density
from analysis.efficiency import config_efficiency, job_efficiency
from analysis.frames import LOW_END_COLUMNS, load_frames, worst_job
from analysis.ladder import ladder_from_rows, ladder_inputs
from analysis.live import is_live, live_steps, sweep_outcomes
from analysis.load import load_results, resolve_run, run_summary
from analysis.pareto import Direction, pareto_front
from analysis.plots import (
    density_plot,
    efficiency_bars,
    history_plot,
    ladder_plot,
    live_sweep_plot,
    node_timeline_plot,
    pareto_plot,
    png_base64,
    power_fit_plot,
    power_plot,
    quality_power_plot,
    rate_quality_plot,
)
from analysis.power import fit_power_model
from analysis.regression import METRIC_NAMES, NODE_FACTS, RunComparison, campaign_history, compare_runs
from analysis.series import POWER_METRICS, load_series, power_over_time, series_checks
from ffwatt.errors import NotComputable, ResultsError
from ffwatt.results import RunSummary
from ffwatt.schema import CURVE_COLUMNS, config_label
from ffwatt.series import AGREEMENT, CHECKED_FROM_S, SOURCE_WORDS

__all__ = ["write_report"]

# Tables fit the column from 800 px up: headers wrap, and one wider than the page (many nodes, long labels)
# scrolls inside its own box (.wide) instead of running off the page.
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;padding:0 1em;max-width:1100px;color:#222}
.wide{overflow-x:auto;max-width:100%;margin:.5em 0 1.5em}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 5px;text-align:right}
th{background:#f0f0f0;font-weight:600;vertical-align:bottom} td.l,th.l{text-align:left}
td{white-space:nowrap} td.l{white-space:normal;min-width:5em} td.w{white-space:normal}
.warn{background:#fff4d6;border:2px solid #e0a800;padding:.6em 1em;margin:1em 0}
.note{color:#555;font-size:13px} img{max-width:100%}
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e5 or (value and abs(value) < 1e-3) else f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame, columns: dict[str, str], *, left: tuple[str, ...] = (),
           star: dict[str, str] | None = None, wrap: tuple[str, ...] = ()) -> str:
    """An HTML table of ``columns`` (name -> header). ``star`` maps a column to a boolean column:
    where true, the value gets a ``*`` (estimated). Numbers stay on one line, but those of ``wrap``
    (an interval, low–high) and the text of ``left``."""
    star = star or {}
    head = "".join(f"<th class='{'l' if c in left else ''}'>{html.escape(h)}</th>" for c, h in columns.items())
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for c in columns:
            text = _fmt(row.get(c))
            if c in star and bool(row.get(star[c])) and text != "-":
                text += "*"
            cells.append(f"<td class='{'l' if c in left else 'w' if c in wrap else ''}'>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class='wide'><table><tr>{head}</tr>{''.join(rows)}</table></div>"


def _img(fig: Any, alt: str) -> str:
    return f"<p><img alt='{html.escape(alt)}' src='{png_base64(fig)}'></p>"


def _section(title: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{body}\n"


def _facts_table(facts: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        text = _fmt(value)
        # FFmpeg's configure line is kilobytes long: folded, still there for whoever needs it.
        return text if len(text) < 160 else f"<details><summary>{text[:80]}…</summary>{text}</details>"

    rows = "".join(f"<tr><th class='l'>{html.escape(k)}</th><td class='l'>{cell(v)}</td></tr>"
                   for k, v in facts.items())
    return f"<table>{rows}</table>"


def _node_section(summary: RunSummary | None, nodes_with_jobs: list[str]) -> str:
    if summary is None:
        return "<p class='note'>No _run.json for this run (still running, or interrupted).</p>"
    run = summary.model_dump(exclude={"nodes", "idle_baselines"})
    parts = [_facts_table(run)]
    for name in nodes_with_jobs:
        facts = summary.nodes.get(name)
        if facts is None:
            parts.append(f"<h3>{html.escape(name)}</h3><p class='note'>No facts were sent home by this node.</p>")
            continue
        values = facts.model_dump(exclude={"gpus"})
        values["gpus"] = ", ".join(f"{g.index}: {g.name}" for g in facts.gpus) or "-"
        idle = summary.idle_baselines.get(name)
        if idle is not None:
            values["idle baseline"] = idle.describe(summary.started_at)
        parts.append(f"<h3>{html.escape(name)}</h3>" + _facts_table(values))
    return "".join(parts)


def _summary_section(configs: pd.DataFrame) -> str:
    """Two tables, so each fits an 800 px column: what each configuration did, then what it cost."""
    table = configs.assign(config=[config_label(r) for _, r in configs.iterrows()],
                           config_input=[config_label(r, with_input=True) for _, r in configs.iterrows()])
    if {"energy_j_ci_low", "energy_j_ci_high"} <= set(table.columns):
        table["energy_j_ci"] = [
            "-" if pd.isna(low) or pd.isna(high) else f"{_fmt(low)}–{_fmt(high)}"
            for low, high in zip(table["energy_j_ci_low"], table["energy_j_ci_high"])]
    did = {"input_name": "input", "config": "configuration", "node": "node", "n": "reps", "n_failed": "failed",
           "wall_s": "wall s", "encode_fps": "fps", "bitrate_kbps": "kbit/s", "psnr": "PSNR", "vmaf": "VMAF",
           "vmaf_p5": "VMAF p5"}
    cost = {"config_input": "input and configuration", "energy_j": "energy J",
            "energy_j_ci": "J, 95 % CI", "joules_per_frame": "J/frame", "avg_power_w": "avg W",
            "net_power_w": "net W", "pixels_per_joule": "px/J", "qoe_pixels_per_joule": "QoE px/J",
            "vmaf_per_joule": "VMAF/J", "kbps_per_watt": "kbit/s per W", "cost_per_video_hour": "cost / video h",
            "co2_g_per_video_hour": "g CO2 / video h", "energy_sources": "source"}
    # Optional columns (cost, CO2, net watts...) only when some row has them.
    did, cost = ({k: v for k, v in columns.items() if k in table.columns and table[k].notna().any()}
                 for columns in (did, cost))
    energy_cols = ("energy_j", "energy_j_ci", "joules_per_frame", "avg_power_w", "net_power_w", "pixels_per_joule",
                   "qoe_pixels_per_joule", "vmaf_per_joule", "kbps_per_watt", "cost_per_video_hour",
                   "co2_g_per_video_hour")
    star = {c: "energy_estimated" for c in energy_cols if c in cost}
    return (_table(table, did, left=("input_name", "config", "node"))
            + _table(table, cost, left=("config_input", "energy_sources"), star=star, wrap=("energy_j_ci",))
            + "<p class='note'>Means over ok repetitions; CI = 95 % Student-t interval of the mean "
              "(needs ≥ 2 repetitions). * = energy estimated, not measured.</p>")


def _efficiency_section(configs: pd.DataFrame) -> str:
    parts = []
    for metric, title, unit in (("joules_per_frame", "Energy per frame (lower is better)", "J/frame"),
                                ("qoe_pixels_per_joule", "QoE efficiency: pixels × VMAF/100 per joule", "px/J"),
                                ("avg_power_w", "Average power during the encode", "W")):
        if metric in configs.columns and configs[metric].notna().any():
            parts.append(_img(efficiency_bars(configs, metric, title=title, unit=unit), title))
    return "".join(parts) or "<p>No energy figures in this run.</p>"


def _pareto_section(configs: pd.DataFrame) -> str:
    parts = []
    quality = "vmaf" if "vmaf" in configs.columns and configs["vmaf"].notna().any() else "psnr"
    need2: dict[str, Direction] = {"energy_j": "min", quality: "max"}
    for input_name, group in configs.groupby("input_name", sort=True):
        front2 = pareto_front(group, need2, by=())
        parts.append(_img(pareto_plot(front2, "energy_j", quality,
                                      title=f"{input_name}: energy vs {quality} (2-D front)"),
                          f"Pareto {input_name}"))
        objectives3: dict[str, Direction] = {"energy_j": "min", quality: "max", "encode_fps": "max"}
        front3 = pareto_front(group, objectives3, by=())
        on = front3[front3["pareto"]].assign(config=lambda f: [config_label(r) for _, r in f.iterrows()])
        parts.append(f"<p>3-D front for {html.escape(str(input_name))} "
                     f"(energy min, {quality} max, fps max): {len(on)} of {len(front3)} configurations.</p>")
        parts.append(_table(on, {"config": "configuration", "energy_j": "energy J", quality: quality,
                                 "encode_fps": "fps"}, left=("config",), star={"energy_j": "energy_estimated"}))
    return "".join(parts)


def _bd_section(configs: pd.DataFrame) -> str:
    quality = "vmaf" if "vmaf" in configs.columns and configs["vmaf"].notna().any() else "psnr"
    parts = []
    for input_name, group in configs.groupby("input_name", sort=True):
        parts.append(_img(rate_quality_plot(group, "bitrate_kbps", quality, curve_keys=CURVE_COLUMNS,
                                            title=f"{input_name}: rate–{quality}"), "rate-quality"))
        if "energy_j" in group.columns and group["energy_j"].notna().any():
            parts.append(_img(rate_quality_plot(group, "energy_j", quality, curve_keys=CURVE_COLUMNS,
                                                title=f"{input_name}: energy–{quality}"), "energy-quality"))
    table = bd_table(configs, quality=quality)
    if table.empty:
        parts.append("<p><b>BD not computable:</b> this run has fewer than two rate–quality curves "
                     "(encoder/preset/rate-control families) on the same input and output size.</p>")
        return "".join(parts)
    parts.append(_table(table, {"input_name": "input", "anchor": "anchor", "test": "test",
                                "n_anchor": "anchor pts", "n_test": "test pts",
                                "bd_rate_pct": "BD-rate % (PCHIP)", "bd_rate_pct_cubic": "BD-rate % (cubic)",
                                "bd_quality": f"BD-{quality} (PCHIP)", "bd_energy_pct": "BD-energy % (PCHIP)",
                                "bd_energy_pct_cubic": "BD-energy % (cubic)", "note": "why not computable"},
                        left=("input_name", "anchor", "test", "note"),
                        star={"bd_energy_pct": "energy_estimated", "bd_energy_pct_cubic": "energy_estimated"}))
    parts.append(f"<p class='note'>BD needs at least {MIN_POINTS} rate points per curve on an overlapping "
                 "quality range; negative = the test curve needs less rate (or energy) for the same quality. "
                 "PCHIP = piecewise cubic (VCEG-AL22 / JVET CTC); cubic = VCEG-M33 polynomial. "
                 "* = computed from estimated energy.</p>")
    return "".join(parts)


def _power_section(jobs: pd.DataFrame) -> str:
    try:
        model = fit_power_model(jobs)
    except NotComputable as exc:
        return f"<p>Power model not fitted: {html.escape(str(exc))}.</p>"
    usable = jobs.dropna(subset=["avg_power_w", "output_width", "output_height", "input_fps", "bitrate_kbps"])
    usable = usable[usable["status"] == "ok"]
    predicted = model.predict(usable, allow_extrapolation=True)
    parts = [_img(power_fit_plot(usable["avg_power_w"].reset_index(drop=True), predicted["avg_power_w"],
                                 title="Power model: average watts (in-sample)", unit="W"), "power fit")]
    cv = pd.DataFrame([vars(s) for s in model.cv])
    parts.append(_table(cv, {"target": "target", "folds": "folds", "mape_pct": "CV MAPE %", "rmse": "CV RMSE",
                             "unit": "unit"}, left=("target", "unit")))
    parts.append(f"<p class='note'>Ridge regression (alpha={model.alpha}) on {model.n_rows} jobs from "
                 f"node(s) {html.escape(', '.join(model.nodes))}; features: encoder, encoder/preset, log pixels, "
                 "log fps, log bitrate. Fitted ranges: "
                 + ", ".join(f"{k} {lo:g}–{hi:g}" for k, (lo, hi) in model.ranges.items())
                 + ". It refuses predictions outside them. With few jobs the CV error is optimistic or unstable.</p>")
    if model.energy_estimated:
        parts.append("<p class='warn'>The power model was fitted on <b>estimated</b> energy: it reproduces the "
                     "estimate (busy CPU time × an assumed CPU power model), not measured watts.</p>")
    return "".join(parts)


# Up to this many jobs, power over time is drawn per job; beyond, a panel per configuration.
SMALL_RUN_JOBS = 8


def _cross_check_section(jobs: pd.DataFrame) -> str:
    """Each job's series energy against its row's: every job of 30 s or more beyond 2 % in a warning,
    shorter ones' gaps folded below, the missing series and why."""
    checks = series_checks(jobs)
    if checks.empty or (checks["series_source"].isna() & checks["series_missing"].isna()).all():
        return "<p>This run's rows carry no series (written before ffwatt kept series beside rows).</p>"
    sources = checks["series_source"].value_counts()
    parts = [f"<p>{len(checks)} jobs: " + ", ".join(f"{n} with series from {html.escape(SOURCE_WORDS.get(str(k), k))}"
                                                    for k, n in sources.items())
             + f"; {int(checks['series_source'].isna().sum())} without.</p>"]
    missing = checks["series_missing"].dropna()
    if not missing.empty:
        items = "".join(f"<li>{n} × {html.escape(str(why))}</li>" for why, n in missing.value_counts().items())
        parts.append(f"<p>Series missing or incomplete, and why:</p><ul>{items}</ul>")
    columns = {"config": "configuration", "repetition": "rep", "node": "node", "wall_s": "wall s",
               "energy_j": "row energy J", "series_energy_j": "series energy J", "gap_pct": "gap %",
               "series_source": "series from"}
    judged, bad = checks[checks["checked"]], checks[checks["disagrees"]]
    limit = f"{AGREEMENT:.0%}"
    if not bad.empty:
        parts.append(f"<div class='warn'><b>{len(bad)} of {len(judged)} jobs of {CHECKED_FROM_S:g} s or more: "
                     f"series energy and row energy differ by more than {limit}.</b> The row's figure is the "
                     "meter's direct reading; the gap says the node's series don't account for the same joules "
                     "(a source that changed mid-job, a store that lost samples, a clock off)."
                     + _table(bad, columns, left=("config", "node", "series_source"),
                              star={"energy_j": "estimated", "series_energy_j": "estimated"}) + "</div>")
    elif not judged.empty:
        worst = judged["gap_pct"].abs().max()
        verb = "job of {:g} s or more agrees" if len(judged) == 1 else "jobs of {:g} s or more agree"
        parts.append(f"<p>The {len(judged)} {verb.format(CHECKED_FROM_S)} within {limit} "
                     f"(largest gap {worst:.2f} %).</p>")
    else:
        parts.append(f"<p>No job lasted {CHECKED_FROM_S:g} s, the shortest the check judges.</p>")
    short = checks[~checks["checked"] & checks["gap_pct"].notna()]
    if not short.empty:
        off = short[short["gap_pct"].abs() > AGREEMENT * 100]
        parts.append(f"<details><summary>{len(short)} shorter jobs, not judged ({len(off)} beyond {limit}): "
                     "1 Hz samples can't resolve a few seconds</summary>"
                     + _table(short, columns, left=("config", "node", "series_source"),
                              star={"energy_j": "estimated", "series_energy_j": "estimated"}) + "</details>")
    parts.append("<p class='note'>Series energy: what the series' counters of the row's own sources gained over "
                 "the encode, each reading placed when it was read, interpolated at the ends. "
                 "* = estimated energy.</p>")
    return "".join(parts)


def _timeline_section(results_dir: Path, campaign: str, run_id: str, jobs: pd.DataFrame) -> str:
    try:
        samples = load_series(results_dir, campaign=campaign, run_id=run_id, metrics=list(POWER_METRICS))
    except ResultsError as exc:
        return f"<p>No series to draw: {html.escape(str(exc))}.</p>"
    power = power_over_time(samples)
    if power.empty:
        return "<p>The run's series have no power samples.</p>"
    by = "job" if jobs["job_id"].nunique() <= SMALL_RUN_JOBS else "config"
    title = "Power over time, " + ("per job" if by == "job" else "per configuration")
    return (_img(power_plot(power, by=by, title=title), title)
            + _img(node_timeline_plot(power, jobs, title="Node timeline"), "node timeline")
            + "<p class='note'>From each job's series (its encode ± 2 s on its node). Measured and estimated "
              "watts, CPU and GPU, are drawn apart and never added.</p>")


def _quality_section(results_dir: Path, campaign: str, run_id: str, jobs: pd.DataFrame, job_id: str | None) -> str:
    """What viewers notice: each scored job's low end (table), and for one job its per-frame quality and
    its node's power on one time axis."""
    if "quality_frames" not in jobs.columns or jobs["quality_frames"].isna().all():
        return ("<p>This run kept no per-frame scores (no job was scored, or its rows are from before ffwatt "
                "kept them).</p>")
    scored = jobs[jobs["quality_frames"].notna()].assign(config=lambda f: [config_label(r) for _, r in f.iterrows()])
    columns = {"config": "configuration", "repetition": "rep", "vmaf_model": "model"}
    columns |= {c: c for c in LOW_END_COLUMNS if c in scored.columns and scored[c].notna().any()}
    columns |= {"quality_scaler": "scaled", "quality_pix_fmt": "scored in", "quality_frames": "frames"}
    parts = [_table(scored.sort_values("vmaf_p5" if "vmaf_p5" in columns else "config"), columns,
                    left=("config", "vmaf_model", "quality_scaler", "quality_pix_fmt")),
             "<p class='note'>Pooled from each job's frames (results/_frames): p5/p1 = 5th/1st percentile, "
             "hmean = harmonic mean (libvmaf's), min = the worst frame. A player judges a stream by its worst "
             "seconds: the low percentiles say what the mean hides.</p>"]
    chosen = job_id or worst_job(jobs)
    if chosen is None:
        return "".join(parts)
    if chosen not in set(jobs["job_id"]):
        raise ResultsError(f"job {chosen!r} isn't in run {run_id}; its jobs are listed by `ffwatt results show`")
    row = jobs[jobs["job_id"] == chosen].iloc[0]
    try:
        frames = load_frames(results_dir, campaign=campaign, run_id=run_id, job_id=chosen)
    except ResultsError as exc:
        return "".join(parts) + f"<p>No frames to draw: {html.escape(str(exc))}.</p>"
    metric = next((m for m in ("vmaf", "psnr", "ssim") if m in frames.columns and frames[m].notna().any()), None)
    if frames.empty or metric is None or "t_s" not in frames.columns:
        return "".join(parts) + f"<p>Job {html.escape(chosen)} has no frames to draw.</p>"
    try:
        samples = load_series(results_dir, campaign=campaign, run_id=run_id, job_id=chosen,
                              metrics=list(POWER_METRICS))
        power = power_over_time(samples)
    except ResultsError:
        power = pd.DataFrame(columns=["t_s", "watts", "part", "estimated"])
    low = row.get(f"{metric}_p5")
    label = config_label(row, with_input=True) + f" #{int(row['repetition'])}"
    why = "chosen" if job_id else f"the run's lowest 5th-percentile {metric}"
    title = f"{label}: {metric} per frame and node power"
    parts.append(_img(quality_power_plot(frames, power, title=title, metric=metric,
                                         low=None if pd.isna(low) else float(low)), title))
    estimated = bool(power["estimated"].any()) if not power.empty else False
    parts.append(f"<p class='note'>Job {html.escape(chosen)} ({why}; another with <code>ffwatt report --job "
                 "JOB_ID</code>). Frames are placed by their pts over the encode's wall time (taken as steady); "
                 "power is the node's, sampled once a second"
                 + (", <b>estimated</b> (busy CPU time × an assumed CPU power)" if estimated else "")
                 + ("" if not power.empty else "; this job has no power series") + ".</p>")
    return "".join(parts)


def _compare_section(comparison: RunComparison) -> str:
    """The per-configuration changes of :func:`analysis.regression.compare_runs`, and the node changes."""
    if not comparison.configs:
        return "<p>" + html.escape(" ".join(comparison.notes)) + "</p>"
    rows = []
    for change in comparison.configs:
        row: dict[str, Any] = {"config": change.config, "node": change.node,
                               "reps": f"{change.n_baseline}→{change.n_candidate}"}
        for figure in change.metrics:
            row[figure.metric] = figure.cell()
            row[f"{figure.metric}_p"] = figure.p_value
        rows.append(row)
    table = pd.DataFrame(rows)
    columns = {"config": "configuration", "node": "node", "reps": "reps"}
    for metric, name in METRIC_NAMES.items():
        if metric in table.columns:
            columns.update({metric: f"{name} change [95 % CI]", f"{metric}_p": "p"})
    parts = [f"<p><b>{html.escape(comparison.headline())}</b></p>",
             _table(table, columns, left=("config", "node", *METRIC_NAMES)),
             f"<p class='note'>Change of this run against {html.escape(comparison.baseline.run_id)}, relative to "
             f"it; “worse”/“better” where {html.escape(comparison.test)} finds p &lt; {comparison.alpha:g}; "
             "“can't tell” with a single repetition on a side. * = estimated energy.</p>"]
    if comparison.node_changes:
        facts = pd.DataFrame([f.model_dump() for f in comparison.node_changes])
        parts.append("<h3>What changed on the nodes</h3>" + _table(
            facts, {"node_baseline": "node (other run)", "node_candidate": "node (this run)", "fact": "fact",
                    "baseline": "other run", "candidate": "this run"},
            left=("node_baseline", "node_candidate", "fact", "baseline", "candidate")))
    else:
        parts.append("<p class='note'>No recorded node fact differs (" + ", ".join(NODE_FACTS) + ").</p>")
    parts += [f"<p class='note'>{html.escape(note)}</p>" for note in comparison.notes]
    return "".join(parts)


def _history_section(history: pd.DataFrame) -> str:
    runs = history["run_id"].nunique() if not history.empty else 0
    if runs < 2 or "joules_per_frame" not in history.columns:
        return f"<p>{runs} run(s) of this campaign with energy figures: a history needs two.</p>"
    return (_img(history_plot(history, "joules_per_frame", title="Energy per frame over the campaign's runs",
                              unit="J/frame"), "history")
            + f"<p class='note'>{runs} runs; each point is a run's mean over its repetitions, whiskers its 95 % "
              "interval; dashed = estimated energy.</p>")


def _estimated_section(jobs: pd.DataFrame, configs: pd.DataFrame) -> str:
    est_jobs = int(jobs["energy_estimated"].sum())
    with_energy = int(jobs["energy_j"].notna().sum()) if "energy_j" in jobs.columns else 0
    if with_energy == 0:
        return "<p>This run has no energy figures (no job finished with an energy reading).</p>"
    if est_jobs == 0:
        return "<p>All energy figures in this report were measured (none estimated).</p>"
    live = jobs[is_live(jobs)]
    labels = [config_label(r) for _, r in configs[configs["energy_estimated"]
                                                  & ~configs["config_id"].isin(live["config_id"])].iterrows()]
    labels += [config_label(r) for _, r in live[live["energy_estimated"]].drop_duplicates("config_id").iterrows()]
    items = "".join(f"<li>{html.escape(label)}</li>" for label in labels)
    return (f"<div class='warn'><b>{est_jobs} of {len(jobs)} jobs have estimated energy</b> "
            "(their energy_source includes <i>estimated</i>: busy CPU time × an assumed CPU power model, not a RAPL "
            "reading). Every figure derived "
            "from their energy — J, J/frame, watts, px/J, QoE/J, BD-energy, the power model — is estimated "
            f"too and marked *. Configurations concerned:<ul>{items}</ul></div>")


def _live_section(raw: pd.DataFrame) -> str:
    """Live sweeps: the outcome per sweep (largest real-time N, W/stream there), every step, the picture."""
    outcomes, steps = sweep_outcomes(raw), live_steps(raw)
    tolerance = float(raw["live_realtime_tolerance"].dropna().max()) if raw["live_realtime_tolerance"].notna().any() \
        else 0.0
    parts = [_table(outcomes, {"node": "node", "input_name": "input", "encoder": "encoder", "preset": "preset",
                               "live_ladder": "ladder", "max_realtime_streams": "largest real-time N",
                               "watts_per_stream": "W/stream at N", "joules_per_stream_minute": "J/stream-min at N",
                               "speed": "lowest speed at N", "broke_at": "broke at N", "steps": "N measured"},
                    left=("node", "input_name", "encoder", "preset", "live_ladder", "steps"),
                    star={"watts_per_stream": "energy_estimated", "joules_per_stream_minute": "energy_estimated"}),
             _img(live_sweep_plot(steps, title="Streams at once: speed and watts per stream", tolerance=tolerance),
                  "live sweep"),
             _table(steps, {"node": "node", "encoder": "encoder", "preset": "preset", "live_ladder": "ladder",
                            "live_streams": "N", "held": "real time", "speed": "lowest speed",
                            "dropped_frames": "dropped", "live_watts_per_stream": "W/stream",
                            "live_joules_per_stream_minute": "J/stream-min", "live_latency_ms": "latency ms",
                            "live_first_frame_s": "first frame s", "live_bitrate_error_pct": "bitrate error %",
                            "phase": "how N was reached", "reason": "why not ok"},
                    left=("node", "encoder", "preset", "live_ladder", "reason"),
                    star={"live_watts_per_stream": "energy_estimated",
                          "live_joules_per_stream_minute": "energy_estimated"}),
             f"<p class='note'>A step holds real time when, in every repetition, every stream's lowest speed is "
             f"at least {1 - tolerance:g}x and no source frame is missing from a rendition. Watts and joules are "
             "above the node's idle power; * = estimated. Latency: source frame to rendition frame as players on "
             "the node see them (docs/live.md). N measured: * marks a step reached by bisection between the "
             "largest N that held and the smallest that broke.</p>"]
    return "".join(parts)


def _density_section(raw: pd.DataFrame) -> str:
    """Density sweeps: per sweep the knee and the N with the most frames per joule, the picture, every step."""
    steps, outcomes = density_steps(raw), density_outcomes(raw)
    star = "energy_estimated"
    return "".join([
        _table(outcomes, {"node": "node", "config": "encode", "knee": "knee N", "knee_fps": "aggregate fps at knee",
                          "saturated_at": "saturated at N", "best_n": "most frames/J at N",
                          "best_frames_per_joule": "frames/J", "best_frames_per_joule_ci_low": "CI low",
                          "best_frames_per_joule_ci_high": "CI high", "best_joules_per_frame": "J/frame",
                          "best_avg_power_w": "W", "steps": "N measured"},
               left=("node", "config", "steps"),
               star={"best_frames_per_joule": star, "best_frames_per_joule_ci_low": star,
                     "best_frames_per_joule_ci_high": star, "best_joules_per_frame": star, "best_avg_power_w": star}),
        _img(density_plot(steps, outcomes, title="Copies at once: throughput and energy per frame"), "density"),
        _table(steps, {"node": "node", "config": "encode", "concurrency": "N", "phase": "how N was reached",
                       "n": "reps", "encode_fps": "aggregate fps", "encode_fps_ci_low": "CI low",
                       "encode_fps_ci_high": "CI high", "avg_power_w": "W", "joules_per_frame": "J/frame",
                       "joules_per_frame_ci_low": "CI low", "joules_per_frame_ci_high": "CI high",
                       "frames_per_joule": "frames/J", "grew": "grew", "n_skipped": "skipped", "reason": "why not ok"},
               left=("node", "config", "phase", "reason"),
               star=dict.fromkeys(("avg_power_w", "joules_per_frame", "joules_per_frame_ci_low",
                                   "joules_per_frame_ci_high", "frames_per_joule"), star)),
        "<p class='note'>Each step runs N copies of the encode at once on one node; its frames/s are every copy's "
        "over the step's window, its joules the node's. A step grew when its aggregate frames/s was at least the "
        "sweep's saturation gain (5 %) above the last step that grew, in every repetition; the knee is the largest "
        "N that grew below the first that didn't. N measured: * marks a step reached by bisection. Means over ok "
        "repetitions, CI = 95 % Student-t interval; * = estimated energy.</p>"])


def _ladder_section(raw: pd.DataFrame, campaign: str, run_id: str) -> str:
    """Per input encoded at two sizes or more: the energy-aware ladder on its bitrate-VMAF hull."""
    parts = []
    for input_name in ladder_inputs(raw):
        try:
            found = ladder_from_rows(raw, input_name, campaign=campaign, run_id=run_id)
        except ResultsError as exc:
            parts.append(f"<p>{html.escape(input_name)}: no ladder: {html.escape(str(exc))}.</p>")
            continue
        rungs = pd.DataFrame([r.model_dump() for r in found.rungs])
        rungs["ci_low"] = [r.joules_per_frame_ci[0] if r.joules_per_frame_ci else None for r in found.rungs]
        rungs["ci_high"] = [r.joules_per_frame_ci[1] if r.joules_per_frame_ci else None for r in found.rungs]
        points = pd.DataFrame([e.model_dump() for e in found.encodes])
        hull = pd.DataFrame([h.model_dump() for h in found.hull])
        parts.append(f"<h3>{html.escape(input_name)}</h3>")
        parts.append(_img(ladder_plot(points, hull, rungs, title=f"{input_name}: bitrate vs VMAF, hull and rungs"),
                          f"ladder {input_name}"))
        parts.append(_table(rungs, {"size": "size", "bitrate_kbps": "kbit/s", "vmaf": "VMAF", "config": "encode",
                                    "joules_per_frame": "J/frame", "ci_low": "CI low", "ci_high": "CI high",
                                    "hull_config": "hull point", "saves_pct": "saves % against it"},
                            left=("size", "config", "hull_config"),
                            star=dict.fromkeys(("joules_per_frame", "ci_low", "ci_high"), "energy_estimated")))
        parts += [f"<p class='note'>{html.escape(note)}</p>" for note in found.notes]
    parts.append("<p class='note'>Rungs about 6 VMAF apart on the convex hull of bitrate vs VMAF across "
                 "resolutions; each rung encoded by the configuration at its size that reaches the hull point's "
                 "VMAF for the least encode energy. <code>ffwatt ladder</code> writes it as YAML (with --views: "
                 "encode + delivery). * = estimated energy.</p>")
    return "".join(parts)


def write_report(results_dir: Path, run_id: str, compare_run_id: str | None = None,
                 out: Path | None = None, *, campaign: str | None = None, job_id: str | None = None) -> Path:
    """Write the HTML report of ``run_id`` (or ``latest``), optionally compared with
    ``compare_run_id``, to ``out`` (default ``<results_dir>/_reports/report-<campaign>-<run_id>.html``);
    returns the path. ``job_id``: the job whose quality and power over time are drawn (default: the
    one with the lowest 5th-percentile VMAF)."""
    results_dir = Path(results_dir)
    campaign, run_id = resolve_run(results_dir, run_id, campaign)
    raw = load_results(results_dir, campaign=campaign, run_id=run_id)
    if raw.empty:
        raise ResultsError(f"run {run_id} under {results_dir} has no job rows")
    jobs = job_efficiency(raw)
    configs = config_efficiency(jobs)
    live = raw[is_live(raw)]
    # Live sweep steps have their own section: the encode-by-encode sections are the other jobs'.
    vod_configs = configs[~configs["config_id"].isin(live["config_id"])]
    ok_configs = vod_configs[vod_configs["n"] > 0]
    summary = run_summary(results_dir, campaign, run_id)

    body = [f"<h1>ffwatt report: campaign {html.escape(campaign)}, run {html.escape(run_id)}</h1>",
            f"<p class='note'>{len(jobs)} jobs ({int((jobs['status'] == 'ok').sum())} ok), "
            f"{len(configs)} configurations. Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC}.</p>",
            _section("Estimated figures", _estimated_section(jobs, configs)),
            _section("Series cross-check", _cross_check_section(jobs)),
            _section("Nodes", _node_section(summary, sorted(raw["node"].dropna().unique())))]
    if not live.empty:
        body.append(_section("Live streams: streams per node and watts per stream", _live_section(raw)))
    if is_density(raw).any():
        body.append(_section("Density: copies at once per node, throughput and energy per frame",
                             _density_section(raw[is_density(raw)])))
    if ladder_inputs(raw):
        body.append(_section("Ladder: rungs on the bitrate–VMAF hull, each at its least-energy encode",
                             _ladder_section(raw, campaign, run_id)))
    if len(live) < len(raw):
        body += [_section("Summary per configuration", _summary_section(vod_configs)),
                 _section("Efficiency", _efficiency_section(ok_configs)),
                 _section("Pareto fronts",
                          _pareto_section(ok_configs) if not ok_configs.empty else "<p>No ok jobs.</p>"),
                 _section("Rate–quality, energy–quality and Bjøntegaard deltas",
                          _bd_section(ok_configs) if not ok_configs.empty else "<p>No ok jobs.</p>"),
                 _section("Quality as viewers see it: the worst frames, and quality with power over time",
                          _quality_section(results_dir, campaign, run_id, raw[~is_live(raw)], job_id)),
                 _section("Power model", _power_section(jobs[~is_live(jobs)]))]
    body.append(_section("Power over time and node timeline", _timeline_section(results_dir, campaign, run_id, jobs)))
    if compare_run_id:
        comparison = compare_runs(results_dir, compare_run_id, run_id)
        body.append(_section(f"Compared with run {comparison.baseline.run_id}", _compare_section(comparison)))
    body.append(_section(f"History of campaign {campaign}", _history_section(campaign_history(results_dir, campaign))))
    text = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>ffwatt {html.escape(run_id)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>")
    # Under "_reports": pyarrow's dataset discovery skips "_" names, so the HTML never
    # breaks read_results on the tree, and a run directory's mtime ("latest") is untouched.
    path = Path(out) if out else results_dir / "_reports" / f"report-{campaign}-{run_id}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
