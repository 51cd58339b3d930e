"""Energy through its seams: a synthetic powercap tree, a synthetic procfs, NVML readings
recorded on an H200. The same code paths run on real hardware."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from analysis.efficiency import config_efficiency, job_efficiency
from cli._output import console, results_table
from ffwatt.hardware.cpu_energy import CpuEnergy
from ffwatt.hardware.meter import EnergyMeter, EnergyWindow, measure_idle
from ffwatt.hardware.nvml import ReplayNvml, open_gpus, open_nvml, read_gpu
from ffwatt.hardware.powercap import counter_delta, discover_zones, package_zones
from ffwatt.nodefacts import IdleBaseline
from ffwatt.schema import is_estimated
from ffwatt.settings import Settings
from tasks.energy import energy_report
from testbed.powercap import intel_two_sockets, set_energy
from tests.procfs import make_procfs, set_busy

PROBE = json.loads((Path(__file__).parent / "data" / "nvml-h200-probe.json").read_text())
THREADS = os.cpu_count() or 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def settings(root: Path, **extra) -> Settings:
    """A node whose RAPL tree is ``root``; GPU metering on (the GPU tests hand the meter a replay)."""
    return Settings(powercap_root=root, **{"gpu": True, **extra})


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


def test_meter_accumulates_packages_across_wraps_adds_dram_and_ignores_core_and_psys(tmp_path: Path):
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
        set_energy(zones["package-0/dram"], step * 999)  # memory, outside the package figure: added
        set_energy(zones["package-0/core"], step * 777)  # part of its package: never added
        set_energy(zones["psys"], step * 5_000_000 % max_range)
        meter.sample()
    window = meter.stop()
    assert window.cpu_source == "rapl" and "41 samples" in window.cpu_basis
    assert window.cpu_zones_j == {key: pytest.approx(joules / 1e6, abs=1e-9) for key, joules in truth.items()}
    report = energy_report(window, ffmpeg_cpu_s=1.0, frames=100, idle=None, settings=settings(tmp_path))
    # Packages: 40 x 0.3 J + 40 x 0.17 J; DRAM: 39 x 999 uJ after the first read (0) = 0.038961 J.
    assert report.energy_source == "rapl" and report.cpu_energy_j == pytest.approx(12.0 + 6.8)
    assert report.dram_energy_j == pytest.approx(0.038961) and report.platform_energy_j is not None
    assert report.energy_j == pytest.approx(18.838961) and report.joules_per_frame == pytest.approx(0.18838961)
    assert "no_idle_baseline" in report.energy_flags


def cpu_working(powercap: Path, proc: Path, *, seconds: float, busy_s: float) -> CpuEnergy:
    """CPU energy sampled over ``seconds`` during which the machine was busy ``busy_s`` CPU-seconds."""
    clock = Clock()
    cpu = CpuEnergy(powercap_root=powercap, proc_root=make_procfs(proc), tdp_override_w=80, clock=clock)
    cpu.sample()
    clock.now = seconds
    set_busy(proc, busy_s=busy_s, idle_s=1000.0)
    cpu.sample()
    return cpu


def test_without_rapl_the_estimate_follows_busy_time_and_the_power_model(tmp_path: Path):
    cpu = cpu_working(tmp_path / "no-powercap", tmp_path / "proc", seconds=10.0, busy_s=8.0)
    joules, source, basis = cpu.energy()
    max_w, idle_w = 80 / THREADS, 80 / THREADS * 0.21
    assert source == "estimated" and joules == pytest.approx(THREADS * idle_w * 10 + (max_w - idle_w) * 8)
    assert basis.startswith("estimated") and "FFWATT_CPU_TDP_W=80" in basis and "no RAPL zones" in basis


def test_a_counter_that_stands_still_while_the_cpu_works_is_not_believed(tmp_path: Path):
    """Some VMs expose RAPL files whose counters never move: 0 J must not pass as a measurement."""
    intel_two_sockets(tmp_path / "powercap")  # every counter stays at 0
    cpu = cpu_working(tmp_path / "powercap", tmp_path / "proc", seconds=2.0, busy_s=1.5)
    assert cpu.source == "estimated" and "package-0, package-1 did not advance" in (cpu.unreadable or "")
    joules, source, basis = cpu.energy()
    assert source == "estimated" and joules > 0 and "did not advance" in basis


def test_a_still_counter_on_an_idle_cpu_is_believed(tmp_path: Path):
    zones = intel_two_sockets(tmp_path / "powercap")
    proc = make_procfs(tmp_path / "proc")
    cpu = CpuEnergy(powercap_root=tmp_path / "powercap", proc_root=proc, tdp_override_w=None)
    cpu.sample()
    cpu.sample()  # no CPU work in between: nothing to judge by
    set_energy(zones["package-0"], 1_000_000)
    set_energy(zones["package-1"], 2_000_000)
    set_busy(proc, busy_s=1.0, idle_s=1000.0)
    cpu.sample()
    assert cpu.source == "rapl" and cpu.energy()[0] == pytest.approx(3.0)


def test_the_meter_falls_back_when_counters_freeze_during_a_job(tmp_path: Path):
    intel_two_sockets(tmp_path / "powercap")
    proc = make_procfs(tmp_path / "proc")
    meter = EnergyMeter(Settings(powercap_root=tmp_path / "powercap", proc_root=proc, gpu=False))
    meter.start()
    set_busy(proc, busy_s=3.0, idle_s=1000.0)
    time.sleep(0.6)  # longer than FROZEN_AFTER_S
    window = meter.stop()
    assert window.cpu_source == "estimated" and window.cpu_zones_j is None
    report = energy_report(window, ffmpeg_cpu_s=2.9, frames=10, idle=None, settings=Settings())
    assert report.energy_source == "estimated" and "did not advance" in report.energy_basis


def test_idle_baseline_net_and_attributed_energy():
    window = EnergyWindow(wall_s=4.0, cpu_j=100.0, cpu_source="rapl", machine_busy_s=5.0, gpu_j={0: 200.0})
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


def test_busy_machine_is_other_processes_cpu_not_ffwatts_own():
    """busy_machine was set when FFmpeg had under 90 % of the busy CPU time, so ffwatt's own work (the
    campaign process, its Prefect server) flagged every window, a solo run's too, and singled nothing out."""
    own_overhead = EnergyWindow(wall_s=4.0, cpu_j=100.0, cpu_source="rapl", machine_busy_s=5.0, own_cpu_s=0.95)
    report = energy_report(own_overhead, ffmpeg_cpu_s=4.0, frames=100, idle=None, settings=Settings())
    assert report.cpu_share == pytest.approx(0.8) and report.others_cpu_s == pytest.approx(0.05)
    assert "busy_machine" not in (report.energy_flags or "")
    shared = own_overhead.model_copy(update={"own_cpu_s": 0.1})
    report = energy_report(shared, ffmpeg_cpu_s=4.0, frames=100, idle=None, settings=Settings())
    assert report.others_cpu_s == pytest.approx(0.9) and "busy_machine" in (report.energy_flags or "")


