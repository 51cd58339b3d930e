"""CPU energy: RAPL powercap zones (Intel and AMD Zen), or a labelled estimate.

A background sampler reads every zone's ``energy_uj`` often enough that no counter
wraps twice between reads, and accumulates wrap-corrected joules. Zones are
labelled, never summed: packages, their subzones (core, uncore, dram) and psys
overlap, and a package seen through both intel-rapl and intel-rapl-mmio is
exported once. Where the counters can't be read, ``ffwatt_rapl_readable`` is 0
with the reason, and separate ``ffwatt_cpu_estimated_*`` series carry the
estimate from /proc/stat and the CPU power model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters._collector import NAMESPACE, Sampler
from ffwatt.hardware import cpu_model, cpu_power, logical_cpus
from ffwatt.powercap import Zone, ZoneCounters, discover_zones
from ffwatt.procstat import CpuTimes, read_cpu_times
from ffwatt.settings import Settings

__all__ = ["RaplCollector"]

log = logging.getLogger("ffwatt.exporters.rapl")
_LABELS = ["zone", "kind", "socket"]


class RaplCollector:
    name = "rapl"

    def __init__(self, settings: Settings, *, interval_s: float = 1.0) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._zones: list[Zone] = discover_zones(settings.powercap_root)
        self._counters = ZoneCounters(self._zones, unreadable=None if self._zones else (
            f"no RAPL zones under {settings.powercap_root} (not exposed on this machine, VM or container)"))
        self._watts: dict[str, float] = {}
        self._last_at = 0.0
        self._model = cpu_power(cpu_model(settings.proc_root), tdp_override_w=settings.cpu_tdp_w,
                                threads=logical_cpus())
        self._cpu_last: CpuTimes | None = None
        self._estimated_j = 0.0
        self._estimated_w = 0.0
        self._utilization = 0.0
        self._sampler = Sampler(self.name, interval_s, self.sample)

    def start(self) -> RaplCollector:
        self._sampler.start()
        if self.unreadable:
            log.warning("RAPL unreadable: %s; exporting an estimate (%s)", self.unreadable, self._model.basis)
        else:
            log.info("RAPL zones: %s", ", ".join(f"{z.key} ({z.control})" for z in self._zones))
        return self

    def stop(self) -> None:
        self._sampler.stop()

    @property
    def unreadable(self) -> str | None:
        return self._counters.unreadable

    def sample(self) -> None:
        now = time.monotonic()
        was_readable = self.unreadable is None
        gained = self._counters.sample()
        if was_readable and self.unreadable:
            log.warning("RAPL became unreadable: %s; exporting an estimate", self.unreadable)
        try:
            cpu = read_cpu_times(self._settings.proc_root)
        except OSError:
            cpu = None
        with self._lock:
            elapsed = now - self._last_at if self._last_at else 0.0
            if gained and elapsed > 0:
                self._watts = {key: joules / elapsed for key, joules in gained.items()}
            if cpu is not None and self._cpu_last is not None and elapsed > 0:
                busy = (cpu - self._cpu_last).busy_s
                self._utilization = busy / (elapsed * self._model.threads)
                energy = self._model.energy_j(busy_cpu_s=busy, wall_s=elapsed)
                self._estimated_j += energy
                self._estimated_w = energy / elapsed
            self._cpu_last = cpu or self._cpu_last
            self._last_at = now

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            readable = GaugeMetricFamily(f"{NAMESPACE}_rapl_readable",
                                         "1 when RAPL energy counters are read, 0 when they can't be.")
            readable.add_metric([], 0.0 if self.unreadable else 1.0)
            yield readable
            utilization = GaugeMetricFamily(f"{NAMESPACE}_cpu_utilization_ratio",
                                            "Busy share of all CPUs over the last sampling interval (/proc/stat).")
            utilization.add_metric([], self._utilization)
            yield utilization
            if self.unreadable:
                info = GaugeMetricFamily(f"{NAMESPACE}_rapl_unreadable_info",
                                         "Why RAPL energy counters can't be read here.", labels=["reason"])
                info.add_metric([self.unreadable], 1.0)
                yield info
                model = GaugeMetricFamily(f"{NAMESPACE}_cpu_power_model_info",
                                          "The CPU power model behind the estimated series.",
                                          labels=["basis"])
                model.add_metric([self._model.basis], 1.0)
                yield model
                energy = CounterMetricFamily(
                    f"{NAMESPACE}_cpu_estimated_energy_joules",
                    "ESTIMATED CPU energy since the exporter started: the power model applied to "
                    "/proc/stat busy time. Not a measurement.")
                energy.add_metric([], self._estimated_j)
                yield energy
                power = GaugeMetricFamily(f"{NAMESPACE}_cpu_estimated_power_watts",
                                          "ESTIMATED CPU power over the last sampling interval. Not a measurement.")
                power.add_metric([], self._estimated_w)
                yield power
                return
            energy = CounterMetricFamily(
                f"{NAMESPACE}_rapl_energy_joules",
                "Energy of a RAPL zone since the exporter started, corrected for counter wraparound. "
                "Sum kind=\"package\" for CPU energy; subzones are parts of their package and psys covers "
                "the platform, so never add them to packages.", labels=_LABELS)
            power = GaugeMetricFamily(f"{NAMESPACE}_rapl_power_watts",
                                      "Power of a RAPL zone over the last sampling interval.", labels=_LABELS)
            for zone in self._zones:
                labels = [zone.key, zone.kind, "" if zone.socket is None else str(zone.socket)]
                energy.add_metric(labels, self._counters.joules[zone.key])
                if zone.key in self._watts:
                    power.add_metric(labels, self._watts[zone.key])
            yield energy
            yield power
