from __future__ import annotations

import json
from pathlib import Path

import pytest

from ffwatt.nvml import ReplayNvml, open_nvml, read_gpu
from ffwatt.powercap import counter_delta, discover_zones, package_zones
from ffwatt.settings import Settings
from tasks.energy import EnergyMeter, EnergyWindow, IdleBaseline, energy_report, measure_idle
from tests.powercap import intel_two_sockets, set_energy

PROBE = json.loads((Path(__file__).parent / "data" / "nvml-h200-probe.json").read_text())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def settings(root: Path, **extra) -> Settings:
    return Settings(powercap_root=root, **extra)


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
    meter = EnergyMeter(settings(tmp_path, gpu=False))
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
    assert window.rapl_unreadable is None and window.rapl_samples == 41
    for key in truth:
        assert abs(window.cpu_zones_j[key] - truth[key] / 1e6) < 1e-9
    report = energy_report(window, ffmpeg_cpu_s=1.0, frames=100, idle=None, settings=settings(tmp_path))
    assert report.energy_source == "rapl" and report.cpu_energy_j == report.energy_j
    assert abs(report.energy_j - (12.0 + 6.8)) < 1e-6 and abs(report.joules_per_frame - 0.188) < 1e-6
    assert "no_idle_baseline" in report.energy_flags


def test_no_rapl_gives_an_estimate_labelled_as_such(tmp_path: Path):
    window = EnergyWindow(wall_s=10.0, machine_busy_s=8.0, rapl_unreadable="no RAPL package zones under x")
    report = energy_report(window, ffmpeg_cpu_s=6.0, frames=50, idle=None,
                           settings=settings(tmp_path, cpu_tdp_w=80))
    assert report.energy_source == "estimated"
    threads = __import__("os").cpu_count()
    max_w, idle_w = 80 / threads, 80 / threads * 0.21
    assert report.energy_j == pytest.approx(threads * idle_w * 10 + (max_w - idle_w) * 8)
    assert report.energy_basis.startswith("estimated") and "FFWATT_CPU_TDP_W=80" in report.energy_basis
    assert report.cpu_share == pytest.approx(0.75) and "busy_machine" in report.energy_flags


def test_idle_baseline_net_and_attributed_energy():
    window = EnergyWindow(wall_s=4.0, cpu_zones_j={"package-0": 100.0}, machine_busy_s=5.0,
                          gpu_j={0: 200.0})
    idle = IdleBaseline(seconds=5, cpu_w=10.0, cpu_source="rapl", gpu_w=20.0, basis="x")
    report = energy_report(window, ffmpeg_cpu_s=4.0, frames=100, idle=idle,
                           settings=Settings(price_per_kwh=0.36, co2_g_per_kwh=360))
    assert report.energy_source == "rapl+nvml" and report.energy_j == 300.0
    assert report.idle_power_w == 30.0 and report.net_energy_j == pytest.approx(300 - 30 * 4)
    # CPU: (100 - 40) x 4/5 ; GPU: 200 - 80, a GPU encode owns its device
    assert report.attributed_energy_j == pytest.approx(60 * 0.8 + 120)
    assert report.avg_power_w == 75.0 and report.cost == pytest.approx(300 / 3.6e6 * 0.36)
    assert report.co2_g == pytest.approx(300 / 3.6e6 * 360)
    assert report.energy_flags == "busy_machine"


def test_short_windows_are_flagged():
    window = EnergyWindow(wall_s=0.15, cpu_zones_j={"package-0": 1.0}, machine_busy_s=0.1, gpu_j={0: 10.0})
    report = energy_report(window, ffmpeg_cpu_s=0.1, frames=3, idle=None, settings=Settings())
    assert "short_window" in report.energy_flags  # NVML's counter moves every ~0.107 s


def test_unreadable_counter_falls_back_with_the_reason(tmp_path: Path):
    zones = intel_two_sockets(tmp_path)
    (zones["package-1"] / "energy_uj").unlink()
    (zones["package-1"] / "energy_uj").mkdir()  # reading it fails (as root, chmod wouldn't)
    meter = EnergyMeter(settings(tmp_path, gpu=False))
    meter.start()
    window = meter.stop()
    assert window.cpu_zones_j is None and "energy_uj" in window.rapl_unreadable
    report = energy_report(window, ffmpeg_cpu_s=0.0, frames=10, idle=None, settings=settings(tmp_path))
    assert report.energy_source == "estimated" and "RAPL: can't read" in report.energy_basis


def test_no_reading_at_all_is_null_not_zero():
    report = energy_report(EnergyWindow(rapl_unreadable="x"), ffmpeg_cpu_s=None, frames=None, idle=None,
                           settings=Settings())
    assert report.energy_j is None and report.energy_source is None


