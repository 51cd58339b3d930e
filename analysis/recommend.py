"""Recommendations from measured runs: the configuration that meets a quality target (and a
speed requirement) for the least energy, cost, CO2, time or bitrate.

Only measurements answer. A configuration *meets* the target when the lower bound of its
95 % interval over the repetitions does (VMAF, and fps when a speed is required); the VMAF
judged is the mean over the frames, or with ``vmaf_percentile`` a low percentile of them
(``vmaf_p5``: the target then holds for all but the worst 5 % of frames); with a
single repetition there is no interval and the measured value stands in, said so in the
answer. The candidates that meet are ranked by what is minimized; the runners-up say how
much more each costs than the recommendation and whether Welch's test tells them apart.

Where a rate ladder brackets the target (CRF 26 meets it, CRF 32 doesn't) the answer may
add an in-between setting, read off monotone PCHIP curves fitted through the ladder's
points (quality, fps and each cost against the rate setting): it is marked interpolated,
lies strictly between two measured points, is shown only where it would beat the
recommendation, and is never the recommendation itself, only a setting worth measuring
next. When nothing meets the target, the nearest configurations say which constraint
failed and by how much. Energy, cost and CO2 rest on energy figures, so they stay marked
estimated where any repetition's energy was.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer
from scipy.interpolate import PchipInterpolator

from analysis.delivery import (
    DELIVERY_RANGE,
    DELIVERY_SOURCE,
    DELIVERY_WH_PER_GB,
    DeliveryFigures,
    RangeEnd,
    add_delivery,
    delivery_figures,
    delivery_markdown,
    range_markdown,
)
from analysis.efficiency import config_efficiency, job_efficiency
from analysis.load import load_results, resolve_run
from analysis.markdown import md_number, md_table, md_text
from analysis.stats import compare
from ffwatt.encoders import encode_command, profile_for
from ffwatt.errors import ResultsError
from ffwatt.results import list_runs
from ffwatt.schema import CURVE_COLUMNS, DEFAULT_PIX_FMT, config_label, is_missing

__all__ = [
    "DEFAULT_VMAF",
    "OBJECTIVES",
    "Candidate",
    "DeliveryRecommendation",
    "InputAnswer",
    "Margin",
    "Minimize",
    "Miss",
    "Recommendation",
    "Scope",
    "Target",
    "recommend",
    "recommend_with_delivery",
]

Minimize = Literal["energy", "cost", "co2", "time", "bitrate"]
DEFAULT_VMAF = 93.0  # the target of the recommendation in every campaign run's summary


@dataclass(frozen=True)
class Objective:
    column: str
    unit: str
    energy: bool  # rests on energy figures (estimated where they were)
    higher_is_better: bool = False


OBJECTIVES: dict[str, Objective] = {
    "energy": Objective("joules_per_frame", "J/frame", energy=True),
    "cost": Objective("cost_per_video_hour", "cost per video hour", energy=True),
    "co2": Objective("co2_g_per_video_hour", "g CO2 per video hour", energy=True),
    # Less time per frame is more frames per second.
    "time": Objective("encode_fps", "fps", energy=False, higher_is_better=True),
    "bitrate": Objective("bitrate_kbps", "kbit/s", energy=False),
}
_WHY_MISSING = {
    "cost": "no cost figure (set FFWATT_PRICE_PER_KWH on the node that ran it)",
    "co2": "no CO2 figure (set FFWATT_CO2_G_PER_KWH on the node that ran it)",
}
_RATE_COLUMN = {"crf": "crf", "qp": "qp", "cbr": "target_bitrate_kbps", "vbr": "target_bitrate_kbps"}


class Target(BaseModel):
    """What the encode must achieve, and what to spend least of."""

    vmaf: float = Field(ge=0, le=100)
    # The target applies to this percentile of the frames' VMAF (vmaf_p1, vmaf_p5), not to their mean.
    vmaf_percentile: Literal[1, 5] | None = None
    min_fps: float | None = Field(default=None, gt=0)
    realtime: bool = False  # at least the input's own frame rate
    minimize: Minimize = "energy"
    # Encode + delivery: with ``views``, energy is encode J/frame + views × delivery J/frame (analysis.delivery).
    views: float | None = Field(default=None, ge=0)
    delivery_wh_per_gb: float = Field(default=DELIVERY_WH_PER_GB, gt=0)
    delivery_source: str = DELIVERY_SOURCE

    @model_serializer(mode="wrap")
    def _delivery_only_with_views(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Without views nothing rests on delivery: the answer's JSON stays what it was.
        data: dict[str, Any] = handler(self)
        if self.views is None:
            for key in ("views", "delivery_wh_per_gb", "delivery_source"):
                data.pop(key, None)
        return data

    @property
    def vmaf_column(self) -> str:
        return f"vmaf_p{self.vmaf_percentile}" if self.vmaf_percentile else "vmaf"

    @property
    def vmaf_words(self) -> str:
        """The VMAF figure judged, in words: ``VMAF`` or ``VMAF p5``."""
        return f"VMAF p{self.vmaf_percentile}" if self.vmaf_percentile else "VMAF"

    def words(self) -> str:
        speed = " and real time" if self.realtime else f" and ≥ {self.min_fps:g} fps" if self.min_fps else ""
        unit = _objective(self).unit
        ordinal = {1: "1st", 5: "5th"}.get(self.vmaf_percentile or 0, "")
        frames = f" (the {ordinal} percentile of the frames)" if self.vmaf_percentile else ""
        return f"{self.vmaf_words} ≥ {self.vmaf:g}{frames}{speed}, least {self.minimize} ({unit})"


def _objective(target: Target) -> Objective:
    """What is minimized: the target's objective, or with views, encode + delivery energy per frame."""
    if target.views is not None:
        return Objective("total_j_per_frame", f"J/frame incl. delivery to {target.views:g} views", energy=True)
    return OBJECTIVES[target.minimize]


