"""Campaign results as metrics: each campaign's latest run, per configuration and node, for the
campaign-efficiency dashboard. Served by the master's discovery service at ``/metrics``.

The figures are :func:`analysis.config_efficiency`'s means over the ok repetitions, so the
dashboard shows the numbers the report shows. Labels are bounded: one series per
configuration of each campaign's latest run (an older run's series go when a newer run
of its campaign appears), and ``estimated="true"`` marks a figure whose energy rests, in
any part, on an estimate (:func:`ffwatt.schema.is_estimated`). Parquet is read again only
when a run's files change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from exporters._collector import NAMESPACE
from ffwatt.results import list_runs, read_results
from ffwatt.schema import config_label, is_missing

__all__ = ["ResultsCollector"]

_LABELS = ["campaign", "run_id", "config", "config_id", "encoder", "preset", "node", "estimated"]
# (metric suffix, help, config_efficiency column)
_FIGURES = (
    ("joules_per_frame", "Mean energy per frame of a configuration in its campaign's latest run (J).",
     "joules_per_frame"),
    ("vmaf_per_joule", "Mean VMAF per joule of a configuration in its campaign's latest run.", "vmaf_per_joule"),
    ("vmaf", "Mean VMAF of a configuration in its campaign's latest run.", "vmaf"),
    ("encode_fps", "Mean encoding rate of a configuration in its campaign's latest run (frames/s).", "encode_fps"),
    ("jobs", "Ok repetitions behind a configuration's figures in its campaign's latest run.", "n"),
)


class ResultsCollector:
    name = "results"

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = results_dir
        self._key: tuple[tuple[str, str, float], ...] = ()
        self._rows: list[tuple[list[str], dict[str, float]]] = []

    def start(self) -> ResultsCollector:
        return self

    def stop(self) -> None:
        pass

    def _latest_runs(self) -> tuple[tuple[str, str, float], ...]:
        latest: dict[str, tuple[str, str, float]] = {}
        for run in list_runs(self.results_dir):  # oldest first: the last one wins
            latest[run.campaign] = (run.campaign, run.run_id, run.modified)
        return tuple(sorted(latest.values()))

    def _load(self, runs: tuple[tuple[str, str, float], ...]) -> list[tuple[list[str], dict[str, float]]]:
        # Here, not at the top: the analysis room (pandas, scipy, matplotlib) takes seconds to import, and
        # the discovery service must answer /targets at once, before any campaign has written results.
        from analysis.efficiency import config_efficiency

        rows = []
        for campaign, run_id, _ in runs:
            frame = read_results(self.results_dir, campaign=campaign, run_id=run_id)
            for config in config_efficiency(frame).to_dict("records"):
                labels = [campaign, run_id, config_label(config, with_input=True), str(config["config_id"]),
                          str(config["encoder"]), _text(config.get("preset")), _text(config.get("node")),
                          "true" if config["energy_estimated"] else "false"]
                rows.append((labels, {column: float(config[column]) for _, _, column in _FIGURES
                                      if _number(config.get(column))}))
        return rows

    def collect(self) -> Iterable[Metric]:
        runs = self._latest_runs() if self.results_dir.is_dir() else ()
        if runs != self._key:
            self._rows, self._key = self._load(runs), runs
        families = {column: GaugeMetricFamily(f"{NAMESPACE}_results_{suffix}", text, labels=_LABELS)
                    for suffix, text, column in _FIGURES}
        for labels, values in self._rows:
            for column, value in values.items():
                families[column].add_metric(labels, value)
        return list(families.values())


def _text(value: Any) -> str:
    return "" if is_missing(value) else str(value)


def _number(value: Any) -> bool:
    return not is_missing(value) and math.isfinite(float(value))
