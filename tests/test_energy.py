from __future__ import annotations

from pathlib import Path

from ffwatt.powercap import counter_delta, discover_zones, package_zones
from ffwatt.settings import Settings
from tasks.energy import CpuEnergyMeter, CpuEnergyWindow, energy_report
from tests.powercap import intel_two_sockets, set_energy


def test_zones_are_classified_and_mmio_duplicates_dropped(tmp_path: Path):
    intel_two_sockets(tmp_path)
    zones = discover_zones(tmp_path)
    keys = [z.key for z in zones]
    assert keys.count("package-0") == 1
    assert {"package-0", "package-1", "psys", "package-1/dram", "package-0/core"} <= set(keys)
    assert [z.key for z in package_zones(zones)] == ["package-0", "package-1"]
    assert next(z for z in zones if z.key == "package-0").control == "intel-rapl"


def test_counter_delta_handles_one_wrap():
    assert counter_delta(100, 350, 1000) == 250
    assert counter_delta(900, 50, 1000) == 151  # 900 -> 1000, then 0 -> 50


def test_meter_accumulates_packages_across_wraps_and_ignores_subzones(tmp_path: Path):
    max_range = 1_000_000  # 1 J, so the counters wrap several times
    zones = intel_two_sockets(tmp_path, max_range_uj=max_range)
    meter = CpuEnergyMeter(tmp_path)
    meter.start()
    truth = {"package-0": 0, "package-1": 0}
    values = {"package-0": 0, "package-1": 0}
    for step in range(40):
        for key, rate in (("package-0", 300_000), ("package-1", 170_000)):
            values[key] = (values[key] + rate) % (max_range + 1)
            truth[key] += rate
            set_energy(zones[key], values[key])
        set_energy(zones["package-0/dram"], step * 999)  # must not be added
        set_energy(zones["psys"], step * 5_000_000 % max_range)
        meter.sample()
    window = meter.stop()
    assert window.unreadable is None and window.samples == 41
    for key in truth:
        assert abs(window.zones_j[key] - truth[key] / 1e6) < 1e-9
    report = energy_report(window, cpu_s=1.0, frames=100, settings=Settings())
    assert report.energy_source == "rapl"
    assert abs(report.energy_j - (12.0 + 6.8)) < 1e-6 and abs(report.joules_per_frame - 0.188) < 1e-6


def test_no_rapl_gives_an_estimate_labelled_as_such(tmp_path: Path):
    meter = CpuEnergyMeter(tmp_path / "absent")
    meter.start()
    window = meter.stop()
    assert window.zones_j is None and "no RAPL package zones" in window.unreadable
    report = energy_report(window, cpu_s=10.0, frames=50, settings=Settings(cpu_tdp_w=80))
    assert report.energy_source == "estimated"
    threads = __import__("os").cpu_count()
    assert abs(report.energy_j - 10.0 * 80 / threads) < 1e-9
    assert report.energy_basis.startswith("estimated") and "FFWATT_CPU_TDP_W=80" in report.energy_basis


def test_unreadable_counter_falls_back_with_the_reason(tmp_path: Path):
    zones = intel_two_sockets(tmp_path)
    (zones["package-1"] / "energy_uj").unlink()
    (zones["package-1"] / "energy_uj").mkdir()  # reading it fails (as root, chmod wouldn't)
    meter = CpuEnergyMeter(tmp_path)
    meter.start()
    window = meter.stop()
    assert window.zones_j is None and "energy_uj" in window.unreadable
    report = energy_report(window, cpu_s=2.0, frames=10, settings=Settings())
    assert report.energy_source == "estimated" and "RAPL: can't read" in report.energy_basis


def test_no_reading_at_all_is_null_not_zero():
    report = energy_report(CpuEnergyWindow(unreadable="x"), cpu_s=None, frames=None, settings=Settings())
    assert report.energy_j is None and report.energy_source is None