class Scope(BaseModel):
    """Which measurements to choose from. No ``runs``: the latest run of each campaign (or of
    ``campaign``). Repetitions of one configuration on one node are pooled across the runs."""

    runs: list[str] = []
    campaign: str | None = None
    node: str | None = None
    pool: str | None = None
    input_name: str | None = None


class Candidate(BaseModel):
    """A configuration that meets the target (measured or interpolated) and what it costs."""

    config: str
    node: str
    encoder: str
    preset: str | None
    rate_control: str
    rate_value: int | None
    repetitions: int
    vmaf: float | None  # the mean over the frames
    vmaf_judged: float | None  # what the target applies to: vmaf, or a percentile (Target.vmaf_column)
    vmaf_bound: float | None  # the figure judged against the target
    fps: float | None
    fps_bound: float | None
    joules_per_frame: float | None
    bitrate_kbps: float | None
    value: float  # of what is minimized
    value_ci_pct: float | None = None  # its 95 % interval's half-width in % of it (None: 1 repetition, interpolated)
    energy_estimated: bool
    costs_more_pct: float | None = None  # against the recommendation
    significantly_more: bool | None = None  # Welch's test; None when it cannot tell
    interpolated: bool = False
    between: tuple[str, str] | None = None  # the measured rate settings an interpolated one lies between
    command: str | None = None
    delivery: DeliveryFigures | None = None  # with views: encode + delivery, and the break-even views


class Miss(BaseModel):
    """A configuration that misses the target, and by how much."""

    config: str
    node: str
    shortfalls: list[str]
    shortfall: float  # the largest relative shortfall (0.02 = 2 % short)


