"""The per-job energy meter: every energy source of this node over one window.

:class:`EnergyMeter` is started right before FFmpeg, sampled on every progress
block (often enough that a RAPL counter wraps at most once between samples) and
stopped right after FFmpeg exits. It reads the CPU through :class:`CpuEnergy`
(RAPL packages, or the labelled estimate) and each NVIDIA GPU's total-energy
counter (NVML), which unlike sampled power misses nothing of a short job.
:func:`measure_idle` uses the same meter over a window of doing nothing.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Any

import psutil
from pydantic import BaseModel

from ffwatt.hardware.cpu_energy import CpuEnergy, CpuSource
from ffwatt.hardware.nvml import NvmlSession, open_gpus
from ffwatt.nodefacts import IdleBaseline
from ffwatt.settings import Settings

__all__ = ["EnergyMeter", "EnergyWindow", "measure_idle"]


class EnergyWindow(BaseModel):
    """What every source read over one window. ``cpu_j`` and ``cpu_source`` carry the one
    decision between RAPL and the estimate; ``cpu_basis`` says how, and why not RAPL."""

    wall_s: float = 0.0
    cpu_j: float | None = None
    cpu_source: CpuSource | None = None
    cpu_basis: str = ""
    cpu_zones_j: dict[str, float] | None = None
    dram_j: float | None = None  # RAPL's DRAM zones: memory, outside the packages' figure
    psys_j: float | None = None  # RAPL's psys zone: the whole platform, packages included
    machine_busy_s: float | None = None
    # CPU time of ffwatt's own processes in the window (this one and its children, the job's FFmpeg aside):
    # what of the machine's busy time is neither the job nor someone else's.
    own_cpu_s: float | None = None
    gpu_j: dict[int, float] | None = None
    gpu_names: dict[int, str] | None = None
    gpu_video_share: dict[int, float | None] | None = None
    gpu_unavailable: str | None = None
    # The plug's energy, from the BMC (exporters.redfish.WallMeter, run beside this meter by the transcode task).
    wall_j: float | None = None
    wall_missing: str | None = None


class EnergyMeter:
    """Accumulates every energy source of this node between :meth:`start` and :meth:`stop`."""

    def __init__(self, settings: Settings, *, nvml: Any | None = None) -> None:
        self._settings = settings
        self._cpu = CpuEnergy(powercap_root=settings.powercap_root, proc_root=settings.proc_root,
                              tdp_override_w=settings.cpu_tdp_w, kinds={"package", "dram", "psys"})
        self._nvml_source = nvml
        self._nvml: NvmlSession | None = None
        self._gpu_start: dict[int, float] = {}
        self._gpu_unavailable: str | None = None
        self._t0 = 0.0
        self._since_us = 0
        self._pid: int | None = None
        self._own_start: dict[tuple[int, float], float] = {}

    def track(self, pid: int) -> None:
        """The process whose share of the GPUs' video engines this window measures."""
        self._pid = pid

    def start(self) -> None:
        self._own_start = _own_cpu_times(self._pid)
        session = open_gpus(self._settings.gpu, self._nvml_source)
        if isinstance(session, str):
            self._gpu_unavailable = session
        else:
            self._nvml = session
            self._gpu_start = session.energy_j()
        self._cpu.sample()
        self._t0 = time.perf_counter()
        self._since_us = int(time.time() * 1e6)

    def sample(self) -> None:
        self._cpu.sample()

    def stop(self) -> EnergyWindow:
        self.sample()
        own_end = _own_cpu_times(self._pid)
        cpu_j, cpu_source, cpu_basis = self._cpu.energy()
        window = EnergyWindow(wall_s=time.perf_counter() - self._t0, cpu_j=cpu_j, cpu_source=cpu_source,
                              cpu_basis=cpu_basis, cpu_zones_j=self._cpu.package_joules(),
                              dram_j=self._cpu.kind_joules("dram"), psys_j=self._cpu.kind_joules("psys"),
                              machine_busy_s=self._cpu.busy_s if cpu_source else None,
                              own_cpu_s=sum(cpu - self._own_start.get(key, 0.0) for key, cpu in own_end.items()),
                              gpu_unavailable=self._gpu_unavailable)
        if self._nvml is not None:
            end = self._nvml.energy_j()
            window.gpu_j = {i: end[i] - self._gpu_start[i] for i in end if i in self._gpu_start}
            window.gpu_names = {g.index: g.name for g in self._nvml.gpus}
            if self._pid is not None:
                window.gpu_video_share = self._nvml.video_share(self._pid, self._since_us)
            self._nvml.close()
            self._nvml = None
        return window


def _own_cpu_times(job_pid: int | None) -> dict[tuple[int, float], float]:
    """User + system CPU seconds of this process and each of its descendants but the job's FFmpeg
    (``job_pid``), by (pid, start time): ffwatt's own share of a window, which is neither the job's nor
    another's. Children's times of processes already reaped aren't counted here (FFmpeg's go to the job)."""
    times: dict[tuple[int, float], float] = {}
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        if process.pid == job_pid:
            continue
        with contextlib.suppress(psutil.Error), process.oneshot():
            cpu = process.cpu_times()
            times[(process.pid, process.create_time())] = cpu.user + cpu.system
    return times


def measure_idle(seconds: float, settings: Settings, *, nvml: Any | None = None) -> IdleBaseline:
    """Measure the node's power over ``seconds`` of doing nothing."""
    meter = EnergyMeter(settings, nvml=nvml)
    meter.start()
    deadline = time.perf_counter() + seconds
    while (left := deadline - time.perf_counter()) > 0:
        time.sleep(min(0.5, left))
        meter.sample()
    window = meter.stop()
    gpu_j = sum(window.gpu_j.values()) if window.gpu_j else None
    return IdleBaseline(
        seconds=window.wall_s,
        cpu_w=None if window.cpu_j is None else window.cpu_j / window.wall_s,
        dram_w=None if window.dram_j is None else window.dram_j / window.wall_s,
        cpu_source=window.cpu_source,
        gpu_w=None if gpu_j is None else gpu_j / window.wall_s,
        basis=window.cpu_basis,
        node=settings.node,
        measured_at=datetime.now(UTC),
    )
