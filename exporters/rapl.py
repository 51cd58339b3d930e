"""CPU energy: RAPL powercap zones (Intel and AMD Zen), or a labelled estimate.

A background sampler reads every zone through :class:`ffwatt.hardware.cpu_energy.CpuEnergy`
often enough that no counter wraps twice between reads, and accumulates
wrap-corrected joules. Zones are labelled, never summed: packages, their subzones
(core, uncore, dram) and psys overlap, and a package seen through both intel-rapl
and intel-rapl-mmio is exported once. Where the counters can't be read, or stand
still while the CPU is busy, ``ffwatt_rapl_readable`` is 0 with the reason, and
separate ``ffwatt_cpu_estimated_*`` series carry the estimate from /proc/stat and
the CPU power model: the same decision, and reason, a job's meter makes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters._collector import NAMESPACE, Sampler
from ffwatt.hardware.cpu_energy import CpuEnergy
from ffwatt.settings import Settings

__all__ = ["RaplCollector"]

log = logging.getLogger("ffwatt.exporters.rapl")
_LABELS = ["zone", "kind", "socket"]


class RaplCollector:
    name = "rapl"

    def __init__(self, settings: Settings, *, interval_s: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._cpu = CpuEnergy(powercap_root=settings.powercap_root, proc_root=settings.proc_root,
                              tdp_override_w=settings.cpu_tdp_w)
        self._watts: dict[str, float] = {}
        self._estimated_w = 0.0
        self._utilization = 0.0
        self.sampler = Sampler(self.name, interval_s, self.sample)

    def start(self) -> RaplCollector:
        self.sampler.start()
        if self.unreadable:
            log.warning("RAPL unreadable: %s; exporting an estimate (%s)", self.unreadable, self._cpu.model.basis)
        else:
            log.info("RAPL zones: %s", ", ".join(f"{z.key} ({z.control})" for z in self._cpu.zones))
        return self

    def stop(self) -> None:
        self.sampler.stop()

    @property
    def unreadable(self) -> str | None:
        return self._cpu.unreadable

    def sample(self) -> None:
        was_readable = self.unreadable is None
        with self._lock:
            sample = self._cpu.sample()
            if sample.elapsed_s > 0:
                if sample.zones_j:
                    self._watts = {key: joules / sample.elapsed_s for key, joules in sample.zones_j.items()}
                if sample.busy_s is not None:
                    self._utilization = sample.busy_s / (sample.elapsed_s * self._cpu.model.threads)
                if sample.estimated_j is not None:
                    self._estimated_w = sample.estimated_j / sample.elapsed_s
        if was_readable and self.unreadable:
            log.warning("RAPL became unreadable: %s; exporting an estimate", self.unreadable)

    def collect(self) -> Iterable[Metric]:
        self.sampler.check()
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
                model.add_metric([self._cpu.model.basis], 1.0)
                yield model
                energy = CounterMetricFamily(
                    f"{NAMESPACE}_cpu_estimated_energy_joules",
                    "ESTIMATED CPU energy since the exporter started: the power model applied to "
                    "/proc/stat busy time. Not a measurement.")
                energy.add_metric([], self._cpu.estimated_j)
                yield energy
                power = GaugeMetricFamily(f"{NAMESPACE}_cpu_estimated_power_watts",
                                          "ESTIMATED CPU power over the last sampling interval. Not a measurement.")
                power.add_metric([], self._estimated_w)
                yield power
                return
            energy = CounterMetricFamily(
                f"{NAMESPACE}_rapl_energy_joules",
                "Energy of a RAPL zone since the exporter started, corrected for counter wraparound. "
                "Sum kind=\"package\" for CPU energy, and kind=\"dram\" (memory, outside the package figure) "
                "for what a job's energy_j adds; core and uncore are parts of their package and psys covers the "
                "platform, so never add them to packages.", labels=_LABELS)
            power = GaugeMetricFamily(f"{NAMESPACE}_rapl_power_watts",
                                      "Power of a RAPL zone over the last sampling interval.", labels=_LABELS)
            for zone in self._cpu.zones:
                labels = [zone.key, zone.kind, "" if zone.socket is None else str(zone.socket)]
                energy.add_metric(labels, self._cpu.counters.joules[zone.key])
                if zone.key in self._watts:
                    power.add_metric(labels, self._watts[zone.key])
            yield energy
            yield power
