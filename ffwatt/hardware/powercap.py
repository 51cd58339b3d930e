"""Reading the Linux powercap tree (Intel RAPL, AMD Zen RAPL) under a root path.

The root is the seam: ``/sys/class/powercap`` in production, a synthetic tree in
tests. Zones are classified so that callers can sum energy without counting
anything twice: core and uncore are parts of their package, dram is memory beside
it (not in the package figure), psys covers the whole platform, and a package seen through both ``intel-rapl`` and
``intel-rapl-mmio`` is one package.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ffwatt.errors import EnergyReadError

__all__ = ["Zone", "ZoneCounters", "ZoneKind", "counter_delta", "discover_zones", "no_zones_reason", "package_zones",
           "read_energy_uj"]

ZoneKind = Literal["package", "core", "uncore", "dram", "psys", "other"]
_TOP = re.compile(r"^(intel-rapl(?:-mmio)?):(\d+)$")
_SUB = re.compile(r"^(intel-rapl(?:-mmio)?):(\d+):(\d+)$")


@dataclass(frozen=True, kw_only=True)
class Zone:
    """One powercap zone with an energy counter."""

    path: Path
    control: str  # "intel-rapl" or "intel-rapl-mmio"
    kind: ZoneKind
    socket: int | None  # package index for package zones and their subzones
    name: str  # the zone's own name file: package-0, core, dram, psys, ...
    max_energy_range_uj: int

    @property
    def key(self) -> str:
        """A stable label such as ``package-0`` or ``package-0/dram``."""
        if self.kind == "package":
            return f"package-{self.socket}"
        if self.kind == "psys":
            return "psys"
        parent = f"package-{self.socket}/" if self.socket is not None else ""
        return f"{parent}{self.kind if self.kind != 'other' else self.name}"


def _read_text(path: Path) -> str:
    return path.read_text().strip()


def _classify(name: str, is_top: bool) -> ZoneKind:
    if name == "psys":
        return "psys"
    if is_top and name.startswith("package"):
        return "package"
    return name if name in ("core", "uncore", "dram") else "other"  # type: ignore[return-value]


def no_zones_reason(root: Path) -> str:
    """Why ``root`` has no zones to read, in words."""
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        return f"no RAPL zones readable under {root} (this user can't list it)"
    return f"no RAPL zones under {root} (not exposed on this machine, VM or container)"


def discover_zones(root: Path) -> list[Zone]:
    """Every zone under ``root`` that has an ``energy_uj`` file (readable or not)."""
    try:
        paths = sorted(root.rglob("energy_uj")) if root.is_dir() else []
    except OSError:  # not listable by this user: no zones it can read
        return []
    zones: list[Zone] = []
    for path in paths:
        directory = path.parent
        label = directory.name
        top, sub = _TOP.match(label), _SUB.match(label)
        if not (top or sub):
            continue
        try:
            name = _read_text(directory / "name")
            max_range = int(_read_text(directory / "max_energy_range_uj"))
        except (OSError, ValueError):
            continue
        kind = _classify(name, is_top=top is not None)
        socket: int | None = None
        if kind == "package":
            match = re.search(r"(\d+)$", name)
            socket = int(match[1]) if match else int((top or sub)[2])  # type: ignore[index]
        elif sub is not None:
            parent_name = directory.parent / "name"
            parent = _read_text(parent_name) if parent_name.exists() else ""
            match = re.search(r"package-(\d+)", parent)
            socket = int(match[1]) if match else int(sub[2])
        zones.append(Zone(path=directory, control=(top or sub)[1], kind=kind,  # type: ignore[index]
                          socket=socket, name=name, max_energy_range_uj=max_range))
    # The same package can appear twice: through MSR (intel-rapl) and MMIO (intel-rapl-mmio).
    seen: dict[str, Zone] = {}
    for zone in zones:
        if zone.key not in seen or seen[zone.key].control == "intel-rapl-mmio":
            seen[zone.key] = zone
    return sorted(seen.values(), key=lambda z: z.key)


def package_zones(zones: list[Zone]) -> list[Zone]:
    """The zones whose energies add up to CPU energy without double counting."""
    return [zone for zone in zones if zone.kind == "package"]


def read_energy_uj(zone: Zone) -> int:
    """The zone's counter, in microjoules."""
    try:
        return int(_read_text(zone.path / "energy_uj"))
    except PermissionError as exc:
        raise EnergyReadError(
            f"{zone.path}/energy_uj is readable by root only (since CVE-2020-8694); "
            "run as root or grant read access (e.g. a udev rule / chmod o+r)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise EnergyReadError(f"can't read {zone.path}/energy_uj: {exc}") from exc


def counter_delta(before: int, after: int, max_range: int) -> int:
    """Increase of a counter that wraps to 0 after ``max_range`` (at most one wrap)."""
    if after >= before:
        return after - before
    return max_range - before + after + 1


class ZoneCounters:
    """Wrap-corrected joules per zone since the first read, for whoever samples them (the
    CPU exporter's background sampler, a job's energy meter). Once a read fails, ``unreadable``
    says why and sampling stops."""

    def __init__(self, zones: list[Zone], *, unreadable: str | None = None) -> None:
        self.zones = zones
        self.unreadable = unreadable
        self.joules: dict[str, float] = {zone.key: 0.0 for zone in zones}
        self.samples = 0  # reads that added to the totals (the first read is the baseline)
        self._last: dict[str, int] = {}

    def sample(self) -> dict[str, float] | None:
        """Read every zone; return the joules each gained since the previous read (nothing on the
        first read), or None when the counters can't be read."""
        if self.unreadable:
            return None
        try:
            current = {zone.key: read_energy_uj(zone) for zone in self.zones}
        except EnergyReadError as exc:
            self.unreadable = str(exc)
            return None
        gained = {}
        if self._last:
            for zone in self.zones:
                gained[zone.key] = counter_delta(self._last[zone.key], current[zone.key],
                                                 zone.max_energy_range_uj) / 1e6
                self.joules[zone.key] += gained[zone.key]
            self.samples += 1
        self._last = current
        return gained