class Margin(BaseModel):
    """How far the recommendation is ahead of the runner-up, and how sure that is (Welch's t-test)."""

    runner_up: str
    more_pct: float  # what the runner-up costs more, in percent (for speed: time per frame)
    column: str  # the figure compared
    interval_pct: tuple[float, float] | None  # 95 % interval of the runner-up's difference, % of the winner's
    p_value: float | None
    repetitions: tuple[int, int]  # the recommendation's and the runner-up's
    different: bool | None  # None: a single repetition, nothing to test against

    def words(self) -> str:
        reps = f"{self.repetitions[0]} and {self.repetitions[1]} repetitions"
        if self.different is None:
            return f"Can't tell it from {self.runner_up}: a single repetition has no interval."
        if not self.different:
            return (f"Can't tell it from {self.runner_up}: {self.more_pct:+.1f} %, but their intervals overlap "
                    f"(p = {self.p_value:.2g}) after {reps}; more repetitions may separate them.")
        interval = "" if self.interval_pct is None else (
            f"the runner-up's {self.column} {self.interval_pct[0]:+.1f} to {self.interval_pct[1]:+.1f} % at 95 %, ")
        return (f"Ahead of {self.runner_up} by {self.more_pct:.1f} % ({interval}p = {self.p_value:.2g}, Welch's "
                f"t-test over {reps}).")


class InputAnswer(BaseModel):
    input_name: str
    recommendation: Candidate | None
    runners_up: list[Candidate]
    interpolated: list[Candidate]
    nearest: list[Miss]
    notes: list[str]
    margin: Margin | None = None  # over the first runner-up


class Recommendation(BaseModel):
    target: Target
    runs: list[str]
    answers: list[InputAnswer]

    def markdown(self) -> str:
        """The answer as Markdown (the CLI renders it; campaign artifacts embed it)."""
        objective = _objective(self.target)
        parts = [f"Target: {self.target.words()}. From runs {', '.join(self.runs)}.\n"]
        for answer in self.answers:
            parts.append(f"\n#### {md_text(answer.input_name)}\n\n")
            best = answer.recommendation
            if best is not None:
                judged = self.target.vmaf_words
                figures = [f"{_value(best, objective)} {objective.unit}",
                           f"{judged} {md_number(best.vmaf_judged)}"
                           + (f" (95 % lower bound {md_number(best.vmaf_bound)})" if best.repetitions > 1 else ""),
                           *([f"mean VMAF {md_number(best.vmaf)}"] if self.target.vmaf_percentile else []),
                           f"{md_number(best.fps)} fps", f"{md_number(best.bitrate_kbps)} kbit/s"]
                if best.joules_per_frame is not None and not objective.energy:
                    figures.append(f"{md_number(best.joules_per_frame, estimated=best.energy_estimated)} J/frame")
                parts.append(f"**Recommended: {md_text(best.config)} on {md_text(best.node)}**: "
                             + ", ".join(dict.fromkeys(figures))
                             + (", a single repetition: no interval" if best.repetitions < 2 else "") + ".\n")
                if answer.margin is not None:
                    parts.append(f"\n{md_text(answer.margin.words())}\n")
                parts.append(f"\n```\n{best.command or '(no command recorded for this configuration)'}\n```\n")
            if answer.runners_up:
                parts.append("\nRunners-up:\n\n" + _candidates_table(answer.runners_up, objective, self.target))
            if answer.interpolated:
                parts.append("\nIn between (interpolated along the fitted curves, **not measured**: measure "
                             "before relying on it):\n\n"
                             + _candidates_table(answer.interpolated, objective, self.target))
                parts += [f"\n`{c.config}`: `{c.command}`\n" for c in answer.interpolated if c.command]
            if self.target.views is not None and best is not None:
                parts.append(delivery_markdown(self.target.views, self.target.delivery_wh_per_gb,
                                               self.target.delivery_source,
                                               [(c.config, c.node, c.delivery, c.energy_estimated)
                                                for c in (best, *answer.runners_up)]))
            if best is None and answer.nearest:
                parts.append("\nNothing meets the target. Nearest:\n\n" + md_table(
                    ["configuration", "node", "what fails"],
                    [[md_text(m.config), md_text(m.node), md_text("; ".join(m.shortfalls))] for m in answer.nearest]))
            parts += [f"\n{md_text(note)}\n" for note in answer.notes]
        if any(c.energy_estimated for a in self.answers for c in _all(a)) and objective.energy:
            parts.append("\n\\* estimated: energy from busy CPU time × an assumed CPU power, not a RAPL reading.\n")
        return "".join(parts)


