"""Capacity planning from a density sweep: to encode H hours of this content a day at this configuration,
how many nodes, how many kWh a day, what cost and CO2.

Everything rests on measured figures of one sweep step (N copies at once on one node), shown beside the
answer: its aggregate frames/s and its joules per frame, each a mean over the step's repetitions with its
95 % interval where there are two or more, and the node's idle power.

    frames a day       = H × 3600 × input fps
    node-seconds a day = frames a day / aggregate fps            (busy time, spread over the nodes)
    nodes              = ⌈ node-seconds a day / (node hours × 3600) ⌉
    encoding kWh/day   = frames a day × J/frame / 3.6e6          (the node's whole draw while it encodes)
    idle kWh/day       = (nodes × node hours × 3600 − node-seconds a day) × idle W / 3.6e6
    cost, CO2          = kWh × price per kWh, × g CO2 per kWh

The interval of each answer takes the ends of the intervals it rests on (the low end: the high end of
frames/s and the low end of J/frame). Estimated energy stays marked estimated.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, Field

from analysis.density import density_outcomes, density_steps
from analysis.load import load_results, resolve_run
from analysis.markdown import md_table, md_text
from ffwatt.errors import ResultsError
from ffwatt.schema import is_missing

__all__ = ["Figure", "NodePlan", "Plan", "plan"]

_J_PER_KWH = 3.6e6


class Figure(BaseModel):
    """A number, its 95 % interval where repetitions give one, and whether it rests on estimated energy."""

    value: float | None
    low: float | None = None
    high: float | None = None
    estimated: bool = False


class NodePlan(BaseModel):
    """One configuration's plan, and the measured figures it rests on."""

    input_name: str
    config: str
    node: str
    concurrency: int
    why_concurrency: str
    repetitions: int
    input_fps: float
    aggregate_fps: Figure
    joules_per_frame: Figure
    idle_power_w: Figure
    nodes: Figure
    busy_node_hours: Figure
    kwh_per_day: Figure
    encoding_kwh_per_day: Figure
    idle_kwh_per_day: Figure
    cost_per_day: Figure | None
    co2_kg_per_day: Figure | None
    notes: list[str] = []


class Plan(BaseModel):
    hours_per_day: float = Field(gt=0)
    node_hours_per_day: float = Field(gt=0, le=24)
    price_per_kwh: float | None
    co2_g_per_kwh: float | None
    campaign: str
    run_id: str
    plans: list[NodePlan]

    def markdown(self) -> str:
        """The plan as Markdown: the answer per configuration, then the measured figures it rests on."""
        head = (f"To encode **{self.hours_per_day:g} hours of content a day**, nodes working "
                f"{self.node_hours_per_day:g} h a day, from run {self.run_id} of campaign "
                f"{md_text(self.campaign)}:\n\n")
        answer = md_table(
            ["input", "configuration", "node type", "copies at once", "nodes", "kWh/day (encoding + idle)",
             "cost/day", "kg CO2/day"],
            [[md_text(p.input_name), md_text(p.config), md_text(p.node),
              f"{p.concurrency} ({md_text(p.why_concurrency)})", _words(p.nodes, 0),
              f"{_words(p.kwh_per_day, 2)} ({_words(p.encoding_kwh_per_day, 2)} + {_words(p.idle_kwh_per_day, 2)})",
              _words(p.cost_per_day, 2), _words(p.co2_kg_per_day, 3)] for p in self.plans])
        rests = md_table(
            ["configuration", "node", "copies", "repetitions", "aggregate fps", "J/frame", "idle W", "input fps",
             "busy node-hours/day"],
            [[md_text(p.config), md_text(p.node), str(p.concurrency), str(p.repetitions), _words(p.aggregate_fps, 1),
              _words(p.joules_per_frame, 4), _words(p.idle_power_w, 1), f"{p.input_fps:g}",
              _words(p.busy_node_hours, 1)] for p in self.plans])
        notes = sorted({note for p in self.plans for note in p.notes})
        text = head + answer + "\nIntervals (in brackets after a figure) are 95 % over the step's repetitions.\n"
        if self.price_per_kwh is None or self.co2_g_per_kwh is None:
            text += ("\nCost and CO2 need a price and a grid intensity: --price-per-kwh / --co2-g-per-kwh, or "
                     "FFWATT_PRICE_PER_KWH / FFWATT_CO2_G_PER_KWH.\n")
        text += "\nMeasured figures the plan rests on (means over the step's ok repetitions):\n\n" + rests
        text += "".join(f"\n- {md_text(note)}" for note in notes) + ("\n" if notes else "")
        if any(p.joules_per_frame.estimated for p in self.plans):
            text += ("\n\\* estimated: energy from busy CPU time × an assumed CPU power, not a RAPL reading; so is "
                     "every kWh, cost and CO2 figure resting on it.\n")
        return text


def _words(figure: Figure | None, digits: int) -> str:
    """A figure with its interval, ``*`` where it rests on estimated energy."""
    if figure is None or figure.value is None:
        return "-"
    mark = "\\*" if figure.estimated else ""
    text = f"{figure.value:.{digits}f}{mark}"
    if figure.low is not None and figure.high is not None and (figure.low, figure.high) != (figure.value,) * 2:
        text += f" ({figure.low:.{digits}f}–{figure.high:.{digits}f})"
    return text


def _figure(row: pd.Series, name: str, estimated: bool = False) -> Figure:
    def get(column: str) -> float | None:
        value = row.get(column)
        return None if is_missing(value) else float(value)

    return Figure(value=get(name), low=get(f"{name}_ci_low"), high=get(f"{name}_ci_high"), estimated=estimated)