def test_the_meter_tells_ffwatts_own_cpu_from_other_processes(tmp_path: Path):
    """Over a real window: the job (a child, as FFmpeg is), a thread of this process and a process that
    isn't ours each burn a known amount of CPU time; the window counts the thread and not the stranger
    as ffwatt's own, and the stranger's time is what makes the machine busy."""
    import subprocess
    import sys
    import threading

    from ffwatt.processes import identity

    burn = "import time\nwhile time.process_time() < {}: pass\n"
    meter = EnergyMeter(Settings(powercap_root=tmp_path / "none", gpu=False))
    meter.start()
    # Not ours: sh starts it in the background and exits, so it is nobody's child here.
    launcher = subprocess.run(["sh", "-c", '"$0" -c "$1" >/dev/null 2>&1 & echo $!', sys.executable,
                               burn.format(0.8)], capture_output=True, text=True, check=True)
    stranger = identity(int(launcher.stdout))
    job = subprocess.Popen([sys.executable, "-c", burn.format(0.5)])
    meter.track(job.pid)
    burned: list[float] = []

    def ours() -> None:
        start = time.thread_time()
        while time.thread_time() - start < 0.3:
            pass
        burned.append(time.thread_time() - start)

    thread = threading.Thread(target=ours)
    thread.start()
    _, _, usage = os.wait4(job.pid, 0)
    job.returncode = 0
    thread.join()
    while stranger is not None and identity(stranger.pid) is not None:  # it ends by itself
        time.sleep(0.05)
    window = meter.stop()
    report = energy_report(window, ffmpeg_cpu_s=usage.ru_utime + usage.ru_stime, frames=10, idle=None,
                           settings=Settings())
    assert window.own_cpu_s is not None and window.own_cpu_s >= burned[0] - 0.02
    assert window.own_cpu_s < burned[0] + 0.4  # the stranger's 0.8 s isn't ffwatt's
    assert report.others_cpu_s is not None and report.others_cpu_s >= 0.8 - 0.05
    assert "busy_machine" in (report.energy_flags or "")