def test_gpu_energy_comes_from_the_nvml_counter_of_the_recorded_h200(tmp_path: Path):
    clock = Clock()
    nvml = ReplayNvml(PROBE, clock)
    meter = EnergyMeter(settings(tmp_path / "none"), nvml=nvml)
    clock.now = 10.5
    meter.start()
    clock.now = 25.4  # the recorded load phase
    window = meter.stop()
    start = max(s for s in PROBE["samples"] if s[0] <= 10.5)[2]
    end = max(s for s in PROBE["samples"] if s[0] <= 25.4)[2]
    assert window.gpu_j == {0: pytest.approx((end - start) / 1000)}
    assert window.gpu_names == {0: "NVIDIA H200"} and window.gpu_j[0] > 5000


def test_gpu_reading_and_a_missing_driver(tmp_path: Path):
    clock = Clock()
    session = open_nvml(ReplayNvml(PROBE, clock))
    assert not isinstance(session, str) and session.driver_version == "580.159.04"
    reading = read_gpu(session, 0)
    assert reading.power_limit_w == 700.0 and reading.memory_total_bytes == 150754820096
    assert reading.encoder_utilization == 0.0 and reading.video_clock_hz == 765e6
    reason = open_nvml(ReplayNvml(PROBE, clock, driver_loaded=False))
    assert isinstance(reason, str) and "Driver Not Loaded" in reason
    real = open_nvml()  # this machine has no NVIDIA driver
    assert isinstance(real, str) and "NVML" in real


def test_measure_idle_on_a_synthetic_tree(tmp_path: Path):
    zones = intel_two_sockets(tmp_path)
    set_energy(zones["package-0"], 5_000_000)
    idle = measure_idle(0.3, settings(tmp_path, gpu=False))
    assert idle.cpu_source == "rapl" and idle.cpu_w == 0.0 and idle.seconds >= 0.3


class SharedGpu(ReplayNvml):
    """The recorded H200, with a second process using the encoder alongside ours."""

    def __init__(self, probe, clock, ours: int) -> None:
        super().__init__(probe, clock)
        self.ours = ours

    def nvmlDeviceGetProcessUtilization(self, handle, since_us):
        from types import SimpleNamespace as Sample

        return [Sample(pid=self.ours, encUtil=60, decUtil=0, smUtil=5, memUtil=1, timeStamp=since_us),
                Sample(pid=4242, encUtil=30, decUtil=10, smUtil=5, memUtil=1, timeStamp=since_us)]


def test_a_shared_gpu_is_attributed_by_video_engine_use(tmp_path: Path):
    clock = Clock()
    meter = EnergyMeter(settings(tmp_path / "none"), nvml=SharedGpu(PROBE, clock, ours=1234))
    meter.start()
    meter.track(1234)
    clock.now = 20.0
    window = meter.stop()
    assert window.gpu_video_share == {0: pytest.approx(0.6)}
    idle = IdleBaseline(seconds=5, cpu_w=1.0, cpu_source="estimated", gpu_w=80.0, basis="x")
    window = window.model_copy(update={"wall_s": 20.0, "machine_busy_s": 4.0})
    report = energy_report(window, ffmpeg_cpu_s=4.0, frames=100, idle=idle, settings=settings(tmp_path))
    gpu_net = report.gpu_energy_j - 80.0 * 20.0
    cpu_net = report.cpu_energy_j - 1.0 * 20.0
    assert report.attributed_energy_j == pytest.approx(cpu_net + gpu_net * 0.6)
    assert "shared_gpu" in report.energy_flags


def test_a_gpu_nobody_else_used_is_the_jobs_whole(tmp_path: Path):
    clock = Clock()
    meter = EnergyMeter(settings(tmp_path / "none"), nvml=ReplayNvml(PROBE, clock))
    meter.start()
    meter.track(1234)
    clock.now = 5.0
    window = meter.stop()
    assert window.gpu_video_share == {0: None}  # NVML: no per-process samples
    report = energy_report(window.model_copy(update={"wall_s": 5.0, "machine_busy_s": 1.0}), ffmpeg_cpu_s=1.0,
                           frames=10, idle=IdleBaseline(seconds=5, cpu_w=0.5, cpu_source="estimated", gpu_w=70.0,
                                                        basis="x"), settings=settings(tmp_path))
    assert "shared_gpu" not in (report.energy_flags or "")
    assert report.attributed_energy_j == pytest.approx(
        (report.cpu_energy_j - 2.5) + (report.gpu_energy_j - 350.0))
