"""analyze: the campaign run's summary, written beside its rows as ``_run.json``."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from statistics import fmean
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ffwatt.ffmpeg import ffmpeg_path, probe_build
from ffwatt.hardware import cpu_facts
from ffwatt.nvml import open_nvml
from ffwatt.results import write_run_summary
from ffwatt.schema import JobRow
from ffwatt.settings import Settings, load_settings
from tasks.energy import IdleBaseline

__all__ = ["analyze", "summarize"]

_CONFIG_KEYS = ("input_name", "encoder", "preset", "rate_control", "crf", "qp", "target_bitrate_kbps",
                "output_width", "output_height")
_MEANS = ("wall_s", "encode_fps", "bitrate_kbps", "psnr", "ssim", "vmaf", "energy_j", "joules_per_frame")


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


def node_facts(settings: Settings) -> dict[str, Any]:
    """What the node is, stored once per run: CPU, kernel, GPUs and driver, FFmpeg."""
    build = probe_build(ffmpeg_path(settings))
    session = open_nvml() if settings.gpu else "GPU metering off"
    if isinstance(session, str):
        gpus: dict[str, Any] = {"count": 0, "reason": session}
    else:
        gpus = {"count": len(session.gpus), "driver_version": session.driver_version,
                "devices": [{"index": g.index, "uuid": g.uuid, "name": g.name} for g in session.gpus]}
        session.close()
    return {
        "name": settings.node,
        **cpu_facts(settings.proc_root),
        "kernel": platform.release(),
        "gpus": gpus,
        "ffmpeg_path": build.path,
        "ffmpeg_version": build.version,
        "ffmpeg_configuration": build.configuration,
        "price_per_kwh": settings.price_per_kwh,
        "co2_g_per_kwh": settings.co2_g_per_kwh,
    }


def summarize(rows: list[JobRow], *, campaign: str, run_id: str, started_at: datetime,
              idle: IdleBaseline | None, settings: Settings) -> dict[str, Any]:
    """Counts, per-configuration means over repetitions, and the node it ran on."""
    configs: dict[str, list[JobRow]] = {}
    for row in rows:
        configs.setdefault(row.config_id, []).append(row)
    per_config = []
    for config_id, group in configs.items():
        ok = [r for r in group if r.status == "ok"]
        entry: dict[str, Any] = {"config_id": config_id, **{k: getattr(group[0], k) for k in _CONFIG_KEYS}}
        entry |= {"runs": len(group), "ok": len(ok)}
        entry |= {f"mean_{k}": _mean([getattr(r, k) for r in ok]) for k in _MEANS}
        entry["energy_source"] = ",".join(sorted({r.energy_source for r in ok if r.energy_source}))
        per_config.append(entry)
    ended_at = datetime.now(UTC)
    return {
        "campaign": campaign,
        "run_id": run_id,
        "started_at": started_at,
        "ended_at": ended_at,
        "wall_s": (ended_at - started_at).total_seconds(),
        "jobs": len(rows),
        "ok": sum(r.status == "ok" for r in rows),
        "failed": sum(r.status == "failed" for r in rows),
        "encode_wall_s": sum(r.wall_s or 0 for r in rows),
        "node": node_facts(settings),
        "idle_baseline": idle.model_dump() if idle else None,
        "configurations": per_config,
    }


@task(name="analyze", cache_policy=NO_CACHE)
def analyze(rows: list[JobRow], campaign: str, run_id: str, started_at: datetime,
            idle: IdleBaseline | None = None) -> dict[str, Any]:
    """Summarize the run and store the summary beside its rows."""
    settings = load_settings()
    summary = summarize(rows, campaign=campaign, run_id=run_id, started_at=started_at, idle=idle,
                        settings=settings)
    write_run_summary(settings.results_dir, campaign, run_id, summary)
    return summary