def test_short_windows_are_flagged():
    window = EnergyWindow(wall_s=0.15, cpu_j=1.0, cpu_source="rapl", machine_busy_s=0.1, gpu_j={0: 10.0})
    report = energy_report(window, ffmpeg_cpu_s=0.1, frames=3, idle=None, settings=Settings())
    assert "short_window" in report.energy_flags  # NVML's counter moves every ~0.107 s


def test_unreadable_counter_falls_back_with_the_reason(tmp_path: Path):
    zones = intel_two_sockets(tmp_path)
    (zones["package-1"] / "energy_uj").unlink()
    (zones["package-1"] / "energy_uj").mkdir()  # reading it fails (as root, chmod wouldn't)
    meter = EnergyMeter(settings(tmp_path, gpu=False))
    meter.start()
    window = meter.stop()
    assert window.cpu_zones_j is None and window.cpu_source == "estimated"
    report = energy_report(window, ffmpeg_cpu_s=0.0, frames=10, idle=None, settings=settings(tmp_path))
    assert report.energy_source == "estimated" and "RAPL: can't read" in report.energy_basis


def test_no_reading_at_all_is_null_not_zero(tmp_path: Path):
    meter = EnergyMeter(Settings(powercap_root=tmp_path, proc_root=tmp_path / "no-proc", gpu=False))
    meter.start()
    window = meter.stop()
    report = energy_report(window, ffmpeg_cpu_s=None, frames=None, idle=None, settings=Settings())
    assert report.energy_j is None and report.energy_source is None
    assert "stat unreadable" in window.cpu_basis


def test_gpu_energy_comes_from_the_nvml_counter_of_the_recorded_h200(tmp_path: Path):
    clock = Clock()
    meter = EnergyMeter(settings(tmp_path / "none"), nvml=ReplayNvml(PROBE, clock))
    clock.now = 10.5
    meter.start()
    clock.now = 25.4  # the recorded load phase
    window = meter.stop()
    start = max(s for s in PROBE["samples"] if s[0] <= 10.5)[2]
    end = max(s for s in PROBE["samples"] if s[0] <= 25.4)[2]
    assert window.gpu_j == {0: pytest.approx((end - start) / 1000)}
    assert window.gpu_names == {0: "NVIDIA H200"} and window.gpu_j[0] > 5000


def test_gpu_reading_and_a_missing_driver():
    clock = Clock()
    session = open_nvml(ReplayNvml(PROBE, clock))
    assert not isinstance(session, str) and session.driver_version == "580.159.04"
    reading = read_gpu(session, 0)
    assert reading.power_limit_w == 700.0 and reading.memory_total_bytes == 150754820096
    assert reading.encoder_utilization == 0.0 and reading.video_clock_hz == 765e6
    reason = open_nvml(ReplayNvml(PROBE, clock, driver_loaded=False))
    assert isinstance(reason, str) and "Driver Not Loaded" in reason
    assert open_gpus(False, ReplayNvml(PROBE, clock)) == "GPU metering off (FFWATT_GPU=false)"


def test_measure_idle_on_a_synthetic_tree(tmp_path: Path):
    zones = intel_two_sockets(tmp_path / "powercap")
    set_energy(zones["package-0"], 5_000_000)
    proc = make_procfs(tmp_path / "proc")  # an idle machine: a still counter is believable
    idle = measure_idle(0.3, Settings(powercap_root=tmp_path / "powercap", proc_root=proc, gpu=False,
                                      node="n1"))
    assert idle.cpu_source == "rapl" and idle.cpu_w == 0.0 and idle.seconds >= 0.3
    assert idle.node == "n1" and idle.measured_at is not None


class SharedGpu(ReplayNvml):
    """The recorded H200, with a second process using the encoder alongside ours."""

    def __init__(self, probe, clock, ours: int) -> None:
        super().__init__(probe, clock)
        self.ours = ours

    def nvmlDeviceGetProcessUtilization(self, handle, since_us):
        return [SimpleNamespace(pid=self.ours, encUtil=60, decUtil=0, smUtil=5, memUtil=1, timeStamp=since_us),
                SimpleNamespace(pid=4242, encUtil=30, decUtil=10, smUtil=5, memUtil=1, timeStamp=since_us)]