def _all(answer: InputAnswer) -> list[Candidate]:
    return [*([answer.recommendation] if answer.recommendation else []), *answer.runners_up, *answer.interpolated]


def _value(candidate: Candidate, objective: Objective) -> str:
    ci = "" if candidate.value_ci_pct is None else f" ± {candidate.value_ci_pct:.1f} %"
    return md_number(candidate.value, estimated=objective.energy and candidate.energy_estimated) + ci


def _candidates_table(candidates: Sequence[Candidate], objective: Objective, target: Target) -> str:
    def more(c: Candidate) -> str:
        if c.costs_more_pct is None:
            return "-"
        verdict = {True: "", False: " (not significant)", None: " (can't tell: 1 repetition)"}
        return f"{c.costs_more_pct:+.1f} %" + ("" if c.interpolated else verdict[c.significantly_more])

    def measured(c: Candidate) -> str:
        return f"between {' and '.join(c.between or ())}" if c.interpolated else str(c.repetitions)

    rows = [[md_text(c.config), md_text(c.node), _value(c, objective), more(c), md_number(c.vmaf_bound),
             md_number(c.fps_bound), measured(c)] for c in candidates]
    return md_table(["configuration", "node", objective.unit, "more than recommended",
                     f"{target.vmaf_words} (lower bound)", "fps (lower bound)", "repetitions"], rows)


# ---------------------------------------------------------------------------------------------
# Choosing the measurements


def _select_runs(results_dir: Path, scope: Scope) -> list[tuple[str, str]]:
    if scope.runs:
        return [resolve_run(results_dir, run, scope.campaign) for run in scope.runs]
    latest: dict[str, str] = {}
    for run in list_runs(results_dir, scope.campaign):  # oldest first
        latest[run.campaign] = run.run_id
    if not latest:
        where = f" for campaign {scope.campaign!r}" if scope.campaign else ""
        raise ResultsError(f"no runs under {results_dir}{where}; run a campaign first (ffwatt campaign run FILE)")
    return sorted(latest.items())


def _rows(results_dir: Path, scope: Scope, runs: list[tuple[str, str]]) -> pd.DataFrame:
    frames = [load_results(results_dir, campaign=c, run_id=r, with_run_metadata=False) for c, r in runs]
    rows = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(not f.empty for f in frames) \
        else pd.DataFrame()
    named = ", ".join(r for _, r in runs)
    if rows.empty:
        raise ResultsError(f"runs {named} have no job rows")
    for column, wanted, flag in (("node", scope.node, "--node"), ("input_name", scope.input_name, "--input")):
        if wanted is not None:
            have = sorted(rows[column].dropna().unique())
            rows = rows[rows[column] == wanted]
            if rows.empty:
                raise ResultsError(f"{flag} {wanted}: runs {named} have none; they have {', '.join(have)}")
    if scope.pool is not None:
        pools = rows["encoder"].map(lambda e: profile_for(str(e)).pool)
        have = sorted(pools.unique())
        rows = rows[pools == scope.pool]
        if rows.empty:
            raise ResultsError(f"--pool {scope.pool}: runs {named} have no encoder of that pool; "
                               f"they have pools {', '.join(have)}")
    return rows


def _bound(configs: pd.DataFrame, metric: str) -> pd.Series:
    """The lower bound of the 95 % interval, or the value itself where there is no interval."""
    low = configs.get(f"{metric}_ci_low", pd.Series(np.nan, index=configs.index))
    return low.where(low.notna(), configs[metric])