def _arith(frames_per_day: float, fps: float, jpf: float, idle_w: float | None, node_hours: float
           ) -> tuple[int, float, float, float]:
    """(nodes, busy node-hours, encoding kWh, idle kWh) a day at ``fps`` and ``jpf``."""
    busy_s = frames_per_day / fps
    nodes = max(1, math.ceil(busy_s / (node_hours * 3600) - 1e-9))
    encoding = frames_per_day * jpf / _J_PER_KWH
    idle = (nodes * node_hours * 3600 - busy_s) * idle_w / _J_PER_KWH if idle_w is not None else 0.0
    return nodes, busy_s / 3600, encoding, idle


def _node_plan(step: pd.Series, why: str, idle_w: float | None, hours: float, node_hours: float,
               price: float | None, co2: float | None) -> NodePlan:
    estimated = bool(step["energy_estimated"])
    fps, jpf = _figure(step, "encode_fps"), _figure(step, "joules_per_frame", estimated)
    assert fps.value is not None and jpf.value is not None
    input_fps = float(step["input_fps"])
    frames = hours * 3600 * input_fps
    mid = _arith(frames, fps.value, jpf.value, idle_w, node_hours)
    has_ci = fps.low is not None and fps.high is not None and jpf.low is not None and jpf.high is not None \
        and fps.low > 0
    # The low end: the most frames/s and the fewest J/frame; the high end, the other way round.
    low = _arith(frames, fps.high, jpf.low, idle_w, node_hours) if has_ci else None  # type: ignore[arg-type]
    high = _arith(frames, fps.low, jpf.high, idle_w, node_hours) if has_ci else None  # type: ignore[arg-type]

    def fig(index: int, energy: bool = True, scale: float = 1.0, total: bool = False) -> Figure:
        def pick(values: tuple[int, float, float, float] | None) -> float | None:
            if values is None:
                return None
            return (values[2] + values[3] if total else values[index]) * scale
        return Figure(value=pick(mid), low=pick(low), high=pick(high), estimated=estimated and energy)

    kwh = fig(0, total=True)
    notes = []
    if idle_w is None:
        notes.append("no idle baseline in this run: kWh counts the encoding only, not the nodes idling between")
    if not has_ci:
        notes.append(f"{int(step['n'])} repetition(s) of this step: no interval; run repetitions: 3 for one")
    return NodePlan(
        input_name=str(step["input_name"]), config=str(step["config"]), node=str(step["node"]),
        concurrency=int(step["concurrency"]), why_concurrency=why, repetitions=int(step["n"]), input_fps=input_fps,
        aggregate_fps=fps, joules_per_frame=jpf, idle_power_w=Figure(value=idle_w, estimated=estimated),
        nodes=fig(0, energy=False), busy_node_hours=fig(1, energy=False), kwh_per_day=kwh,
        encoding_kwh_per_day=fig(2), idle_kwh_per_day=fig(3),
        cost_per_day=fig(0, total=True, scale=price) if price is not None else None,
        co2_kg_per_day=fig(0, total=True, scale=co2 / 1000) if co2 is not None else None, notes=notes)


def plan(results_dir: Path, hours_per_day: float, *, run: str = "latest", campaign: str | None = None,
         node_hours_per_day: float = 24.0, concurrency: int | None = None, input_name: str | None = None,
         price_per_kwh: float | None = None, co2_g_per_kwh: float | None = None) -> Plan:
    """The plan for each density sweep of a run (its latest with density steps, or ``run``): at
    ``concurrency`` copies at once, else at the N with the most frames per joule."""
    results_dir = Path(results_dir)
    campaign, run_id = resolve_run(results_dir, run, campaign)
    rows = load_results(results_dir, campaign=campaign, run_id=run_id, with_run_metadata=False)
    steps = density_steps(rows)
    if steps.empty:
        raise ResultsError(f"run {run_id} of campaign {campaign} has no density sweep steps; run a campaign with a "
                           "density: section (deployments/campaigns/density.yaml) and plan from that run")
    if input_name is not None:
        have = sorted(steps["input_name"].unique())
        steps = steps[steps["input_name"] == input_name]
        if steps.empty:
            raise ResultsError(f"--input {input_name}: run {run_id} has density steps of {', '.join(have)} only")
    outcomes = density_outcomes(rows).set_index(["node", "density_sweep_id"])
    idle = rows.groupby("node")["idle_power_w"].mean() if "idle_power_w" in rows else pd.Series(dtype=float)
    plans = []
    for (node, sweep_id), sweep in steps.groupby(["node", "density_sweep_id"], sort=True):
        measured = sweep[sweep["n"] > 0]
        if concurrency is not None:
            chosen = measured[measured["concurrency"] == concurrency]
            if chosen.empty:
                raise ResultsError(f"--concurrency {concurrency}: {sweep.iloc[0]['config']} on {node} was measured "
                                   f"at {', '.join(str(n) for n in measured['concurrency'])} copies at once")
            why = "asked for (--concurrency)"
        else:
            best = outcomes.loc[(node, sweep_id)]
            if is_missing(best["best_n"]):
                continue
            chosen = measured[measured["concurrency"] == int(best["best_n"])]
            why = "the most frames per joule measured"
        idle_w = idle.get(node)
        plans.append(_node_plan(chosen.iloc[0], why, None if is_missing(idle_w) else float(idle_w),
                                hours_per_day, node_hours_per_day, price_per_kwh, co2_g_per_kwh))
    if not plans:
        raise ResultsError(f"run {run_id}: no density step ran ok; nothing to plan from")
    return Plan(hours_per_day=hours_per_day, node_hours_per_day=node_hours_per_day, price_per_kwh=price_per_kwh,
                co2_g_per_kwh=co2_g_per_kwh, campaign=campaign, run_id=run_id, plans=plans)
