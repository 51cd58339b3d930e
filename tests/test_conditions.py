"""The conditions a job runs in, read through a synthetic sysfs and procfs: temperature, clock,
throttling, the background load and ffwatt's own share, and the wait for the node to settle."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ffwatt.hardware.meter import EnergyWindow
from ffwatt.settings import Settings
from tasks.conditions import ConditionsSampler, cpu_freq_mhz, cpu_temp_c, settle, throttle_count
from tasks.energy import energy_report
from testbed.sysfs import cpufreq, hwmon_chip, set_celsius, thermal_zone, throttle_counts
from tests.procfs import make_procfs


def test_the_cpu_temperature_is_its_own_chips_hottest_sensor(tmp_path: Path):
    assert cpu_temp_c(tmp_path) is None  # nothing exposed (this VM): null, not a guess
    thermal_zone(tmp_path, 0, "acpitz", 60.0)  # the board, not the CPU
    thermal_zone(tmp_path, 1, "x86_pkg_temp", 41.0)
    assert cpu_temp_c(tmp_path) == 41.0
    hwmon_chip(tmp_path, 0, "nvme", [70.0])  # a drive: never the CPU
    hwmon_chip(tmp_path, 1, "k10temp", [45.5, 52.0])  # Tctl, Tccd1
    assert cpu_temp_c(tmp_path) == 52.0


def test_the_clock_from_cpufreq_else_cpuinfo(tmp_path: Path):
    proc = make_procfs(tmp_path / "proc")
    assert cpu_freq_mhz(tmp_path / "sys", tmp_path / "no-proc") is None
    (proc / "cpuinfo").write_text("processor\t: 0\ncpu MHz\t\t: 2400.000\nprocessor\t: 1\ncpu MHz\t\t: 1800.000\n")
    assert cpu_freq_mhz(tmp_path / "sys", proc) == pytest.approx(2100.0)  # (2400 + 1800) / 2
    cpufreq(tmp_path / "sys", [2_000_000, 3_000_000])  # kHz
    assert cpu_freq_mhz(tmp_path / "sys", proc) == pytest.approx(2500.0)


def test_the_sampler_reports_start_temperature_mean_clock_and_throttling(tmp_path: Path):
    sysfs = tmp_path / "sys"
    (sensor,) = hwmon_chip(sysfs, 0, "coretemp", [48.0])
    cpufreq(sysfs, [3_000_000, 3_000_000])
    throttle_counts(sysfs, {0: (5, 1), 1: (0, 1)})
    sampler = ConditionsSampler(Settings(sys_root=sysfs, proc_root=tmp_path / "no-proc"))
    sampler.start()
    set_celsius(sensor, 70.0)  # heats up during the encode: the start is what is recorded
    cpufreq(sysfs, [1_000_000, 1_000_000])
    time.sleep(0.3)  # past FREQ_EVERY_S
    sampler.sample()
    throttle_counts(sysfs, {0: (6, 1), 1: (0, 1)})
    conditions = sampler.stop()
    assert conditions.cpu_temp_c_start == 48.0 and conditions.throttled is True
    # Samples: 3000 at start, then 1000 twice (mid-window, and at stop) -> 5000 / 3.
    assert conditions.cpu_freq_mhz_mean == pytest.approx(5000 / 3)
    quiet = ConditionsSampler(Settings(sys_root=sysfs, proc_root=tmp_path / "no-proc"))
    quiet.start()
    assert quiet.stop().throttled is False
    nothing = ConditionsSampler(Settings(sys_root=tmp_path / "empty", proc_root=tmp_path / "no-proc")).stop()
    assert (nothing.cpu_temp_c_start, nothing.cpu_freq_mhz_mean, nothing.throttled) == (None, None, None)
    assert throttle_count(tmp_path / "empty") is None


def test_background_busy_and_observer_cpu_come_from_the_window():
    window = EnergyWindow(wall_s=4.0, cpu_j=100.0, cpu_source="rapl", machine_busy_s=5.0, own_cpu_s=0.1)
    report = energy_report(window, ffmpeg_cpu_s=4.0, frames=100, idle=None, settings=Settings())
    # Others: 5 - 4 - 0.1 = 0.9 CPU-s over 4 s of a machine with os.cpu_count() CPUs.
    assert report.observer_cpu_s == pytest.approx(0.1)
    assert report.background_busy == pytest.approx(0.9 / (4.0 * (os.cpu_count() or 1)))


def test_settle_waits_for_the_cpu_to_cool_and_no_longer_than_its_bound(tmp_path: Path):
    sysfs = tmp_path / "sys"
    (sensor,) = hwmon_chip(sysfs, 0, "k10temp", [40.0])
    settings = Settings(sys_root=sysfs, proc_root=make_procfs(tmp_path / "proc"))  # a still /proc/stat
    assert settle(settings, 0) == 0.0
    assert settle(settings, 5) < 0.5  # cool and quiet: the first look (40 °C, the coolest yet) suffices
    set_celsius(sensor, 50.0)  # hot after a job: 10 °C above the coolest
    cooled = threading.Timer(0.4, set_celsius, (sensor, 42.0))  # within 3 °C again after 0.4 s
    cooled.start()
    waited = settle(settings, 5)
    cooled.join()
    assert 0.35 <= waited < 2.0
    set_celsius(sensor, 55.0)
    assert 0.5 <= settle(settings, 0.5) < 2.0  # never cools: the bound ends the wait
