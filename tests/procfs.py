"""A synthetic procfs (``stat``, ``cpuinfo``), laid out like the kernel's, for tests."""

from __future__ import annotations

import os
from pathlib import Path


def make_procfs(root: Path, *, model: str = "Synthetic CPU 9000") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpuinfo").write_text(f"processor\t: 0\nmodel name\t: {model}\n")
    set_busy(root, busy_s=0.0, idle_s=1000.0)
    return root


def set_busy(root: Path, *, busy_s: float, idle_s: float) -> None:
    """The first line of /proc/stat: ``busy_s`` all in user time, ``idle_s`` idle (in clock ticks)."""
    hz = os.sysconf("SC_CLK_TCK")
    tmp = root / ".stat.tmp"
    tmp.write_text(f"cpu  {round(busy_s * hz)} 0 0 {round(idle_s * hz)} 0 0 0 0 0 0\n")
    tmp.replace(root / "stat")
