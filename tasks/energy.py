"""collect-energy: what a job's encode window cost, in joules, and whose joules they were.

:class:`EnergyMeter` is started right before FFmpeg, sampled on every progress
block (often enough that a RAPL counter wraps at most once between samples) and
stopped right after FFmpeg exits. It reads every source this node has:

- RAPL package counters (``rapl``), or, where they can't be read, the CPU power
  model applied to the machine's busy time from ``/proc/stat`` (``estimated``);
- each NVIDIA GPU's total-energy counter (``nvml``), which unlike sampled power
  misses nothing of a short job.

:func:`energy_report` turns a window into the row's energy columns: gross joules
per source, net of the node's idle baseline, and the share attributed to the
FFmpeg process by its part of the machine's CPU time. Measured and estimated
figures are never added together without the source saying so.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from ffwatt.hardware import CpuPower, cpu_model, cpu_power, logical_cpus
from ffwatt.nvml import NvmlSession, open_nvml
from ffwatt.powercap import ZoneCounters, discover_zones, package_zones
from ffwatt.procstat import CpuTimes, read_cpu_times
from ffwatt.settings import Settings, load_settings

__all__ = [
    "EnergyMeter",
    "EnergyReport",
    "EnergyWindow",
    "IdleBaseline",
    "collect_energy",
    "energy_report",
    "measure_idle",
    "SENSOR_INTERVAL_S",
]

# How often each source's reading changes; a window shorter than two of these is flagged.
SENSOR_INTERVAL_S = {"rapl": 0.001, "estimated": 0.01, "nvml": 0.107}  # nvml: measured on an H200


class EnergyWindow(BaseModel):
    """Raw readings over one window."""

    wall_s: float = 0.0
    cpu_zones_j: dict[str, float] | None = None
    rapl_unreadable: str | None = None
    rapl_samples: int = 0
    machine_busy_s: float | None = None
    gpu_j: dict[int, float] | None = None
    gpu_names: dict[int, str] | None = None
    gpu_video_share: dict[int, float | None] | None = None
    gpu_unavailable: str | None = None


class IdleBaseline(BaseModel):
    """A node's power while idle, measured before a campaign's first job on it."""

    seconds: float
    cpu_w: float | None
    cpu_source: str | None
    gpu_w: float | None
    basis: str


class EnergyReport(BaseModel):
    """The energy columns of one job's row."""

    cpu_energy_j: float | None = None
    gpu_energy_j: float | None = None
    energy_j: float | None = None
    energy_source: str | None = None
    energy_basis: str = ""
    avg_power_w: float | None = None
    idle_power_w: float | None = None
    net_energy_j: float | None = None
    cpu_share: float | None = None
    attributed_energy_j: float | None = None
    joules_per_frame: float | None = None
    energy_flags: str | None = None
    cost: float | None = None
    co2_g: float | None = None


