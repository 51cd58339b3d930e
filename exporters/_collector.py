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

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PrometheusCollector

from ffwatt.errors import StaleSample

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
        samplers = [s for c in self.collectors if (s := getattr(c, "sampler", None)) is not None]
        if samplers:
            age = GaugeMetricFamily(f"{NAMESPACE}_sampler_last_success_age_seconds",
                                    "Seconds since a background sampler last read its source successfully.",
                                    labels=["sampler"])
            errors = CounterMetricFamily(f"{NAMESPACE}_sampler_errors",
                                         "Background samples that failed since the exporter started.",
                                         labels=["sampler"])
            for sampler in samplers:
                sampler_age = sampler.age_s()
                if sampler_age is not None:
                    age.add_metric([sampler.name], sampler_age)
                errors.add_metric([sampler.name], float(sampler.errors))
            yield age
            yield errors


class Sampler:
    """Calls ``sample`` every ``interval_s`` on a daemon thread until :meth:`stop`.

    For sources that must be read between scrapes (a RAPL counter that wraps) or
    that are too slow to read on a scrape (NVML, ~3.5 ms a call). Its health is
    exported (``ffwatt_sampler_*``), and :meth:`check` makes the collector that serves
    its readings fail once the latest good sample is stale, instead of serving old
    values as if they were new.
    """

    def __init__(self, name: str, interval_s: float, sample: Callable[[], None], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.interval_s = interval_s
        self._sample = sample
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sampler-{name}", daemon=True)
        self.errors = 0
        self.last_success_at: float | None = None

    @property
    def stale_after_s(self) -> float:
        return max(3 * self.interval_s, 5.0)

    def start(self) -> Sampler:
        self._sample_once()  # the first reading before the first scrape
        self._thread.start()
        return self

    def _sample_once(self) -> None:
        try:
            self._sample()
        except Exception:
            self.errors += 1
            log.exception("sampler %s failed", self.name)
        else:
            self.last_success_at = self._clock()

    def _run(self) -> None:
        next_at = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.interval_s
            self._sample_once()

    def age_s(self) -> float | None:
        """Seconds since the latest good sample (None before the first)."""
        return None if self.last_success_at is None else self._clock() - self.last_success_at

    def check(self) -> None:
        """Raise :class:`StaleSample` when there is no good sample younger than :attr:`stale_after_s`."""
        age = self.age_s()
        if age is None or age > self.stale_after_s or not self._thread.is_alive():
            state = "never sampled" if age is None else f"last good sample {age:.1f} s ago"
            alive = "" if self._thread.is_alive() else ", sampler thread not running"
            raise StaleSample(f"sampler {self.name}: {state}{alive} ({self.errors} errors)")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
