"""collect-energy: the CPU energy of a job's encode window.

:class:`CpuEnergyMeter` is started right before FFmpeg, sampled on every progress
block (often enough that a counter wraps at most once between samples) and stopped
right after FFmpeg exits. Where RAPL counters are readable it yields measured
joules per package; where they aren't, it records why, and :func:`energy_report`
estimates from the process's CPU time, labelled ``estimated``.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from ffwatt.errors import EnergyReadError
from ffwatt.hardware import cpu_model, cpu_power, logical_cpus
from ffwatt.powercap import Zone, counter_delta, discover_zones, package_zones, read_energy_uj
from ffwatt.settings import Settings, load_settings

__all__ = ["CpuEnergyMeter", "CpuEnergyWindow", "EnergyReport", "collect_energy", "energy_report"]


class CpuEnergyWindow(BaseModel):
    """Counter readings over one encode: joules per package zone, or why there are none."""

    zones_j: dict[str, float] | None = None
    unreadable: str | None = None
    samples: int = 0


class EnergyReport(BaseModel):
    """The energy figures of one job, as they go into its row."""

    energy_j: float | None
    energy_source: str | None
    energy_basis: str
    joules_per_frame: float | None


class CpuEnergyMeter:
    """Accumulates RAPL package energy between :meth:`start` and :meth:`stop`."""

    def __init__(self, powercap_root: Path) -> None:
        self._zones: list[Zone] = package_zones(discover_zones(powercap_root))
        self._last: dict[str, int] = {}
        self._total_uj: dict[str, int] = {}
        self._unreadable: str | None = None if self._zones else (
            f"no RAPL package zones under {powercap_root} (not exposed on this machine or VM)"
        )
        self._samples = 0

    def _read(self) -> dict[str, int] | None:
        if self._unreadable:
            return None
        try:
            return {zone.key: read_energy_uj(zone) for zone in self._zones}
        except EnergyReadError as exc:
            self._unreadable = str(exc)
            return None

    def start(self) -> None:
        self._last = self._read() or {}
        self._total_uj = {key: 0 for key in self._last}

    def sample(self) -> None:
        current = self._read()
        if current is None:
            return
        for zone in self._zones:
            before = self._last.get(zone.key)
            if before is not None:
                self._total_uj[zone.key] += counter_delta(before, current[zone.key], zone.max_energy_range_uj)
        self._last = current
        self._samples += 1

    def stop(self) -> CpuEnergyWindow:
        self.sample()
        if self._unreadable:
            return CpuEnergyWindow(unreadable=self._unreadable, samples=self._samples)
        return CpuEnergyWindow(zones_j={k: v / 1e6 for k, v in self._total_uj.items()}, samples=self._samples)


def energy_report(
    window: CpuEnergyWindow, *, cpu_s: float | None, frames: int | None, settings: Settings
) -> EnergyReport:
    """Measured joules from the window, or an estimate from CPU time that says it is one."""
    if window.zones_j is not None:
        energy = sum(window.zones_j.values())
        basis = f"RAPL package counters ({', '.join(sorted(window.zones_j))}), {window.samples} samples"
        source = "rapl"
    elif cpu_s is not None:
        power = cpu_power(cpu_model(settings.proc_root), tdp_override_w=settings.cpu_tdp_w, threads=logical_cpus())
        energy = cpu_s * power.watts_per_thread
        basis = f"estimated: FFmpeg CPU time {cpu_s:.2f} s x {power.watts_per_thread:.2f} W ({power.basis}); " \
                f"RAPL: {window.unreadable}"
        source = "estimated"
    else:
        return EnergyReport(energy_j=None, energy_source=None, energy_basis=f"no reading: {window.unreadable}",
                            joules_per_frame=None)
    per_frame = energy / frames if frames else None
    return EnergyReport(energy_j=energy, energy_source=source, energy_basis=basis, joules_per_frame=per_frame)


@task(name="collect-energy", cache_policy=NO_CACHE)
def collect_energy(window: CpuEnergyWindow, cpu_s: float | None, frames: int | None) -> EnergyReport:
    """Turn an encode's energy window into the job's energy figures."""
    return energy_report(window, cpu_s=cpu_s, frames=frames, settings=load_settings())
