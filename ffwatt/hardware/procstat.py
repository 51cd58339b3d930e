"""Whole-machine CPU time from ``/proc/stat`` (the procfs root is the seam)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuTimes", "read_cpu_times"]


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU seconds over all CPUs since boot."""

    busy_s: float
    total_s: float

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.busy_s - other.busy_s, self.total_s - other.total_s)


def read_cpu_times(proc_root: Path = Path("/proc")) -> CpuTimes:
    """Busy and total CPU seconds. Steal (time the hypervisor gave elsewhere) is neither."""
    with (proc_root / "stat").open() as stat:
        fields = stat.readline().split()
    if not fields or fields[0] != "cpu":
        raise OSError(f"unexpected first line in {proc_root}/stat")
    values = [int(v) for v in fields[1:]] + [0] * 8
    user, nice, system, idle, iowait, irq, softirq, _steal = values[:8]
    hz = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq
    return CpuTimes(busy_s=busy / hz, total_s=(busy + idle + iowait) / hz)