class EnergyMeter:
    """Accumulates every energy source of this node between :meth:`start` and :meth:`stop`."""

    def __init__(self, settings: Settings, *, nvml: object | None = None) -> None:
        self._settings = settings
        zones = package_zones(discover_zones(settings.powercap_root))
        self._rapl = ZoneCounters(zones, unreadable=None if zones else (
            f"no RAPL package zones under {settings.powercap_root} (not exposed on this machine or VM)"))
        self._nvml_source = nvml
        self._nvml: NvmlSession | None = None
        self._gpu_start: dict[int, float] = {}
        self._gpu_unavailable: str | None = None
        self._cpu_start: CpuTimes | None = None
        self._t0 = 0.0
        self._since_us = 0
        self._pid: int | None = None

    def track(self, pid: int) -> None:
        """The process whose share of the GPUs' video engines this window measures."""
        self._pid = pid

    def start(self) -> None:
        session = open_nvml(self._nvml_source) if self._settings.gpu else "GPU metering off (FFWATT_GPU=false)"
        if isinstance(session, str):
            self._gpu_unavailable = session
        else:
            self._nvml = session
            self._gpu_start = session.energy_j()
        self._cpu_start = self._read_cpu_times()
        self._rapl.sample()
        self._t0 = time.perf_counter()
        self._since_us = int(time.time() * 1e6)

    def _read_cpu_times(self) -> CpuTimes | None:
        try:
            return read_cpu_times(self._settings.proc_root)
        except OSError:
            return None

    def sample(self) -> None:
        self._rapl.sample()

    def stop(self) -> EnergyWindow:
        self.sample()
        wall_s = time.perf_counter() - self._t0
        cpu_end = self._read_cpu_times()
        busy = (cpu_end - self._cpu_start).busy_s if cpu_end and self._cpu_start else None
        window = EnergyWindow(wall_s=wall_s, rapl_samples=self._rapl.samples, machine_busy_s=busy,
                              gpu_unavailable=self._gpu_unavailable)
        if self._rapl.unreadable:
            window.rapl_unreadable = self._rapl.unreadable
        else:
            window.cpu_zones_j = dict(self._rapl.joules)
        if self._nvml is not None:
            end = self._nvml.energy_j()
            window.gpu_j = {i: end[i] - self._gpu_start[i] for i in end if i in self._gpu_start}
            window.gpu_names = {g.index: g.name for g in self._nvml.gpus}
            if self._pid is not None:
                window.gpu_video_share = self._nvml.video_share(self._pid, self._since_us)
            self._nvml.close()
            self._nvml = None
        return window


def _power_model(settings: Settings) -> CpuPower:
    return cpu_power(cpu_model(settings.proc_root), tdp_override_w=settings.cpu_tdp_w, threads=logical_cpus())


def _cpu_energy(window: EnergyWindow, settings: Settings) -> tuple[float | None, str | None, str]:
    """Whole-CPU joules over the window, their source, and how they were obtained."""
    if window.cpu_zones_j is not None:
        zones = ", ".join(sorted(window.cpu_zones_j))
        return sum(window.cpu_zones_j.values()), "rapl", f"RAPL ({zones}), {window.rapl_samples} samples"
    if window.machine_busy_s is not None:
        model = _power_model(settings)
        energy = model.energy_j(busy_cpu_s=window.machine_busy_s, wall_s=window.wall_s)
        return energy, "estimated", (f"estimated from /proc/stat busy {window.machine_busy_s:.2f} CPU-s over "
                                     f"{window.wall_s:.2f} s with {model.basis}; RAPL: {window.rapl_unreadable}")
    return None, None, f"no CPU reading: RAPL: {window.rapl_unreadable}; /proc/stat unreadable"


def _gpu_share(window: EnergyWindow) -> float:
    """The job's share of the GPUs' energy, weighting each GPU by its energy in the window."""
    if not window.gpu_j or not window.gpu_video_share:
        return 1.0
    total = sum(window.gpu_j.values())
    if total <= 0:
        return 1.0
    return sum(joules * (window.gpu_video_share.get(index) if window.gpu_video_share.get(index) is not None
                         else 1.0) for index, joules in window.gpu_j.items()) / total


