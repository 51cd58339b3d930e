"""Facts about this node's CPU read from procfs, and the CPU power used for estimates."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuPower", "cpu_model", "cpu_power", "logical_cpus"]

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


@dataclass(frozen=True)
class CpuPower:
    """Watts one fully busy hardware thread is assumed to draw, and where that figure came from."""

    watts_per_thread: float
    basis: str


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
    """Per-thread power for estimates: the override, else the TDP table, else a default."""
    if tdp_override_w is not None:
        return CpuPower(tdp_override_w / threads, f"FFWATT_CPU_TDP_W={tdp_override_w:g} W over {threads} threads")
    for pattern, tdp, table_threads in _TDP_TABLE:
        if pattern in model:
            return CpuPower(tdp / table_threads, f"TDP table: {pattern} {tdp:g} W / {table_threads} threads")
    return CpuPower(
        _DEFAULT_W_PER_THREAD,
        f"default {_DEFAULT_W_PER_THREAD:g} W per busy thread ({model!r} not in the TDP table; "
        "set FFWATT_CPU_TDP_W)",
    )