def _user_command(job: pd.Series | None, value: int | None = None) -> str | None:
    """The encode of ``job`` (an ok row of the configuration) as a user types it: ``ffwatt``'s own
    builder with ``INPUT`` and ``OUTPUT.mkv``, at rate ``value`` when given (else the row's own). None
    for a row from before the encoder options were recorded: a command without them could mislead."""
    measured = None if job is None else _rate_value(job)
    if job is None or measured is None or not isinstance(job.get("extra_args"), str):
        return None
    sizes = [job.get(c) for c in ("output_width", "output_height", "input_width", "input_height")]
    scale_to = None  # as the job did: scaled where it encoded at another size than its reference's
    if not any(v is None or pd.isna(v) for v in sizes) and sizes[:2] != sizes[2:]:
        scale_to = (int(sizes[0]), int(sizes[1]))
    threads = job.get("threads")
    pix_fmt = job.get("pix_fmt")
    return shlex.join(["ffmpeg", *encode_command(
        str(job["encoder"]), preset=None if pd.isna(job.get("preset")) else str(job["preset"]),
        rate_control=job["rate_control"], value=measured if value is None else value, source="INPUT",
        output="OUTPUT.mkv", scale_to=scale_to, threads=None if pd.isna(threads) else int(threads),
        # As the job did: 8-bit sources stay 8-bit unless it encoded another format.
        pix_fmt=None if is_missing(pix_fmt) or pix_fmt == DEFAULT_PIX_FMT else str(pix_fmt),
        extra_args=shlex.split(job["extra_args"]))])


# ---------------------------------------------------------------------------------------------
# Answering


def _rate_value(row: pd.Series) -> int | None:
    column = _RATE_COLUMN.get(str(row["rate_control"]))
    value = row.get(column) if column else None
    return None if value is None or pd.isna(value) else int(value)


def _candidate(row: pd.Series, target: Target, firsts: dict[tuple[str, str], pd.Series]) -> Candidate:
    def num(name: str) -> float | None:
        value = row.get(name)
        return None if value is None or pd.isna(value) else float(value)

    rate = _rate_value(row)
    objective = _objective(target)
    return Candidate(
        config=config_label(row), node=str(row["node"]), encoder=str(row["encoder"]),
        preset=None if pd.isna(row.get("preset")) else str(row["preset"]), rate_control=str(row["rate_control"]),
        rate_value=rate, repetitions=int(row["n"]), vmaf=num("vmaf"), vmaf_judged=num(target.vmaf_column),
        vmaf_bound=num("vmaf_bound"),
        fps=num("encode_fps"), fps_bound=num("fps_bound"), joules_per_frame=num("joules_per_frame"),
        bitrate_kbps=num("bitrate_kbps"), value=float(row[objective.column]),
        value_ci_pct=_ci_pct(num(f"{objective.column}_ci_low"), num(f"{objective.column}_ci_high"),
                             float(row[objective.column])),
        energy_estimated=bool(row.get("energy_estimated")),
        command=_user_command(firsts.get((str(row["config_id"]), str(row["node"])))))


def _ci_pct(low: float | None, high: float | None, mean: float) -> float | None:
    """An interval's half-width in percent of its mean."""
    return (high - low) / 2.0 / abs(mean) * 100.0 if low is not None and high is not None and mean else None


def _more_pct(value: float, best: float, objective: Objective) -> float:
    """How much more ``value`` costs than ``best``, in percent (for speed: time per frame)."""
    return (best / value - 1.0) * 100.0 if objective.higher_is_better else (value / best - 1.0) * 100.0


