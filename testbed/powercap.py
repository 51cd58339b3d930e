"""A synthetic powercap tree, laid out like the kernel's, for tests."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def make_zone(root: Path, label: str, name: str, *, energy_uj: int = 0,
              max_range_uj: int = 262_143_328_850, parent: Path | None = None) -> Path:
    directory = (parent or root) / label
    directory.mkdir(parents=True)
    (directory / "name").write_text(f"{name}\n")
    (directory / "energy_uj").write_text(f"{energy_uj}\n")
    (directory / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    return directory


def set_energy(zone: Path, energy_uj: int) -> None:
    tmp = zone / ".energy_uj.tmp"
    tmp.write_text(f"{energy_uj}\n")
    tmp.replace(zone / "energy_uj")


def intel_two_sockets(root: Path, max_range_uj: int = 262_143_328_850) -> dict[str, Path]:
    """Two packages with core/uncore/dram subzones, psys, and package 0 again through MMIO."""
    zones: dict[str, Path] = {}
    for socket in (0, 1):
        package = make_zone(root, f"intel-rapl:{socket}", f"package-{socket}", max_range_uj=max_range_uj)
        zones[f"package-{socket}"] = package
        for index, sub in enumerate(("core", "uncore", "dram")):
            zones[f"package-{socket}/{sub}"] = make_zone(root, f"intel-rapl:{socket}:{index}", sub,
                                                         max_range_uj=max_range_uj, parent=package)
    zones["psys"] = make_zone(root, "intel-rapl:2", "psys", max_range_uj=max_range_uj)
    zones["mmio-package-0"] = make_zone(root, "intel-rapl-mmio:0", "package-0", max_range_uj=max_range_uj)
    return zones


@contextlib.contextmanager
def ticking(watts: dict[Path, float], every_s: float = 0.002) -> Iterator[None]:
    """Advance each zone's counter at its power in ``watts``, as the kernel's would, from a thread, until the
    block ends: counters at known rates, so a meter's joules over a window are known from the window."""
    stop = threading.Event()
    start = time.perf_counter()

    def tick() -> None:
        while not stop.is_set():
            elapsed = time.perf_counter() - start
            for zone, power in watts.items():
                set_energy(zone, int(power * elapsed * 1e6))
            stop.wait(every_s)

    thread = threading.Thread(target=tick, name="powercap-ticker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
