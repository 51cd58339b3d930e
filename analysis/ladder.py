"""An energy-aware per-title ladder: rungs on the convex hull of bitrate vs VMAF across resolutions, each
encoded by the encoder and preset that meets its VMAF for the least energy.

For one input of a run that swept resolutions × rate controls (× encoders and presets):

1. **The hull.** Every measured configuration is a point (bitrate, VMAF); the upper convex hull of them
   all (:func:`analysis.pareto.rate_quality_hull`) is the efficient frontier across resolutions, as in
   Netflix's per-title encoding: at each bitrate, the resolution (and encoder) that gives the most VMAF.
2. **The rungs.** Target VMAFs from the hull's best down in steps of about 6 (a just-noticeable
   difference), or ``rungs`` evenly spaced between its lowest and best; each takes the hull point
   nearest its target (each point once). At most :data:`MAX_RUNGS`, as a live ladder takes.
3. **The encode of each rung.** Among the configurations at the rung's size whose VMAF reaches the hull
   point's, the one with the least encode J/frame (or encode + ``views`` × delivery J/frame, with
   views), provided the ladder still rises: its bitrate and VMAF above the rung below's, its bitrate
   under the next hull point's. The hull point itself always qualifies.

The ladder is written lowest rung first, as YAML that ``live.ladder`` and a VOD campaign's
``matrix.ladder`` take as they are (sizes and measured bitrates), with what each rung rests on in
comments. Energy figures stay marked estimated where they were.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from analysis.delivery import DELIVERY_WH_PER_GB, add_delivery
from analysis.efficiency import config_efficiency
from analysis.load import load_results, resolve_run
from analysis.pareto import rate_quality_hull
from ffwatt.campaign import Rung
from ffwatt.errors import ResultsError
from ffwatt.schema import config_label, is_missing

__all__ = ["JND_VMAF", "MAX_RUNGS", "HullPoint", "Ladder", "LadderPoint", "LadderRung", "ladder", "ladder_from_configs",
           "ladder_from_rows", "ladder_inputs"]

JND_VMAF = 6.0  # VMAF points between rungs: about one just-noticeable difference
MAX_RUNGS = 8  # a live ladder's most


class HullPoint(BaseModel):
    config: str
    size: str
    bitrate_kbps: float
    vmaf: float


class LadderRung(BaseModel):
    """One rung: its size and measured bitrate, the configuration that encodes it, and what it costs."""

    size: str
    bitrate_kbps: int  # the chosen encode's measured bitrate, rounded up
    vmaf: float
    target_vmaf: float  # the hull point's
    hull_config: str
    config: str
    encoder: str
    preset: str | None
    rate_control: str
    rate_value: int | None
    repetitions: int
    joules_per_frame: float | None
    joules_per_frame_ci: tuple[float, float] | None = None
    total_j_per_frame: float | None = None  # with views: encode + delivery
    energy_estimated: bool
    saves_pct: float | None = None  # J/frame (or total) against the hull point's own encode


class LadderPoint(BaseModel):
    config: str
    size: str
    bitrate_kbps: float
    vmaf: float


class Ladder(BaseModel):
    campaign: str
    run_id: str
    input_name: str
    chosen_by: str
    views: float | None
    delivery_wh_per_gb: float | None
    rungs: list[LadderRung]
    hull: list[HullPoint]
    points: int
    encodes: list[LadderPoint] = []  # every point the hull was taken over (for the chart)
    notes: list[str] = []

    def yaml(self) -> str:
        """The ladder as YAML that ``live.ladder`` and ``matrix.ladder`` take, lowest rung first, with what
        each rung rests on in comments."""
        lines = [f"# ffwatt ladder: input {self.input_name} of run {self.run_id} (campaign {self.campaign}).",
                 f"# Rungs on the convex hull of bitrate vs VMAF across resolutions ({self.points} encodes, "
                 f"{len(self.hull)} on the hull); each rung's",
                 f"# encode is the one meeting its VMAF for the {self.chosen_by}.",
                 "# Use it as `live: {ladder: THIS_FILE}` or `matrix: {ladder: THIS_FILE}` in a campaign."]
        for index, rung in enumerate(self.rungs, 1):
            jpf = "-" if rung.joules_per_frame is None else f"{rung.joules_per_frame:.4g} J/frame"
            lines.append(f"# rung {index}: {rung.config}: VMAF {rung.vmaf:.2f}, {rung.bitrate_kbps} kbit/s, {jpf}"
                         + (" (estimated)" if rung.energy_estimated else ""))
        lines.append("ladder:")
        for rung in self.rungs:
            checked = Rung(size=rung.size, bitrate_kbps=rung.bitrate_kbps)  # what a campaign will check
            lines.append(f"  - {{size: {checked.size}, bitrate_kbps: {checked.bitrate_kbps}}}")
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        from analysis.markdown import md_number, md_table, md_text

        with_views = self.views is not None
        rows = [[str(i), md_text(r.size), str(r.bitrate_kbps), md_number(r.vmaf), md_text(r.config),
                 md_number(r.joules_per_frame, estimated=r.energy_estimated)
                 + (f" ({md_number(r.joules_per_frame_ci[0], estimated=r.energy_estimated)}–"
                    f"{md_number(r.joules_per_frame_ci[1], estimated=r.energy_estimated)})"
                    if r.joules_per_frame_ci else ""),
                 *([md_number(r.total_j_per_frame, estimated=True)] if with_views else []),
                 md_text(r.hull_config), "-" if r.saves_pct is None else f"{r.saves_pct:.1f} %"]
                for i, r in enumerate(self.rungs, 1)]
        text = (f"Ladder for {md_text(self.input_name)} (run {self.run_id}): {len(self.rungs)} rungs on the hull of "
                f"{len(self.hull)} of {self.points} encodes; each rung's encode meets its VMAF for the "
                f"{md_text(self.chosen_by)}.\n\n"
                + md_table(["rung", "size", "kbit/s", "VMAF", "encode", "J/frame (95 % interval)",
                            *(["total J/frame"] if with_views else []), "hull point", "saves against it"], rows))
        text += "".join(f"\n- {md_text(note)}" for note in self.notes)
        if any(r.energy_estimated for r in self.rungs):
            text += "\n\n\\* estimated: energy from busy CPU time × an assumed CPU power, not a RAPL reading."
        return text + "\n"


def _targets(best: float, lowest: float, rungs: int | None, step: float) -> list[float]:
    if rungs is not None:
        if rungs == 1 or best == lowest:
            return [best]
        return list(np.linspace(best, lowest, rungs))
    count = math.floor((best - lowest) / step + 1e-9) + 1
    return [best - k * step for k in range(count)]


def _num(row: pd.Series, name: str) -> float | None:
    value = row.get(name)
    return None if is_missing(value) else float(value)


def ladder_from_configs(configs: pd.DataFrame, *, rungs: int | None = None, vmaf_step: float = JND_VMAF,
                        views: float | None = None, delivery_wh_per_gb: float = DELIVERY_WH_PER_GB,
                        campaign: str = "", run_id: str = "") -> Ladder:
    """The ladder of one input from its configurations (rows of :func:`analysis.config_efficiency` with
    ``input_fps`` when ``views`` is given)."""
    points = configs.dropna(subset=["bitrate_kbps", "vmaf", "output_width", "output_height"]).reset_index(drop=True)
    if points.empty:
        raise ResultsError("no configuration with a bitrate, a VMAF and an output size: run the campaign with "
                           "quality: [vmaf]")
    input_name = str(points["input_name"].iloc[0])
    points["size"] = [f"{int(w)}x{int(h)}" for w, h in zip(points["output_width"], points["output_height"])]
    points["config"] = [config_label(r) for _, r in points.iterrows()]
    cost = "joules_per_frame"
    if views is not None:
        points = add_delivery(points, views, delivery_wh_per_gb)
        cost = "total_j_per_frame"
    notes = []
    if points["size"].nunique() < 2:
        notes.append(f"every encode of {input_name} is {points['size'].iloc[0]}: the hull spans one resolution; "
                     "sweep matrix.resolutions for a per-title ladder")
    on_hull = points.loc[rate_quality_hull(points["bitrate_kbps"], points["vmaf"])]
    vmafs = on_hull["vmaf"].to_numpy()
    chosen_points: list[int] = []
    for target in _targets(float(vmafs.max()), float(vmafs.min()), rungs, vmaf_step):
        free = [i for i in on_hull.index if i not in chosen_points]
        if free:
            chosen_points.append(min(free, key=lambda i: abs(points.loc[i, "vmaf"] - target)))
    chosen_points.sort(key=lambda i: points.loc[i, "bitrate_kbps"])
    if len(chosen_points) > MAX_RUNGS:
        notes.append(f"{len(chosen_points)} rungs {vmaf_step:g} VMAF apart; a live ladder takes {MAX_RUNGS}: the "
                     f"lowest {len(chosen_points) - MAX_RUNGS} dropped (ask for --rungs or a larger --vmaf-step)")
        chosen_points = chosen_points[-MAX_RUNGS:]
    out: list[LadderRung] = []
    below_kbps, below_vmaf = 0.0, -math.inf
    for k, point in enumerate(chosen_points):
        hull_row = points.loc[point]
        above_kbps = points.loc[chosen_points[k + 1], "bitrate_kbps"] if k + 1 < len(chosen_points) else math.inf
        fits = points[(points["size"] == hull_row["size"]) & (points["vmaf"] >= hull_row["vmaf"])
                      & (points["bitrate_kbps"] > below_kbps) & (points["vmaf"] > below_vmaf)
                      & (points["bitrate_kbps"] < above_kbps) & points[cost].notna()]
        row = fits.loc[fits[cost].idxmin()] if not fits.empty else hull_row
        low, high = _num(row, "joules_per_frame_ci_low"), _num(row, "joules_per_frame_ci_high")
        own, hull_cost = _num(row, cost), _num(hull_row, cost)
        rate_column = {"crf": "crf", "qp": "qp"}.get(str(row["rate_control"]), "target_bitrate_kbps")
        out.append(LadderRung(
            size=str(row["size"]), bitrate_kbps=max(1, math.ceil(float(row["bitrate_kbps"]))), vmaf=float(row["vmaf"]),
            target_vmaf=float(hull_row["vmaf"]), hull_config=str(hull_row["config"]), config=str(row["config"]),
            encoder=str(row["encoder"]), preset=None if is_missing(row.get("preset")) else str(row["preset"]),
            rate_control=str(row["rate_control"]),
            rate_value=None if is_missing(row.get(rate_column)) else int(row[rate_column]),
            repetitions=int(row.get("n", 1)), joules_per_frame=_num(row, "joules_per_frame"),
            joules_per_frame_ci=(low, high) if low is not None and high is not None else None,
            total_j_per_frame=_num(row, "total_j_per_frame") if views is not None else None,
            energy_estimated=bool(row.get("energy_estimated")),
            saves_pct=(1 - own / hull_cost) * 100 if own is not None and hull_cost else None))
        below_kbps, below_vmaf = float(row["bitrate_kbps"]), float(row["vmaf"])
    chosen_by = ("least encode energy" if views is None
                 else f"least encode + delivery energy to {views:g} views at {delivery_wh_per_gb:g} Wh/GB")
    hull = [HullPoint(config=str(r["config"]), size=str(r["size"]), bitrate_kbps=float(r["bitrate_kbps"]),
                      vmaf=float(r["vmaf"])) for _, r in on_hull.iterrows()]
    return Ladder(campaign=campaign, run_id=run_id, input_name=input_name, chosen_by=chosen_by, views=views,
                  delivery_wh_per_gb=delivery_wh_per_gb if views is not None else None, rungs=out, hull=hull,
                  points=len(points), notes=notes,
                  encodes=[LadderPoint(config=str(r["config"]), size=str(r["size"]),
                                       bitrate_kbps=float(r["bitrate_kbps"]), vmaf=float(r["vmaf"]))
                           for _, r in points.iterrows()])


def ladder_inputs(rows: pd.DataFrame) -> list[str]:
    """Inputs of these rows a ladder can be built for: encoded ok at two sizes or more, with VMAF."""
    usable = _encodes(rows)
    if "vmaf" not in usable.columns:
        return []
    usable = usable[usable["vmaf"].notna()]
    sizes = usable.drop_duplicates(["input_name", "output_width", "output_height"])["input_name"].value_counts()
    return sorted(str(name) for name, count in sizes.items() if count >= 2)


def _encodes(rows: pd.DataFrame) -> pd.DataFrame:
    """The ok rows that are one encode each (no live step, no density step of more than one copy)."""
    if "live_streams" in rows.columns:
        rows = rows[rows["live_streams"].isna()]
    if "concurrency" in rows.columns:  # a density step's figures are N encodes at once: not one encode's
        rows = rows[rows["concurrency"].isna() | (rows["concurrency"] == 1)]
    return rows[rows["status"] == "ok"]


def ladder(results_dir: Path, *, run: str = "latest", campaign: str | None = None, input_name: str | None = None,
           rungs: int | None = None, vmaf_step: float = JND_VMAF, views: float | None = None,
           delivery_wh_per_gb: float = DELIVERY_WH_PER_GB) -> Ladder:
    """The ladder of one input (``input_name``, or the run's only one) of a run (its latest, or ``run``)."""
    campaign, run_id = resolve_run(Path(results_dir), run, campaign)
    rows = _encodes(load_results(Path(results_dir), campaign=campaign, run_id=run_id, with_run_metadata=False))
    inputs = sorted(rows["input_name"].unique())
    if not inputs:
        raise ResultsError(f"run {run_id} of campaign {campaign} has no successful encode to build a ladder from")
    if input_name is None:
        if len(inputs) > 1:
            raise ResultsError(f"run {run_id} has several inputs ({', '.join(inputs)}); pick one with --input")
        input_name = inputs[0]
    elif input_name not in inputs:
        raise ResultsError(f"--input {input_name}: run {run_id} has {', '.join(inputs)}")
    return ladder_from_rows(rows, input_name, rungs=rungs, vmaf_step=vmaf_step, views=views,
                            delivery_wh_per_gb=delivery_wh_per_gb, campaign=campaign, run_id=run_id)


def ladder_from_rows(rows: pd.DataFrame, input_name: str, *, rungs: int | None = None, vmaf_step: float = JND_VMAF,
                     views: float | None = None, delivery_wh_per_gb: float = DELIVERY_WH_PER_GB, campaign: str = "",
                     run_id: str = "") -> Ladder:
    """The ladder of ``input_name`` from a run's job rows."""
    mine = _encodes(rows)
    mine = mine[mine["input_name"] == input_name]
    configs = config_efficiency(mine) if not mine.empty else pd.DataFrame(columns=["n"])
    configs = configs[configs["n"] > 0]
    if "vmaf" not in configs.columns or configs["vmaf"].isna().all():
        raise ResultsError(f"run {run_id} has no VMAF for {input_name}: a ladder climbs VMAF; run the campaign with "
                           "quality: [vmaf]")
    fps = mine.groupby("config_id")["input_fps"].max().rename("input_fps")
    configs = configs.merge(fps, left_on="config_id", right_index=True, how="left")
    return ladder_from_configs(configs, rungs=rungs, vmaf_step=vmaf_step, views=views,
                               delivery_wh_per_gb=delivery_wh_per_gb, campaign=campaign, run_id=run_id)