def _interpolate(points: pd.DataFrame, target: Target, objective: Objective,
                 firsts: dict[tuple[str, str], pd.Series]) -> list[Candidate]:
    """In-between settings of one rate ladder where it brackets the target (see the module doc)."""
    mode = str(points["rate_control"].iloc[0])
    column = _RATE_COLUMN.get(mode)
    if column is None:
        return []
    pts = points.dropna(subset=[column, "vmaf_bound", objective.column]).sort_values(column)
    x = pts[column].to_numpy(dtype=float)
    if len(pts) < 2 or np.any(np.diff(x) <= 0):
        return []
    quality = PchipInterpolator(x, pts["vmaf_bound"].to_numpy(dtype=float))
    out = []
    for i in range(len(pts) - 1):
        lo, hi = pts.iloc[i], pts.iloc[i + 1]
        meets_lo, meets_hi = lo["vmaf_bound"] >= target.vmaf, hi["vmaf_bound"] >= target.vmaf
        if meets_lo == meets_hi:
            continue
        anchor = lo if meets_lo else hi  # the measured end that meets the target
        if not anchor["meets_speed"]:
            continue
        # PCHIP is monotone between rungs whose values are: one crossing in [x_i, x_i+1].
        roots = [r for r in quality.solve(target.vmaf, extrapolate=False) if x[i] <= r <= x[i + 1]]
        if not roots:
            continue
        root = float(roots[0])
        inside = [v for v in range(math.floor(x[i]) + 1, math.ceil(x[i + 1]))
                  if float(quality(v)) >= target.vmaf]
        if not inside:
            continue
        setting = min(inside, key=lambda v: abs(v - root))

        def at(metric: str, log: bool = False, v: int = setting) -> float | None:
            known = pts.dropna(subset=[metric])
            xs, ys = known[column].to_numpy(dtype=float), known[metric].to_numpy(dtype=float)
            if len(xs) < 2 or not xs[0] <= v <= xs[-1] or (log and np.any(ys <= 0)):
                return None
            fitted = float(PchipInterpolator(xs, np.log(ys) if log else ys)(v))
            return math.exp(fitted) if log else fitted

        value = at(objective.column, log=True)
        fps_bound = at("fps_bound")
        need_fps = float(anchor["need_fps"])
        if value is None or (need_fps > 0 and (fps_bound is None or fps_bound < need_fps)):
            continue
        cheaper = value > anchor[objective.column] if objective.higher_is_better else value < anchor[objective.column]
        if not cheaper:
            continue
        label = config_label({**anchor.to_dict(), column: setting})
        out.append(Candidate(
            config=label, node=str(anchor["node"]), encoder=str(anchor["encoder"]),
            preset=None if pd.isna(anchor.get("preset")) else str(anchor["preset"]), rate_control=mode,
            rate_value=setting, repetitions=0, vmaf=at("vmaf"), vmaf_judged=at(target.vmaf_column),
            vmaf_bound=float(quality(setting)),
            fps=at("encode_fps"), fps_bound=fps_bound, joules_per_frame=at("joules_per_frame", log=True),
            bitrate_kbps=at("bitrate_kbps", log=True), value=value,
            energy_estimated=bool(lo.get("energy_estimated") or hi.get("energy_estimated")), interpolated=True,
            between=(_rate_words(mode, column, lo), _rate_words(mode, column, hi)),
            command=_user_command(firsts.get((str(anchor["config_id"]), str(anchor["node"]))), setting)))
    return out


def _rate_words(mode: str, column: str, row: pd.Series) -> str:
    return config_label({"encoder": "", "rate_control": mode, column: row[column]}).strip()


def _misses(configs: pd.DataFrame, target: Target, count: int) -> list[Miss]:
    misses = []
    for _, row in configs.iterrows():
        shortfalls, worst = [], 0.0
        single = " (1 repetition)" if row["n"] < 2 else " (lower bound)"
        if pd.isna(row["vmaf_bound"]):
            shortfalls.append(f"no {target.vmaf_words} measured")
            worst = math.inf
        elif row["vmaf_bound"] < target.vmaf:
            short = target.vmaf - row["vmaf_bound"]
            shortfalls.append(f"{target.vmaf_words} {row['vmaf_bound']:.2f}{single} is {short:.2f} below "
                              f"{target.vmaf:g}")
            worst = max(worst, short / target.vmaf)
        need = row["need_fps"]
        if not row["meets_speed"]:
            fps = row["fps_bound"]
            if pd.isna(need):
                shortfalls.append("no input frame rate recorded: real time can't be judged")
                worst = math.inf
            elif pd.isna(fps):
                shortfalls.append("no fps measured")
                worst = math.inf
            else:
                shortfalls.append(f"{fps:.1f} fps{single} is {need - fps:.1f} ({(need - fps) / need:.0%}) "
                                  f"below the {need:g} fps required")
                worst = max(worst, (need - fps) / need)
        if shortfalls:
            misses.append(Miss(config=config_label(row), node=str(row["node"]), shortfalls=shortfalls,
                               shortfall=worst))
    return sorted(misses, key=lambda m: m.shortfall)[:count]


