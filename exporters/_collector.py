"""What every exporter shares: the collector interface, per-collector error isolation,
and a background sampler for sources that must be read between scrapes.

As in node_exporter, each collector is small and reads one source; the
:class:`CollectorSet` runs them all on each scrape and always reports, per
collector, ``ffwatt_scrape_collector_success`` and
``ffwatt_scrape_collector_duration_seconds``, so one failing source never
blanks the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PrometheusCollector

__all__ = ["NAMESPACE", "Collector", "CollectorSet", "Sampler"]

NAMESPACE = "ffwatt"
log = logging.getLogger("ffwatt.exporters")


class Collector(Protocol):
    """One source of readings."""

    name: str

    def collect(self) -> Iterable[Metric]: ...


class CollectorSet(PrometheusCollector):
    """Runs every collector on each scrape; a failing one is reported, not fatal."""

    def __init__(self, collectors: list[Collector]) -> None:
        self.collectors = collectors

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not touch hardware

    def collect(self) -> Iterable[Metric]:
        success = GaugeMetricFamily(f"{NAMESPACE}_scrape_collector_success",
                                    "Whether a collector succeeded (1) or failed (0) on this scrape.",
                                    labels=["collector"])
        duration = GaugeMetricFamily(f"{NAMESPACE}_scrape_collector_duration_seconds",
                                     "How long a collector took on this scrape.", labels=["collector"])
        for collector in self.collectors:
            start = time.perf_counter()
            try:
                metrics = list(collector.collect())
            except Exception:
                log.exception("collector %s failed", collector.name)
                metrics, ok = [], 0.0
            else:
                ok = 1.0
            yield from metrics
            success.add_metric([collector.name], ok)
            duration.add_metric([collector.name], time.perf_counter() - start)
        yield success
        yield duration


class Sampler:
    """Calls ``sample`` every ``interval_s`` on a daemon thread until :meth:`stop`.

    For sources that must be read between scrapes (a RAPL counter that wraps) or
    that are too slow to read on a scrape (NVML, ~3.5 ms a call).
    """

    def __init__(self, name: str, interval_s: float, sample: Callable[[], None]) -> None:
        self._interval = interval_s
        self._sample = sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sampler-{name}", daemon=True)
        self.errors = 0

    def start(self) -> Sampler:
        self._sample()  # the first reading before the first scrape
        self._thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic() + self._interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self._interval
            try:
                self._sample()
            except Exception:
                self.errors += 1
                log.exception("sampler %s failed", self._thread.name)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