def energy_report(
    window: EnergyWindow,
    *,
    ffmpeg_cpu_s: float | None,
    frames: int | None,
    idle: IdleBaseline | None,
    settings: Settings,
) -> EnergyReport:
    """The energy columns of a job from its window, its CPU time and the node's idle baseline."""
    cpu_j, cpu_source, basis = _cpu_energy(window, settings)
    gpu_j = sum(window.gpu_j.values()) if window.gpu_j else None
    sources = [s for s in (cpu_source, "nvml" if gpu_j is not None else None) if s]
    if gpu_j is not None:
        basis += f"; NVML energy counters of {len(window.gpu_j or {})} GPU(s)"
    parts = [v for v in (cpu_j, gpu_j) if v is not None]
    total = sum(parts) if parts else None
    report = EnergyReport(cpu_energy_j=cpu_j, gpu_energy_j=gpu_j, energy_j=total,
                          energy_source="+".join(sources) or None, energy_basis=basis)
    if total is None:
        return report
    wall = window.wall_s
    flags = []
    report.avg_power_w = total / wall if wall > 0 else None
    report.joules_per_frame = total / frames if frames else None
    if ffmpeg_cpu_s is not None and window.machine_busy_s:
        report.cpu_share = max(0.0, min(1.0, ffmpeg_cpu_s / window.machine_busy_s))
        if report.cpu_share < 0.9:
            flags.append("busy_machine")  # others used >10% of the CPU time: see attributed_energy_j
    if idle is not None and idle.cpu_w is not None:
        idle_w = idle.cpu_w + ((idle.gpu_w or 0.0) if gpu_j is not None else 0.0)
        report.idle_power_w = idle_w
        report.net_energy_j = total - idle_w * wall
        cpu_net = (cpu_j or 0.0) - idle.cpu_w * wall
        gpu_net = (gpu_j - (idle.gpu_w or 0.0) * wall) if gpu_j is not None else 0.0
        gpu_share = _gpu_share(window)
        if gpu_share < 0.9:
            flags.append("shared_gpu")  # other processes used the video engines in the window
        if report.cpu_share is not None:
            # CPU: the process's share of the busy CPU time. GPU: the whole device when the job
            # ran alone, else its share of the encoder/decoder utilisation NVML sampled per process
            # (SM utilisation barely moves during NVENC work, so it is no guide).
            report.attributed_energy_j = cpu_net * report.cpu_share + gpu_net * gpu_share
        if idle.cpu_source != cpu_source:
            flags.append("idle_baseline_other_source")
    else:
        flags.append("no_idle_baseline")
    if any(wall < 2 * SENSOR_INTERVAL_S[s] for s in sources):
        flags.append("short_window")  # shorter than two updates of a sensor it relies on
    report.energy_flags = ",".join(flags) or None
    kwh = total / 3.6e6
    report.cost = kwh * settings.price_per_kwh if settings.price_per_kwh is not None else None
    report.co2_g = kwh * settings.co2_g_per_kwh if settings.co2_g_per_kwh is not None else None
    return report


def measure_idle(seconds: float, settings: Settings, *, nvml: object | None = None) -> IdleBaseline:
    """Measure the node's power over ``seconds`` of doing nothing."""
    meter = EnergyMeter(settings, nvml=nvml)
    meter.start()
    deadline = time.perf_counter() + seconds
    while (left := deadline - time.perf_counter()) > 0:
        time.sleep(min(0.5, left))
        meter.sample()
    window = meter.stop()
    cpu_j, cpu_source, basis = _cpu_energy(window, settings)
    gpu_j = sum(window.gpu_j.values()) if window.gpu_j else None
    return IdleBaseline(
        seconds=window.wall_s,
        cpu_w=None if cpu_j is None else cpu_j / window.wall_s,
        cpu_source=cpu_source,
        gpu_w=None if gpu_j is None else gpu_j / window.wall_s,
        basis=basis,
    )


@task(name="idle-baseline", cache_policy=NO_CACHE)
def idle_baseline(seconds: float) -> IdleBaseline | None:
    """The node's idle power, measured before its first job; None when disabled (0 s)."""
    return measure_idle(seconds, load_settings()) if seconds > 0 else None


@task(name="collect-energy", cache_policy=NO_CACHE)
def collect_energy(window: EnergyWindow, ffmpeg_cpu_s: float | None, frames: int | None,
                   idle: IdleBaseline | None) -> EnergyReport:
    """Turn an encode's energy window into the job's energy columns."""
    return energy_report(window, ffmpeg_cpu_s=ffmpeg_cpu_s, frames=frames, idle=idle, settings=load_settings())