def _answer(input_name: str, configs: pd.DataFrame, target: Target, firsts: dict[tuple[str, str], pd.Series],
            runners_up: int, nearest: int) -> InputAnswer:
    objective = _objective(target)
    notes = []
    configs = configs.assign(vmaf_bound=_bound(configs, target.vmaf_column), fps_bound=_bound(configs, "encode_fps"))
    # The speed required of each configuration: none (0), the input's frame rate, or a number.
    need = configs["input_fps"] if target.realtime else pd.Series(target.min_fps or 0.0, index=configs.index)
    configs["need_fps"] = need.astype(float)
    # A missing frame rate or fps compares False both ways: such a configuration doesn't meet it.
    configs["meets_speed"] = (configs["need_fps"] <= 0) | (configs["fps_bound"] >= configs["need_fps"])
    if configs["need_fps"].isna().any():
        notes.append("Some configurations have no input frame rate recorded; real time can't be judged for them.")
    meets = configs[(configs["vmaf_bound"] >= target.vmaf) & configs["meets_speed"]]
    priced = meets[meets[objective.column].notna()]
    if len(priced) < len(meets):
        why = _WHY_MISSING.get(target.minimize, f"no {objective.column}")
        notes.append(f"{len(meets) - len(priced)} configuration(s) meeting the target have {why}; left out.")
    ranked = priced.sort_values(objective.column, ascending=not objective.higher_is_better, kind="stable")

    best: Candidate | None = None
    others: list[Candidate] = []
    margin: Margin | None = None
    if not ranked.empty:
        top = ranked.iloc[0]
        best = _candidate(top, target, firsts)
        for _, row in ranked.iloc[1:runners_up + 1].iterrows():
            other = _candidate(row, target, firsts)
            other.costs_more_pct = _more_pct(other.value, best.value, objective)
            test = compare(row, top, objective.column)
            other.significantly_more = None if test.test is None else test.different
            if not others:
                interval = test.change_pct_ci if test.test is not None else None
                margin = Margin(runner_up=other.config, more_pct=other.costs_more_pct, column=objective.column,
                                interval_pct=interval, p_value=test.test.p_value if test.test else None,
                                repetitions=(best.repetitions, other.repetitions),
                                different=other.significantly_more)
            others.append(other)
        if target.views is not None:
            _with_delivery(best, top, others, ranked.iloc[1:runners_up + 1], target)
    interpolated: list[Candidate] = []
    curve_keys = [k for k in (*CURVE_COLUMNS, "node") if k in configs.columns]
    for _, ladder in configs.groupby(curve_keys, dropna=False, sort=True):
        interpolated += _interpolate(ladder, target, objective, firsts)
    interpolated.sort(key=lambda c: -c.value if objective.higher_is_better else c.value)
    if best is not None:
        # An in-between setting is worth measuring only if it would beat the recommendation.
        interpolated = [c for c in interpolated if _more_pct(c.value, best.value, objective) < 0]
        for candidate in interpolated:
            candidate.costs_more_pct = _more_pct(candidate.value, best.value, objective)
        if any(c.repetitions < 2 for c in [best, *others]):
            notes.append("A single repetition has no interval: its measured value is judged against the target; "
                         "run ≥ 2 (better 3) repetitions for a bound.")
    return InputAnswer(input_name=input_name, recommendation=best, runners_up=others, interpolated=interpolated,
                       nearest=_misses(configs, target, nearest) if best is None and meets.empty else [],
                       notes=notes, margin=margin)


