"""Describing this node: CPU, memory, kernel, energy sources, GPUs, FFmpeg."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from ffwatt.hardware.cpu import cpu_facts
from ffwatt.hardware.cpu_energy import cpu_energy_source
from ffwatt.hardware.ffmpeg import ffmpeg_path, probe_build
from ffwatt.hardware.nvml import describe_gpus
from ffwatt.nodefacts import GpuDevice, NodeFacts
from ffwatt.settings import Settings

__all__ = ["describe_node", "memory_bytes"]


def memory_bytes(proc_root: Path) -> int | None:
    try:
        for line in (proc_root / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def describe_node(settings: Settings, *, nvml: Any | None = None) -> NodeFacts:
    """The facts of the node this runs on."""
    build = probe_build(ffmpeg_path(settings))
    gpus, driver, unavailable = describe_gpus(settings.gpu, nvml)
    cpu = cpu_facts(settings.proc_root)
    return NodeFacts(
        name=settings.node,
        cpu_model=cpu.model,
        logical_cpus=cpu.logical_cpus,
        memory_bytes=memory_bytes(settings.proc_root),
        governor=cpu.governor,
        turbo=cpu.turbo,
        max_frequency_hz=cpu.max_frequency_hz,
        kernel=platform.release(),
        cpu_energy=cpu_energy_source(powercap_root=settings.powercap_root, proc_root=settings.proc_root),
        gpus=[GpuDevice(index=g.index, uuid=g.uuid, name=g.name) for g in gpus],
        gpu_driver=driver,
        gpu_unavailable=unavailable,
        ffmpeg_path=build.path,
        ffmpeg_version=build.version,
        ffmpeg_configuration=build.configuration,
        price_per_kwh=settings.price_per_kwh,
        co2_g_per_kwh=settings.co2_g_per_kwh,
    )
