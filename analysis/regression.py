"""Run against run: what changed for each configuration, whether it is significant, and what
changed on the nodes that ran them.

One engine serves ``ffwatt compare``, the report's ``--compare``, the scheduled
regression flow and its artifact. A configuration is compared when both runs have it
(the same ``config_id``) on the same node; when the runs share no node at all (one
machine against another) it is compared across their nodes. Each metric's change is
judged by Welch's t-test (:func:`analysis.stats.compare`) at level ``alpha``; a
*regression* is a significant change in the worse direction (:data:`WORSE_WHEN`)
larger than a threshold. Changes in joules per frame are estimated when either side's
energy was.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel

from analysis.efficiency import config_efficiency
from analysis.load import load_results, resolve_run, run_summary
from analysis.markdown import md_table, md_text
from analysis.stats import compare
from ffwatt.errors import ResultsError
from ffwatt.nodefacts import NodeFacts
from ffwatt.results import RunSummary, list_runs
from ffwatt.schema import config_label, is_missing

__all__ = [
    "METRIC_NAMES",
    "NODE_FACTS",
    "WORSE_WHEN",
    "ConfigChange",
    "FactChange",
    "MetricChange",
    "RunComparison",
    "RunRef",
    "campaign_history",
    "compare_runs",
    "previous_run",
]

# The figures compared, and which way is worse. Bitrate counts as worse when it rises: at a
# fixed CRF/QP that is the same quality for more bits (check VMAF beside it).
WORSE_WHEN: dict[str, Literal["higher", "lower"]] = {
    "joules_per_frame": "higher", "encode_fps": "lower", "vmaf": "lower", "bitrate_kbps": "higher",
}
METRIC_NAMES = {"joules_per_frame": "J/frame", "encode_fps": "fps", "vmaf": "VMAF", "bitrate_kbps": "kbit/s"}
_ENERGY_METRICS = frozenset({"joules_per_frame"})
# What about a node can explain a change: shown beside the changes when it differs.
NODE_FACTS: tuple[str, ...] = ("ffmpeg_version", "ffmpeg_configuration", "gpu_driver", "kernel", "governor",
                               "turbo", "max_frequency_hz", "cpu_model", "logical_cpus", "cpu_energy")

Verdict = Literal["better", "worse", "no significant change", "cannot decide"]


def _num(value: object) -> float | None:
    return None if is_missing(value) else float(value)  # type: ignore[arg-type]


class MetricChange(BaseModel):
    """One metric of one configuration: baseline and candidate means with their 95 % intervals,
    the candidate's change relative to the baseline, and the verdict of Welch's test."""

    metric: str
    baseline: float | None
    baseline_ci: tuple[float | None, float | None]
    candidate: float | None
    candidate_ci: tuple[float | None, float | None]
    change_pct: float | None
    change_pct_ci: tuple[float | None, float | None]
    p_value: float | None
    verdict: Verdict
    why: str = ""  # why it cannot decide
    estimated: bool = False

    def regressed(self, threshold_pct: float) -> bool:
        """Significantly worse, by more than ``threshold_pct`` percent."""
        return self.verdict == "worse" and self.change_pct is not None and abs(self.change_pct) > threshold_pct

    def cell(self) -> str:
        """The change in a few characters, e.g. ``+10.2 % [+6.1, +14.3] worse``."""
        if self.change_pct is None:
            return "-"
        star = "*" if self.estimated else ""
        low, high = self.change_pct_ci
        interval = f" [{low:+.1f}, {high:+.1f}]" if low is not None and high is not None else ""
        verdict = {"no significant change": "same", "cannot decide": "can't tell"}.get(self.verdict, self.verdict)
        return f"{self.change_pct:+.1f} %{star}{interval} {verdict}"


class ConfigChange(BaseModel):
    """A configuration present in both runs, and how each metric changed."""

    config: str
    config_id: str
    node_baseline: str
    node_candidate: str
    n_baseline: int
    n_candidate: int
    metrics: list[MetricChange]

    @property
    def node(self) -> str:
        same = self.node_baseline == self.node_candidate
        return self.node_baseline if same else f"{self.node_baseline} → {self.node_candidate}"

    def metric(self, name: str) -> MetricChange | None:
        return next((m for m in self.metrics if m.metric == name), None)


class FactChange(BaseModel):
    """A node fact that differs between the runs (for the FFmpeg build: the configure flags
    only the baseline has, and those only the candidate has)."""

    node_baseline: str
    node_candidate: str
    fact: str
    baseline: str | None
    candidate: str | None


class RunRef(BaseModel):
    campaign: str
    run_id: str
    started_at: datetime | None


class RunComparison(BaseModel):
    """Every configuration both runs have, compared; what changed on their nodes."""

    baseline: RunRef
    candidate: RunRef
    alpha: float
    test: str = "Welch's two-sided t-test on the repetitions"
    configs: list[ConfigChange]
    only_in_baseline: list[str]
    only_in_candidate: list[str]
    node_changes: list[FactChange]
    notes: list[str]

    def regressions(self, threshold_pct: float,
                    metrics: Iterable[str] | None = None) -> list[tuple[ConfigChange, MetricChange]]:
        """(configuration, metric) pairs significantly worse by more than ``threshold_pct`` %."""
        wanted = set(metrics) if metrics is not None else set(WORSE_WHEN)
        return [(c, m) for c in self.configs for m in c.metrics if m.metric in wanted and m.regressed(threshold_pct)]

    def undecided(self) -> list[ConfigChange]:
        """Configurations with too few repetitions for the test on some metric."""
        return [c for c in self.configs if any(m.verdict == "cannot decide" for m in c.metrics)]

    def headline(self, threshold_pct: float | None = None) -> str:
        """One sentence: the regressions over the threshold, or the count of significant changes."""
        base = f"{len(self.configs)} configurations compared"
        undecided = len(self.undecided())
        tail = f"; {undecided} with a single repetition on a side, which the test cannot judge" if undecided else ""
        if threshold_pct is None:
            worse = sum(m.verdict == "worse" for c in self.configs for m in c.metrics)
            better = sum(m.verdict == "better" for c in self.configs for m in c.metrics)
            return f"{base}: {worse} significant changes for the worse, {better} for the better{tail}."
        found = self.regressions(threshold_pct)
        if not found:
            return f"{base}: no significant regression over {threshold_pct:g} %{tail}."
        items = ", ".join(f"{c.config} on {c.node}: {METRIC_NAMES.get(m.metric, m.metric)} {m.change_pct:+.1f} %"
                          for c, m in found)
        return f"{base}: {len(found)} significant regression(s) over {threshold_pct:g} %: {items}{tail}."

    def markdown(self, threshold_pct: float | None = None) -> str:
        """The comparison as Markdown, for an artifact or an issue."""
        b, c = self.baseline, self.candidate
        parts = [f"## Run {c.run_id} ({c.campaign}) against {b.run_id} ({b.campaign})\n\n",
                 f"**{self.headline(threshold_pct)}**\n\n",
                 f"Change = candidate against baseline, with its 95 % interval; significance by {self.test} "
                 f"at α = {self.alpha:g}. * = estimated energy.\n\n"]
        if self.configs:
            headers = ["configuration", "node", "reps", *(METRIC_NAMES[m] for m in WORSE_WHEN)]
            rows = [[md_text(x.config), md_text(x.node), f"{x.n_baseline}→{x.n_candidate}",
                     *(md_text(m.cell() if (m := x.metric(name)) else "-") for name in WORSE_WHEN)]
                    for x in self.configs]
            parts.append(md_table(headers, rows))
        parts.append("\n### What changed on the nodes\n\n")
        if self.node_changes:
            parts.append(md_table(["node", "fact", "baseline", "candidate"],
                                  [[md_text(f.node_baseline if f.node_baseline == f.node_candidate
                                            else f"{f.node_baseline} → {f.node_candidate}"),
                                    f.fact, md_text(f.baseline), md_text(f.candidate)] for f in self.node_changes]))
        else:
            parts.append("Nothing recorded differs: " + ", ".join(NODE_FACTS) + ".\n")
        for label, names in (("Only in the baseline", self.only_in_baseline),
                             ("Only in the candidate", self.only_in_candidate)):
            if names:
                parts.append(f"\n{label}: " + "; ".join(md_text(n) for n in names) + "\n")
        parts += [f"\n{md_text(note)}\n" for note in self.notes]
        return "".join(parts)


def _metric_change(cand: pd.Series, base: pd.Series, metric: str, alpha: float) -> MetricChange:
    result = compare(cand, base, metric, alpha=alpha)
    if result.test is None:
        verdict: Verdict = "cannot decide"
    elif not result.different:
        verdict = "no significant change"
    else:
        higher = result.verdict == "a higher"
        verdict = "worse" if higher == (WORSE_WHEN[metric] == "higher") else "better"
    estimated = metric in _ENERGY_METRICS and bool(cand.get("energy_estimated") or base.get("energy_estimated"))
    pct = _num(result.change_pct)
    low, high = result.change_pct_ci
    return MetricChange(
        metric=metric, baseline=_num(result.b_mean), baseline_ci=(_num(result.b_ci[0]), _num(result.b_ci[1])),
        candidate=_num(result.a_mean), candidate_ci=(_num(result.a_ci[0]), _num(result.a_ci[1])),
        change_pct=pct, change_pct_ci=(_num(low), _num(high)),
        p_value=result.test.p_value if result.test else None, verdict=verdict,
        why=result.verdict if result.test is None else "", estimated=estimated)


def _pairs(base: pd.DataFrame, cand: pd.DataFrame) -> pd.DataFrame:
    """Rows of both runs joined per configuration: on the node too when the runs share one."""
    shared = set(base["node"].dropna()) & set(cand["node"].dropna())
    keys = ["config_id", "node"] if shared else ["config_id"]
    return cand.merge(base, on=keys, suffixes=("", "_base"))


def _fact_text(facts: NodeFacts, name: str) -> str | None:
    value = getattr(facts, name)
    return None if value is None else str(value)


def _node_changes(pairs: set[tuple[str, str]], base: RunSummary | None,
                  cand: RunSummary | None) -> tuple[list[FactChange], list[str]]:
    changes: list[FactChange] = []
    notes: list[str] = []
    for summary, which in ((base, "baseline"), (cand, "candidate")):
        if summary is None:
            notes.append(f"The {which} run has no _run.json (interrupted or still going): its node facts are unknown.")
        elif summary.control is not None and summary.control.unstable:
            notes.append(f"The {which} run is flagged unstable, so changes may be its node's: "
                         f"{summary.control.words()}.")
    if base is None or cand is None:
        return changes, notes
    for node_b, node_c in sorted(pairs):
        fb, fc = base.nodes.get(node_b), cand.nodes.get(node_c)
        if fb is None or fc is None:
            notes.append(f"No facts recorded for node {node_b if fb is None else node_c}.")
            continue
        for name in NODE_FACTS:
            before, after = _fact_text(fb, name), _fact_text(fc, name)
            if before == after:
                continue
            if name == "ffmpeg_configuration" and before and after:
                # Kilobytes of configure flags: what only one side has is what changed.
                flags_b, flags_c = set(shlex.split(before)), set(shlex.split(after))
                before, after = " ".join(sorted(flags_b - flags_c)), " ".join(sorted(flags_c - flags_b))
            changes.append(FactChange(node_baseline=node_b, node_candidate=node_c, fact=name,
                                      baseline=before, candidate=after))
    return changes, notes


def _configs(results_dir: Path, campaign: str, run_id: str) -> pd.DataFrame:
    rows = load_results(results_dir, campaign=campaign, run_id=run_id, with_run_metadata=False)
    if rows.empty:
        raise ResultsError(f"run {run_id} under {results_dir} has no job rows")
    configs = config_efficiency(rows)
    return configs[configs["n"] > 0].reset_index(drop=True)


def _ref(results_dir: Path, campaign: str, run_id: str, summary: RunSummary | None) -> RunRef:
    return RunRef(campaign=campaign, run_id=run_id, started_at=summary.started_at if summary else None)


def compare_runs(results_dir: Path, baseline: str, candidate: str, *, campaign: str | None = None,
                 alpha: float = 0.05) -> RunComparison:
    """Compare run ``candidate`` against run ``baseline`` (ids, or ``latest``) per configuration."""
    results_dir = Path(results_dir)
    base_campaign, base_id = resolve_run(results_dir, baseline, campaign)
    cand_campaign, cand_id = resolve_run(results_dir, candidate, campaign)
    base_summary = run_summary(results_dir, base_campaign, base_id)
    cand_summary = run_summary(results_dir, cand_campaign, cand_id)
    base = _configs(results_dir, base_campaign, base_id)
    cand = _configs(results_dir, cand_campaign, cand_id)
    joined = _pairs(base, cand)
    node_base = joined["node_base"] if "node_base" in joined.columns else joined["node"]

    configs = []
    for (_, row), nb in zip(joined.iterrows(), node_base):
        base_row = pd.Series({k[:-5]: v for k, v in row.items() if k.endswith("_base")})
        # A figure neither run measured (no quality pass, no energy reading) is left out, not undecided.
        metrics = [_metric_change(row, base_row, metric, alpha) for metric in WORSE_WHEN
                   if not (is_missing(row.get(metric)) and is_missing(base_row.get(metric)))]
        configs.append(ConfigChange(config=config_label(row, with_input=True), config_id=str(row["config_id"]),
                                    node_baseline=str(nb), node_candidate=str(row["node"]),
                                    n_baseline=int(row["n_base"]), n_candidate=int(row["n"]), metrics=metrics))
    paired = set(joined["config_id"])
    changes, notes = _node_changes({(c.node_baseline, c.node_candidate) for c in configs},
                                   base_summary, cand_summary)
    if not configs:
        notes.append("The runs have no configuration in common (same config_id"
                     + (" on the same node)." if set(base["node"]) & set(cand["node"]) else ")."))
    return RunComparison(
        baseline=_ref(results_dir, base_campaign, base_id, base_summary),
        candidate=_ref(results_dir, cand_campaign, cand_id, cand_summary),
        alpha=alpha, configs=configs,
        only_in_baseline=sorted({config_label(r, with_input=True) for _, r in base.iterrows()
                                 if r["config_id"] not in paired}),
        only_in_candidate=sorted({config_label(r, with_input=True) for _, r in cand.iterrows()
                                  if r["config_id"] not in paired}),
        node_changes=changes, notes=notes)


def previous_run(results_dir: Path, campaign: str, run_id: str) -> str | None:
    """The newest complete run of ``campaign`` that started before ``run_id`` on a node it shares
    with it; None when there is none. Runs cut short (interrupted, crashed) are never a baseline."""
    results_dir = Path(results_dir)
    current = run_summary(results_dir, campaign, run_id)
    if current is None:
        raise ResultsError(f"run {run_id} of campaign {campaign!r} has no _run.json yet; compare once it has ended")
    best: tuple[datetime, str] | None = None
    for run in list_runs(results_dir, campaign):
        summary = run.summary
        if run.run_id == run_id or summary is None or summary.observed_state() != "complete":
            continue
        if summary.started_at >= current.started_at or not set(summary.nodes) & set(current.nodes):
            continue
        if best is None or summary.started_at > best[0]:
            best = (summary.started_at, run.run_id)
    return best[1] if best else None


def campaign_history(results_dir: Path, campaign: str, metric: str = "joules_per_frame") -> pd.DataFrame:
    """Per run of ``campaign`` × configuration × node: ``started_at`` (the run's), ``config``
    (label), ``metric`` mean, ``metric_ci_low``/``_ci_high`` and ``energy_estimated``, oldest first."""
    rows = load_results(Path(results_dir), campaign=campaign, with_run_metadata=False)
    if rows.empty:
        return pd.DataFrame(columns=["run_id", "started_at", "config", "node", metric])
    configs = config_efficiency(rows, by=("node", "run_id"))
    configs = configs[configs["n"] > 0]
    starts = rows.groupby("run_id")["started_at"].min()
    for run_id in starts.index:
        summary = run_summary(Path(results_dir), campaign, str(run_id))
        if summary is not None:
            starts[run_id] = summary.started_at
    out = configs.assign(config=[config_label(r, with_input=True) for _, r in configs.iterrows()],
                         started_at=pd.to_datetime(configs["run_id"].map(starts), utc=True))
    columns = ["run_id", "started_at", "config", "node", metric, f"{metric}_ci_low", f"{metric}_ci_high",
               "energy_estimated"]
    return out[[c for c in columns if c in out.columns]].sort_values(["started_at", "config"]).reset_index(drop=True)
