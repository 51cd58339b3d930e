"""A campaign run's outcome in Markdown: what the Prefect UI shows at the end of every run.

Jobs ok and failed (with their reasons), the per-configuration table, the Pareto front,
the recommendation for :data:`analysis.recommend.DEFAULT_VMAF`, where the Parquet is and
the command that writes the HTML report. Each part that can't be computed says why instead, so the
summary is always published.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd

from analysis.density import density_outcomes, is_density
from analysis.efficiency import config_efficiency
from analysis.load import load_results, run_summary
from analysis.markdown import md_number, md_table, md_text
from analysis.pareto import Direction, pareto_front
from analysis.recommend import DEFAULT_VMAF, Scope, Target, recommend
from ffwatt.errors import FfwattError
from ffwatt.results import RunSummary, run_dir
from ffwatt.schema import config_label

__all__ = ["run_outcome_markdown"]

_REASON_CHARS = 300


def _failed(rows: pd.DataFrame) -> str:
    failed = rows[rows["status"] == "failed"]
    if failed.empty:
        return ""
    table = md_table(["configuration", "node", "rep", "why"], [
        [md_text(config_label(r, with_input=True)), md_text(r["node"]), md_text(r["repetition"]),
         md_text(str(r["error"] or "")[:_REASON_CHARS])] for _, r in failed.iterrows()])
    return f"\n### Failed jobs\n\n{table}"


def _configurations(configs: pd.DataFrame) -> str:
    rows = [[md_text(config_label(r, with_input=True)), md_text(r["node"]), str(int(r["n"])),
             str(int(r.get("n_failed", 0))), md_number(r.get("encode_fps")), md_number(r.get("bitrate_kbps")),
             md_number(r.get("vmaf")),
             md_number(r.get("joules_per_frame"), estimated=bool(r.get("energy_estimated"))),
             md_text(r.get("energy_sources") or "-")]
            for _, r in configs.iterrows()]
    return "\n### Per configuration\n\n" + md_table(
        ["configuration", "node", "ok", "failed", "fps", "kbit/s", "VMAF", "J/frame", "energy source"], rows) \
        + "\nMeans over the ok repetitions. * = estimated energy (busy CPU time × an assumed CPU power).\n"


def _pareto(configs: pd.DataFrame) -> str:
    quality = "vmaf" if "vmaf" in configs.columns and configs["vmaf"].notna().any() else "psnr"
    objectives: dict[str, Direction] = {"joules_per_frame": "min", quality: "max", "encode_fps": "max"}
    if any(c not in configs.columns or configs[c].isna().all() for c in objectives):
        return f"\n### Pareto front\n\nNot computable: the run lacks one of {', '.join(objectives)}.\n"
    front = pareto_front(configs, objectives)
    on = front[front["pareto"]]
    rows = [[md_text(r["input_name"]), md_text(config_label(r)), md_text(r["node"]),
             md_number(r["joules_per_frame"], estimated=bool(r.get("energy_estimated"))),
             md_number(r[quality]), md_number(r["encode_fps"])] for _, r in on.iterrows()]
    return (f"\n### Pareto front (J/frame min, {quality} max, fps max)\n\n{len(on)} of {len(front)} configurations "
            "are beaten by no other on all three at once:\n\n"
            + md_table(["input", "configuration", "node", "J/frame", quality, "fps"], rows))


def _recommendation(results_dir: Path, campaign: str, run_id: str, target_vmaf: float) -> str:
    try:
        answer = recommend(results_dir, Target(vmaf=target_vmaf), Scope(runs=[run_id], campaign=campaign))
    except FfwattError as exc:
        return f"\n### Recommendation\n\nNone: {md_text(exc)}\n"
    return (f"\n### Recommendation for VMAF ≥ {target_vmaf:g}, least energy\n\n{answer.markdown()}"
            f"\nOther targets: `ffwatt recommend --vmaf N --run {run_id}` (see `--help`).\n")


def _density(rows: pd.DataFrame) -> str:
    """Each density sweep's knee and the N with the most frames per joule."""
    outcomes = density_outcomes(rows)
    table = md_table(["configuration", "node", "knee N", "saturated at N", "most frames/J at N", "frames/J",
                      "J/frame", "aggregate fps", "N measured (* bisection)"],
                     [[md_text(r["config"]), md_text(r["node"]), md_number(r["knee"]), md_number(r["saturated_at"]),
                       md_number(r["best_n"]), md_number(r["best_frames_per_joule"], estimated=r["energy_estimated"]),
                       md_number(r["best_joules_per_frame"], estimated=r["energy_estimated"]),
                       md_number(r["best_fps"]), md_text(r["steps"])] for _, r in outcomes.iterrows()])
    best = "; ".join(f"{r['config']} on {r['node']}: {r['best_n']} copies at once"
                     for _, r in outcomes.iterrows() if r["best_n"] is not None)
    return (f"\n### Density: copies at once\n\nMost frames per joule: {md_text(best or 'none measured')}.\n\n"
            + table + f"\nPlan a daily load from it: `ffwatt plan --hours H --run {rows['run_id'].iloc[0]}`.\n")


def run_outcome_markdown(results_dir: Path, campaign: str, run_id: str, *,
                         target_vmaf: float = DEFAULT_VMAF, summary: RunSummary | None = None) -> str:
    """The run's outcome as Markdown (see the module doc); ``summary``: the run's, when the caller has it
    (the flow that ran it: its ``_run.json`` may not have been written, on a full disk)."""
    results_dir = Path(results_dir)
    parquet = run_dir(results_dir, campaign, run_id).resolve()
    rows = load_results(results_dir, campaign=campaign, run_id=run_id, with_run_metadata=False)
    summary = summary or run_summary(results_dir, campaign, run_id)
    ok = int((rows["status"] == "ok").sum()) if not rows.empty else 0
    skipped = int((rows["status"] == "skipped").sum()) if not rows.empty else 0
    head = (f"## Campaign {md_text(campaign)}, run {run_id}\n\n**{ok} of {len(rows)} jobs ok, "
            f"{len(rows) - ok - skipped} failed" + (f", {skipped} skipped" if skipped else "") + "**")
    if summary is not None and summary.wall_s is not None:  # None while it runs
        head += f" in {summary.wall_s:.0f} s on {', '.join(sorted(summary.nodes)) or 'no node'}"
    if summary is not None and summary.jobs > len(rows):
        head += (f"; {summary.jobs - len(rows)} of its {summary.jobs} jobs have no row (not reached, or their row "
                 f"couldn't be written): `ffwatt campaign run FILE --resume {run_id}` runs them")
    parts = [head + ".\n"]
    if not rows.empty:
        parts.append(_failed(rows))
        if is_density(rows).any():
            parts.append(_density(rows[is_density(rows)]))
        configs = config_efficiency(rows)
        parts.append(_configurations(configs))
        ok_configs = configs[configs["n"] > 0]
        if not ok_configs.empty:
            parts.append(_pareto(ok_configs))
            parts.append(_recommendation(results_dir, campaign, run_id, target_vmaf))
    # The HTML report is written on demand: drawing its figures takes a second or more, which a
    # short campaign would otherwise wait for before its flow run ends.
    where = [f"- Parquet: `{parquet}`",
             f"- HTML report: `ffwatt report {run_id} --campaign {shlex.quote(campaign)}` writes it"]
    parts.append("\n### Where the results are\n\n" + "\n".join(where) + "\n")
    return "".join(parts)
