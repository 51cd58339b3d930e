"""CPU energy, measured or estimated: the one place that decides which.

RAPL package counters are used where they can be read and move. Where they can't
be read (no zones, root-only since CVE-2020-8694, a read error) or stand still
while the CPU is busy (frozen or zeroed counters, as some VMs expose), CPU energy
is estimated from the machine's busy time in ``/proc/stat`` and the CPU power
model, and says so. The CPU exporter and the per-job meter both sample through
:class:`CpuEnergy`, so they always agree on the source and the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ffwatt.hardware.cpu import CpuPower, cpu_model, cpu_power, logical_cpus
from ffwatt.hardware.powercap import Zone, ZoneCounters, ZoneKind, discover_zones, no_zones_reason, package_zones
from ffwatt.hardware.procstat import CpuTimes, read_cpu_times

__all__ = ["FROZEN_BUSY_CPU_S", "CpuEnergy", "CpuSample", "CpuSource", "cpu_energy_source"]

CpuSource = Literal["rapl", "estimated"]
# A package counter that gains nothing for FROZEN_AFTER_S while the machine does at least
# FROZEN_BUSY_CPU_S of CPU work is frozen: real RAPL counters move every millisecond, so this
# leaves a wide margin for counters a hypervisor updates coarsely.
FROZEN_AFTER_S = 0.5
FROZEN_BUSY_CPU_S = 0.05


@dataclass(frozen=True)
class CpuSample:
    """What one sample added: joules per RAPL zone (None when RAPL isn't used), the machine's
    busy CPU seconds, the estimate's joules, and the seconds since the previous sample."""

    zones_j: dict[str, float] | None
    busy_s: float | None
    estimated_j: float | None
    elapsed_s: float


def _why_no_packages(zones: list[Zone], root: Path) -> str | None:
    """Why these zones can't give CPU energy (None when a package zone is among them)."""
    if not zones:
        return no_zones_reason(root)
    if not package_zones(zones):
        return f"no RAPL package zone under {root} (only {', '.join(sorted({z.kind for z in zones}))})"
    return None


def cpu_energy_source(*, powercap_root: Path, proc_root: Path) -> str:
    """``rapl``, or ``estimated: <why>``: what this node's meter and CPU exporter decide on their first
    read of the counters (a node's facts say it, so they never disagree with its rows)."""
    cpu = CpuEnergy(powercap_root=powercap_root, proc_root=proc_root, tdp_override_w=None, kinds={"package"})
    cpu.sample()
    return "rapl" if cpu.unreadable is None else f"estimated: {cpu.unreadable}"


class CpuEnergy:
    """Accumulates a node's CPU energy between samples: every RAPL zone's wrap-corrected joules
    while the counters are usable, and always the estimate from busy CPU time.

    It reads every zone under ``powercap_root``, or those of ``kinds`` (a job's meter: the packages, and
    DRAM and psys, which it reports beside them); once the counters become unusable
    :attr:`unreadable` says why and :attr:`source` is ``estimated`` from then on.
    """

    def __init__(self, *, powercap_root: Path, proc_root: Path, tdp_override_w: float | None,
                 kinds: set[ZoneKind] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.proc_root = proc_root
        found = discover_zones(powercap_root)
        self.zones = [zone for zone in found if kinds is None or zone.kind in kinds]
        self.counters = ZoneCounters(self.zones, unreadable=_why_no_packages(found, powercap_root))
        self.model: CpuPower = cpu_power(cpu_model(proc_root), tdp_override_w=tdp_override_w,
                                         threads=logical_cpus())
        self.busy_s = 0.0
        self.estimated_j = 0.0
        self.wall_s = 0.0
        self._clock = clock
        self._last_at: float | None = None
        self._last_cpu: CpuTimes | None = None
        self._packages = [zone.key for zone in self.zones if zone.kind == "package"]
        self._still: dict[str, tuple[float, float]] = {}  # package -> (seconds, busy CPU-s) unchanged

    @property
    def unreadable(self) -> str | None:
        """Why RAPL isn't used (None while it is)."""
        return self.counters.unreadable

    @property
    def source(self) -> CpuSource:
        return "estimated" if self.unreadable else "rapl"

    def sample(self) -> CpuSample:
        """Read the counters and ``/proc/stat`` once; the first call is the baseline."""
        now = self._clock()
        elapsed = now - self._last_at if self._last_at is not None else 0.0
        gained = self.counters.sample()
        cpu = self._read_cpu_times()
        busy = (cpu - self._last_cpu).busy_s if cpu is not None and self._last_cpu is not None else None
        estimated = None
        if busy is not None and elapsed > 0:
            estimated = self.model.energy_j(busy_cpu_s=busy, wall_s=elapsed)
            self.busy_s += busy
            self.estimated_j += estimated
        if self._last_at is not None:
            self.wall_s += elapsed
        if gained and busy is not None:
            self._judge_still(gained, elapsed, busy)
        self._last_cpu = cpu or self._last_cpu
        self._last_at = now
        return CpuSample(zones_j=None if self.unreadable else gained, busy_s=busy, estimated_j=estimated,
                         elapsed_s=elapsed)

    def _judge_still(self, gained: dict[str, float], elapsed: float, busy: float) -> None:
        """Declare the counters unusable once a package has stood still while the CPU worked."""
        frozen = []
        for key in self._packages:
            if gained.get(key, 0.0) > 0:
                self._still.pop(key, None)
                continue
            still_s, still_busy = self._still.get(key, (0.0, 0.0))
            still_s, still_busy = still_s + elapsed, still_busy + busy
            self._still[key] = (still_s, still_busy)
            if still_s >= FROZEN_AFTER_S and still_busy >= FROZEN_BUSY_CPU_S:
                frozen.append((key, still_s, still_busy))
        if frozen:
            keys = ", ".join(key for key, _, _ in frozen)
            _, still_s, still_busy = frozen[0]
            self.counters.unreadable = (
                f"RAPL counter {keys} did not advance over {still_s:.2f} s while the CPU was busy "
                f"{still_busy:.2f} CPU-s (frozen or zeroed counters, as some VMs expose)")

    def package_joules(self) -> dict[str, float] | None:
        """Joules per package since the first sample, or None when RAPL isn't usable."""
        if self.unreadable:
            return None
        return {key: self.counters.joules[key] for key in self._packages}

    def kind_joules(self, kind: ZoneKind) -> float | None:
        """Joules of the zones of ``kind`` (dram, psys) since the first sample; None when there are none, or
        RAPL isn't usable."""
        keys = [zone.key for zone in self.zones if zone.kind == kind]
        return None if self.unreadable or not keys else sum(self.counters.joules[key] for key in keys)

    def energy(self) -> tuple[float | None, CpuSource | None, str]:
        """Whole-CPU joules since the first sample, their source, and how they were obtained."""
        packages = self.package_joules()
        if packages is not None:
            return (sum(packages.values()), "rapl",
                    f"RAPL ({', '.join(sorted(packages))}), {self.counters.samples} samples")
        if self._last_cpu is None:
            return None, None, f"no CPU reading: RAPL: {self.unreadable}; {self.proc_root}/stat unreadable"
        return self.estimated_j, "estimated", (
            f"estimated from /proc/stat busy {self.busy_s:.2f} CPU-s over {self.wall_s:.2f} s with "
            f"{self.model.basis}; RAPL: {self.unreadable}")

    def _read_cpu_times(self) -> CpuTimes | None:
        try:
            return read_cpu_times(self.proc_root)
        except OSError:
            return None
