"""A synthetic sysfs for tests: CPU temperature sensors (hwmon chips, thermal zones), cpufreq clocks and
thermal throttle counters, laid out like the kernel's under a root path."""

from __future__ import annotations

from pathlib import Path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{text}\n")
    tmp.replace(path)  # readers never see a half-written value
    return path


def hwmon_chip(root: Path, index: int, name: str, celsius: list[float]) -> list[Path]:
    """A hwmon chip called ``name`` with one ``temp<N>_input`` (millidegrees) per temperature."""
    chip = root / "class" / "hwmon" / f"hwmon{index}"
    _write(chip / "name", name)
    return [_write(chip / f"temp{i}_input", str(round(c * 1000))) for i, c in enumerate(celsius, 1)]


def thermal_zone(root: Path, index: int, kind: str, celsius: float) -> Path:
    zone = root / "class" / "thermal" / f"thermal_zone{index}"
    _write(zone / "type", kind)
    return _write(zone / "temp", str(round(celsius * 1000)))


def set_celsius(sensor: Path, celsius: float) -> None:
    _write(sensor, str(round(celsius * 1000)))


def cpufreq(root: Path, khz: list[int]) -> None:
    """One ``scaling_cur_freq`` per logical CPU, in kHz."""
    for cpu, value in enumerate(khz):
        _write(root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq" / "scaling_cur_freq", str(value))


def throttle_counts(root: Path, counts: dict[int, tuple[int, int]]) -> None:
    """Each CPU's (core, package) thermal throttle counters."""
    for cpu, (core, package) in counts.items():
        base = root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "thermal_throttle"
        _write(base / "core_throttle_count", str(core))
        _write(base / "package_throttle_count", str(package))
