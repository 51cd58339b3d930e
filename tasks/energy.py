"""Energy accounting: what a job's encode window cost, in joules, and whose joules they were.

The window's readings come from :class:`ffwatt.hardware.meter.EnergyMeter`.
:func:`energy_report` turns them into the row's energy columns: gross joules per
source, net of the node's idle baseline, and the share attributed to the FFmpeg
process by its part of the machine's CPU time. Measured and estimated figures are
never added together without the source saying so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from ffwatt.files import write_atomic
from ffwatt.hardware.cpu import logical_cpus
from ffwatt.hardware.meter import EnergyWindow, measure_idle
from ffwatt.nodefacts import IdleBaseline
from ffwatt.schema import EnergyColumns
from ffwatt.settings import Settings, load_settings

__all__ = ["SENSOR_INTERVAL_S", "account_energy", "energy_report", "idle_baseline"]

# A window is busy_machine when other processes used over this share of the machine's busy CPU time, and
# more than the floor: /proc/stat and process times count in 10 ms ticks, a few of which are no one's load.
BUSY_SHARE = 0.1
BUSY_FLOOR_S = 0.05
# How often each source's reading changes; a window shorter than two of these is flagged.
SENSOR_INTERVAL_S = {"rapl": 0.001, "estimated": 0.01, "nvml": 0.107}  # nvml: measured on an H200


def _gpu_share(window: EnergyWindow) -> float:
    """The job's share of the GPUs' energy, weighting each GPU by its energy in the window."""
    if not window.gpu_j or not window.gpu_video_share:
        return 1.0
    total = sum(window.gpu_j.values())
    if total <= 0:
        return 1.0
    shares = window.gpu_video_share
    return sum(joules * (share if (share := shares.get(index)) is not None else 1.0)
               for index, joules in window.gpu_j.items()) / total


def energy_report(
    window: EnergyWindow,
    *,
    ffmpeg_cpu_s: float | None,
    frames: int | None,
    idle: IdleBaseline | None,
    settings: Settings,
) -> EnergyColumns:
    """The energy columns of a job from its window, its CPU time and the node's idle baseline."""
    cpu_j, cpu_source, basis = window.cpu_j, window.cpu_source, window.cpu_basis
    gpu_j = sum(window.gpu_j.values()) if window.gpu_j else None
    # DRAM is outside RAPL's package figure, so it adds to it; psys is the whole platform, packages and DRAM
    # included, so it is only reported. Both are RAPL, read with the packages: rapl stays the source's word.
    dram_j = window.dram_j if cpu_source == "rapl" else None
    sources = [s for s in (cpu_source, "nvml" if gpu_j is not None else None) if s]
    if dram_j is not None:
        basis += "; plus RAPL DRAM"
    if window.psys_j is not None and cpu_source == "rapl":
        basis += "; RAPL psys reported as platform_energy_j, not added"
    if gpu_j is not None:
        basis += f"; NVML energy counters of {len(window.gpu_j or {})} GPU(s)"
    parts = [v for v in (cpu_j, dram_j, gpu_j) if v is not None]
    total = sum(parts) if parts else None
    report = EnergyColumns(cpu_energy_j=cpu_j, dram_energy_j=dram_j, gpu_energy_j=gpu_j, energy_j=total,
                           platform_energy_j=window.psys_j if cpu_source == "rapl" else None,
                           energy_source="+".join(sources) or None, energy_basis=basis,
                           observer_cpu_s=window.own_cpu_s,
                           wall_energy_j=window.wall_j, wall_source="redfish" if window.wall_j is not None else None,
                           wall_missing=window.wall_missing)
    if total is None:
        return report
    wall = window.wall_s
    flags = []
    report.avg_power_w = total / wall if wall > 0 else None
    report.joules_per_frame = total / frames if frames else None
    if ffmpeg_cpu_s is not None and window.machine_busy_s:
        report.cpu_share = max(0.0, min(1.0, ffmpeg_cpu_s / window.machine_busy_s))
        # Busy is what other processes used, not ffwatt's own (the campaign, its Prefect server): measured,
        # so the flag singles out the windows someone else shared.
        report.others_cpu_s = max(0.0, window.machine_busy_s - ffmpeg_cpu_s - (window.own_cpu_s or 0.0))
        if report.others_cpu_s > max(BUSY_SHARE * window.machine_busy_s, BUSY_FLOOR_S):
            flags.append("busy_machine")
        if wall > 0:
            report.background_busy = min(1.0, report.others_cpu_s / (wall * logical_cpus()))
    if idle is not None and idle.cpu_w is not None:
        # The memory's idle power counts where the job's DRAM does; the CPU's share of the busy time is the
        # job's share of both (memory traffic follows the work that makes it).
        cpu_idle_w = idle.cpu_w + ((idle.dram_w or 0.0) if dram_j is not None else 0.0)
        idle_w = cpu_idle_w + ((idle.gpu_w or 0.0) if gpu_j is not None else 0.0)
        report.idle_power_w = idle_w
        report.net_energy_j = total - idle_w * wall
        cpu_net = (cpu_j or 0.0) + (dram_j or 0.0) - cpu_idle_w * wall
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


@task(name="idle-baseline", cache_policy=NO_CACHE)
def idle_baseline(seconds: float, reuse_s: float = 0) -> IdleBaseline | None:
    """The node's idle power before its first job: its latest baseline if at most ``reuse_s`` old and
    measured over at least ``seconds``, else measured now (and kept for the next run); None when
    disabled (0 s)."""
    if seconds <= 0:
        return None
    settings = load_settings()
    kept = settings.idle_dir / "latest.json"
    latest = _latest_idle(kept, settings.node)
    if latest is not None and latest.measured_at is not None and latest.seconds >= seconds * 0.95:
        age = (datetime.now(UTC) - latest.measured_at).total_seconds()
        if 0 <= age <= reuse_s:
            return latest.model_copy(update={"reused": True})
    measured = measure_idle(seconds, settings)
    write_atomic(kept, lambda tmp: tmp.write_text(measured.model_dump_json()))
    return measured


def _latest_idle(path: Path, node: str) -> IdleBaseline | None:
    try:
        latest = IdleBaseline.model_validate_json(path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: measure
        return None
    return latest if latest.node == node else None


@task(name="account-energy", cache_policy=NO_CACHE)
def account_energy(window: EnergyWindow, ffmpeg_cpu_s: float | None, frames: int | None,
                   idle: IdleBaseline | None) -> EnergyColumns:
    """Turn an encode's energy window into the job's energy columns."""
    return energy_report(window, ffmpeg_cpu_s=ffmpeg_cpu_s, frames=frames, idle=idle, settings=load_settings())
