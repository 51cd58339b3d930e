"""Facts about this node's CPU read from procfs, and the CPU power used for estimates."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IDLE_FRACTION", "CpuFacts", "CpuPower", "cpu_facts", "cpu_model", "cpu_power", "logical_cpus", "read_sys"]

# Package power (W) and hardware threads of common CPUs, by model substring. Used only
# when RAPL can't be read; the result is always labelled estimated.
_TDP_TABLE: tuple[tuple[str, float, int], ...] = (
    ("EPYC 9654", 360, 192), ("EPYC 9554", 360, 128), ("EPYC 9454", 290, 96),
    ("EPYC 7763", 280, 128), ("EPYC 7713", 225, 128), ("EPYC 7543", 225, 64),
    ("EPYC 7B13", 240, 128), ("EPYC 7R13", 240, 96), ("EPYC 7742", 225, 128),
    ("Xeon(R) Platinum 8480", 350, 112), ("Xeon(R) Platinum 8380", 270, 80),
    ("Xeon(R) Platinum 8375C", 300, 64), ("Xeon(R) Platinum 8259CL", 210, 48),
    ("Xeon(R) Gold 6338", 205, 64), ("Xeon(R) Gold 6248", 150, 40),
    ("Core(TM) i9-13900K", 125, 32), ("Core(TM) i7-12700", 65, 20),
    ("Ryzen 9 7950X", 170, 32), ("Ryzen 7 5800X", 105, 16),
)
# Typical package watts per hardware thread across the CPUs above, for CPUs not listed.
_DEFAULT_W_PER_THREAD = 3.0
# Idle draw as a fraction of full load, per thread: the ratio of Cloud Carbon
# Footprint's average minimum and maximum watts per vCPU (0.74 W / 3.5 W).
IDLE_FRACTION = 0.21


@dataclass(frozen=True)
class CpuPower:
    """Linear CPU power model for estimates: each hardware thread draws ``idle_w`` when
    idle and ``max_w`` when fully busy, in between in proportion to its busy time."""

    max_w: float
    idle_w: float
    threads: int
    basis: str

    def energy_j(self, *, busy_cpu_s: float, wall_s: float) -> float:
        """Whole-CPU energy over ``wall_s`` during which all threads together were busy ``busy_cpu_s``."""
        return self.threads * self.idle_w * wall_s + (self.max_w - self.idle_w) * busy_cpu_s


def cpu_model(proc_root: Path = Path("/proc")) -> str:
    try:
        text = (proc_root / "cpuinfo").read_text()
    except OSError:
        return "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match[1].strip() if match else "unknown"


def logical_cpus() -> int:
    return os.cpu_count() or 1


def cpu_power(model: str, *, tdp_override_w: float | None, threads: int) -> CpuPower:
    """The power model: from the override, else the TDP table, else a default."""
    if tdp_override_w is not None:
        max_w, basis = tdp_override_w / threads, f"FFWATT_CPU_TDP_W={tdp_override_w:g} W over {threads} threads"
    else:
        for pattern, tdp, table_threads in _TDP_TABLE:
            if pattern in model:
                max_w, basis = tdp / table_threads, f"TDP table: {pattern} {tdp:g} W / {table_threads} threads"
                break
        else:
            max_w = _DEFAULT_W_PER_THREAD
            basis = (f"default {_DEFAULT_W_PER_THREAD:g} W per busy thread ({model!r} not in the TDP table; "
                     "set FFWATT_CPU_TDP_W)")
    return CpuPower(max_w=max_w, idle_w=max_w * IDLE_FRACTION, threads=threads,
                    basis=f"{basis}, idle {IDLE_FRACTION:.0%} of that")


def read_sys(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


@dataclass(frozen=True)
class CpuFacts:
    model: str
    logical_cpus: int
    governor: str | None
    turbo: bool | None
    max_frequency_hz: int | None


def cpu_facts(proc_root: Path = Path("/proc"), sys_root: Path = Path("/sys")) -> CpuFacts:
    """What a reader of energy figures needs to know about this CPU."""
    cpu = sys_root / "devices/system/cpu"
    no_turbo = read_sys(cpu / "intel_pstate/no_turbo")
    boost = read_sys(cpu / "cpufreq/boost")
    turbo = (no_turbo == "0") if no_turbo is not None else (boost == "1") if boost is not None else None
    max_khz = read_sys(cpu / "cpu0/cpufreq/cpuinfo_max_freq")
    return CpuFacts(
        model=cpu_model(proc_root),
        logical_cpus=logical_cpus(),
        governor=read_sys(cpu / "cpu0/cpufreq/scaling_governor"),
        turbo=turbo,
        max_frequency_hz=int(max_khz) * 1000 if max_khz and max_khz.isdigit() else None,
    )