def recommend(results_dir: Path, target: Target, scope: Scope | None = None, *, runners_up: int = 3,
              nearest: int = 3) -> Recommendation:
    """Per input in scope, the measured configuration that meets ``target`` for the least of
    ``target.minimize``, with runners-up, interpolated in-between settings, or the nearest misses."""
    results_dir = Path(results_dir)
    scope = scope or Scope()
    if target.realtime and target.min_fps:
        raise ResultsError("ask for real time or for a minimum fps, not both")
    runs = _select_runs(results_dir, scope)
    rows = _rows(results_dir, scope, runs)
    jobs = job_efficiency(rows)
    configs = config_efficiency(jobs)
    configs = configs[configs["n"] > 0]
    if configs.empty:
        raise ResultsError(f"runs {', '.join(r for _, r in runs)} have no successful job in scope")
    if "vmaf" not in configs.columns or configs["vmaf"].isna().all():
        raise ResultsError("no VMAF in these runs: run campaigns with `quality: [vmaf]` to ask for a VMAF target")
    if target.vmaf_column not in configs.columns or configs[target.vmaf_column].isna().all():
        raise ResultsError(f"no {target.vmaf_column} in these runs: ffwatt pools the frames' percentiles since "
                           "schema 7; run the campaign again, or ask for the mean (no --vmaf-percentile)")
    objective = OBJECTIVES[target.minimize]
    if objective.column not in configs.columns or configs[objective.column].isna().all():
        raise ResultsError(f"nothing to minimize: these runs have {_WHY_MISSING.get(target.minimize, 'no figure')}")
    ok = jobs[jobs["status"] == "ok"]
    configs = configs.merge(ok.groupby("config_id")["input_fps"].max().rename("input_fps"),
                            left_on="config_id", right_index=True, how="left")
    if target.views is not None:
        if target.minimize != "energy":
            raise ResultsError(f"views add delivery energy to encode energy: ask for --minimize energy, "
                               f"not {target.minimize}")
        configs = add_delivery(configs, target.views, target.delivery_wh_per_gb)
    # One ok row per configuration and node: what its command is built from.
    firsts = {(str(c), str(n)): row for (c, n), row in ok.groupby(["config_id", "node"]).head(1)
              .set_index(["config_id", "node"], drop=False).iterrows()}
    answers = [_answer(str(name), group, target, firsts, runners_up, nearest)
               for name, group in configs.groupby("input_name", sort=True)]
    return Recommendation(target=target, runs=[r for _, r in runs], answers=answers)


# ---------------------------------------------------------------------------------------------
# Encode + delivery (analysis.delivery): break-even views, and the answer across the published range


def _with_delivery(best: Candidate, top: pd.Series, others: list[Candidate], rows: pd.DataFrame,
                   target: Target) -> None:
    """Each candidate's encode and delivery energy per frame; each runner-up's break-even views."""
    assert target.views is not None
    best.delivery = delivery_figures(top, None, target.views, target.delivery_wh_per_gb)
    for other, (_, row) in zip(others, rows.iterrows()):
        other.delivery = delivery_figures(row, top, target.views, target.delivery_wh_per_gb)


class DeliveryRecommendation(BaseModel):
    """The recommendation for encode + delivery to ``target.views`` views, and what it is at both ends of
    the published range of delivery energy per GB."""

    recommendation: Recommendation
    range_ends: list[RangeEnd]

    def markdown(self) -> str:
        return self.recommendation.markdown() + (range_markdown(self.range_ends) if self.range_ends else "")


def recommend_with_delivery(results_dir: Path, target: Target, scope: Scope | None = None, *,
                            runners_up: int = 3) -> DeliveryRecommendation:
    """:func:`recommend` with encode + delivery energy to ``target.views`` views, and the recommendation at
    both ends of :data:`analysis.delivery.DELIVERY_RANGE`."""
    if target.views is None:
        raise ResultsError("encode + delivery needs a number of views")
    answer = recommend(results_dir, target, scope, runners_up=runners_up)
    ends = []
    for wh_per_gb, source in DELIVERY_RANGE:
        at_end = recommend(results_dir, target.model_copy(update={"delivery_wh_per_gb": wh_per_gb}), scope,
                           runners_up=0)
        for each in at_end.answers:
            best = each.recommendation
            ends.append(RangeEnd(wh_per_gb=wh_per_gb, source=source, input_name=each.input_name,
                                 config=best.config if best else None, node=best.node if best else None,
                                 total_j_per_frame=best.value if best else None,
                                 bitrate_kbps=best.bitrate_kbps if best else None))
    return DeliveryRecommendation(recommendation=answer, range_ends=ends)
