"""The conditions a job runs in: CPU temperature, clock and throttling, read through sysfs and procfs
under the settings' roots (a synthetic tree in tests), and the wait before a job for the node to settle.

Each reading is null where this node doesn't expose it (a VM has no hwmon chip, a container no
cpufreq): a condition that can't be read is never guessed.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from ffwatt.hardware.procstat import read_cpu_times
from ffwatt.schema import ConditionsColumns
from ffwatt.settings import Settings

__all__ = ["ConditionsSampler", "cpu_freq_mhz", "cpu_temp_c", "settle", "throttle_count"]

# hwmon chips that are the CPU's own sensors (AMD: k10temp, zenpower; Intel: coretemp), and thermal zone
# types that are the CPU package; others (acpitz, the board, NVMe drives, wifi) say nothing of the CPU.
CPU_CHIPS = ("k10temp", "coretemp", "zenpower")
CPU_ZONES = ("x86_pkg_temp", "cpu-thermal", "cpu_thermal", "soc_thermal")
# Settled: other processes use less than this share of the machine's CPU capacity, and the CPU is within
# COOL_C of the coolest it read this run (the first job's, right after the idle baseline).
QUIET_SHARE = 0.25
COOL_C = 3.0
PROBE_S = 0.1  # each look at the load: long enough for /proc/stat's 10 ms ticks to mean something
FREQ_EVERY_S = 0.25  # the meter samples on every progress block; the clock needs far fewer reads


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _number(path: Path) -> float | None:
    text = _read(path)
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def cpu_temp_c(sys_root: Path) -> float | None:
    """The CPU's temperature: the hottest input of its hwmon chip, else of its package thermal zone; None
    where neither is exposed."""
    for chip in sorted((sys_root / "class" / "hwmon").glob("hwmon*")):
        if _read(chip / "name") in CPU_CHIPS:
            values = [v for f in sorted(chip.glob("temp*_input")) if (v := _number(f)) is not None]
            if values:
                return max(values) / 1000.0  # millidegrees
    zones = [zone for zone in sorted((sys_root / "class" / "thermal").glob("thermal_zone*"))
             if _read(zone / "type") in CPU_ZONES]
    values = [v for zone in zones if (v := _number(zone / "temp")) is not None]
    return max(values) / 1000.0 if values else None


def cpu_freq_mhz(sys_root: Path, proc_root: Path) -> float | None:
    """The logical CPUs' mean clock now: cpufreq's scaling_cur_freq (kHz), else /proc/cpuinfo's "cpu MHz";
    None where neither is there."""
    khz = [v for f in sorted((sys_root / "devices" / "system" / "cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq"))
           if (v := _number(f)) is not None]
    if khz:
        return sum(khz) / len(khz) / 1000.0
    mhz = []
    for line in (_read(proc_root / "cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "cpu MHz":
            with contextlib.suppress(ValueError):
                mhz.append(float(value))
    return sum(mhz) / len(mhz) if mhz else None


def throttle_count(sys_root: Path) -> int | None:
    """Thermal throttling events so far, core and package counters of every CPU summed; None where the
    kernel doesn't count them (AMD, VMs)."""
    files = sorted((sys_root / "devices" / "system" / "cpu").glob("cpu[0-9]*/thermal_throttle/*_throttle_count"))
    counts = [int(v) for f in files if (v := _number(f)) is not None]
    return sum(counts) if counts else None


class ConditionsSampler:
    """A job's conditions over its encode: temperature at the start, the clock sampled through the
    window, whether throttle counters rose."""

    def __init__(self, settings: Settings) -> None:
        self._sys, self._proc = settings.sys_root, settings.proc_root
        self._temp: float | None = None
        self._throttles: int | None = None
        self._freqs: list[float] = []
        self._last = 0.0

    def start(self) -> None:
        self._temp = cpu_temp_c(self._sys)
        self._throttles = throttle_count(self._sys)
        self._last = 0.0
        self.sample()

    def sample(self) -> None:
        now = time.monotonic()
        if now - self._last < FREQ_EVERY_S:
            return
        self._last = now
        if (freq := cpu_freq_mhz(self._sys, self._proc)) is not None:
            self._freqs.append(freq)

    def stop(self) -> ConditionsColumns:
        self._last = 0.0
        self.sample()
        after = throttle_count(self._sys)
        return ConditionsColumns(
            cpu_temp_c_start=self._temp,
            cpu_freq_mhz_mean=sum(self._freqs) / len(self._freqs) if self._freqs else None,
            throttled=None if after is None or self._throttles is None else after > self._throttles)


_coolest: dict[Path, float] = {}  # per sysfs root: the coolest CPU reading of this process's jobs


def settle(settings: Settings, max_s: float) -> float:
    """Wait, at most ``max_s``, until other processes use under :data:`QUIET_SHARE` of the CPU capacity and
    the CPU is within :data:`COOL_C` of the coolest it has read; return the seconds waited (0 when ``max_s``
    is 0). Conditions it can't read don't hold it back."""
    if max_s <= 0:
        return 0.0
    began = time.monotonic()
    while True:
        busy = _busy_share(settings.proc_root)
        temp = cpu_temp_c(settings.sys_root)
        coolest = _coolest.setdefault(settings.sys_root, temp) if temp is not None else None
        if temp is not None and coolest is not None and temp < coolest:
            _coolest[settings.sys_root] = coolest = temp
        quiet = busy is None or busy < QUIET_SHARE
        cool = temp is None or coolest is None or temp <= coolest + COOL_C
        waited = time.monotonic() - began
        if (quiet and cool) or waited >= max_s:
            return waited
        time.sleep(min(PROBE_S, max(0.0, max_s - waited)))


def _busy_share(proc_root: Path) -> float | None:
    """The machine's busy share over :data:`PROBE_S`: no job runs between jobs, so the load is others' (and
    ffwatt's own bookkeeping, a sliver)."""
    try:
        before = read_cpu_times(proc_root)
        time.sleep(PROBE_S)
        after = read_cpu_times(proc_root)
    except OSError:
        return None
    delta = after - before
    return delta.busy_s / delta.total_s if delta.total_s > 0 else None