def test_a_shared_gpu_is_attributed_by_video_engine_use(tmp_path: Path):
    clock = Clock()
    meter = EnergyMeter(settings(tmp_path / "none"), nvml=SharedGpu(PROBE, clock, ours=1234))
    meter.start()
    meter.track(1234)
    clock.now = 20.0
    window = meter.stop()
    assert window.gpu_video_share == {0: pytest.approx(0.6)}
    idle = IdleBaseline(seconds=5, cpu_w=1.0, cpu_source="estimated", gpu_w=80.0, basis="x")
    window = window.model_copy(update={"wall_s": 20.0, "cpu_j": 30.0, "cpu_source": "estimated",
                                       "machine_busy_s": 4.0})
    report = energy_report(window, ffmpeg_cpu_s=4.0, frames=100, idle=idle, settings=settings(tmp_path))
    gpu_net = report.gpu_energy_j - 80.0 * 20.0
    cpu_net = report.cpu_energy_j - 1.0 * 20.0
    assert report.energy_source == "estimated+nvml"
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
    window = window.model_copy(update={"wall_s": 5.0, "cpu_j": 10.0, "cpu_source": "rapl", "machine_busy_s": 1.0})
    report = energy_report(window, ffmpeg_cpu_s=1.0, frames=10,
                           idle=IdleBaseline(seconds=5, cpu_w=0.5, cpu_source="rapl", gpu_w=70.0, basis="x"),
                           settings=settings(tmp_path))
    assert "shared_gpu" not in (report.energy_flags or "")
    assert report.attributed_energy_j == pytest.approx((10.0 - 2.5) + (report.gpu_energy_j - 350.0))


def test_a_gpu_node_without_rapl_is_estimated_everywhere():
    """estimated+nvml (most cloud GPU VMs): the estimated part marks the whole figure."""
    assert is_estimated("estimated") and is_estimated("estimated+nvml") and is_estimated("nvml+estimated")
    assert not is_estimated("rapl+nvml") and not is_estimated("nvml") and not is_estimated(None)
    rows = pd.DataFrame([
        dict(job_id=f"j{i}", config_id="c", node="n", input_name="a", encoder="h264_nvenc", preset="p4",
             rate_control="crf", crf=23, qp=None, target_bitrate_kbps=None, output_width=640, output_height=360,
             status="ok", repetition=i, wall_s=2.0, frames=60, energy_j=100.0, energy_source=source,
             output_bytes=1, bitrate_kbps=1.0, encode_fps=30.0)
        for i, source in enumerate(["estimated+nvml", "rapl+nvml"], start=1)])
    jobs = job_efficiency(rows)
    assert list(jobs["energy_estimated"]) == [True, False]
    configs = config_efficiency(jobs)
    assert bool(configs.loc[0, "energy_estimated"]) and configs.loc[0, "energy_sources"] == "estimated+nvml+rapl+nvml"
    table = results_table(rows.assign(repetition=[1, 2], psnr=None, ssim=None, vmaf=None, joules_per_frame=1.6),
                          "t")
    with console.capture() as captured:
        console.print(table)
    text = captured.get()
    assert text.count("100.0*") == 1 and "* estimated" in text


@pytest.mark.parametrize("tree", ["readable", "unreadable", "psys-only"])
def test_a_nodes_facts_and_its_meter_decide_the_cpu_source_alike(tmp_path: Path, tree: str):
    """Facts said rapl wherever package zones could be read, the meter wherever any zone could: a
    node with a psys zone alone was 'estimated' in its facts and 'rapl' (0 J) in its rows."""
    from ffwatt.hardware.cpu_energy import cpu_energy_source
    from testbed.powercap import make_zone

    if tree == "psys-only":
        make_zone(tmp_path, "intel-rapl:0", "psys")
    else:
        zones = intel_two_sockets(tmp_path)
        if tree == "unreadable":
            (zones["package-1"] / "energy_uj").unlink()
            (zones["package-1"] / "energy_uj").mkdir()
    facts = cpu_energy_source(powercap_root=tmp_path, proc_root=Path("/proc"))
    meter = EnergyMeter(settings(tmp_path, gpu=False))
    meter.start()
    window = meter.stop()
    if tree == "readable":
        assert facts == window.cpu_source == "rapl"
    else:
        assert facts.startswith("estimated: ") and window.cpu_source == "estimated"
        assert facts.removeprefix("estimated: ") in window.cpu_basis
