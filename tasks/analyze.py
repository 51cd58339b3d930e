"""analyze: the campaign run's summary, written beside its rows as ``_run.json``."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from statistics import fmean
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ffwatt.ffmpeg import ffmpeg_path, probe_build
from ffwatt.hardware import cpu_model, logical_cpus
from ffwatt.results import write_run_summary
from ffwatt.schema import JobRow
from ffwatt.settings import Settings, load_settings

__all__ = ["analyze", "summarize"]

_CONFIG_KEYS = ("input_name", "encoder", "preset", "rate_control", "crf", "qp", "target_bitrate_kbps",
                "output_width", "output_height")
_MEANS = ("wall_s", "encode_fps", "bitrate_kbps", "psnr", "ssim", "vmaf", "energy_j", "joules_per_frame")


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


def summarize(rows: list[JobRow], *, campaign: str, run_id: str, started_at: datetime,
              settings: Settings) -> dict[str, Any]:
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
    build = probe_build(ffmpeg_path(settings))
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
        "node": {
            "name": settings.node,
            "cpu_model": cpu_model(settings.proc_root),
            "logical_cpus": logical_cpus(),
            "kernel": platform.release(),
            "ffmpeg_path": build.path,
            "ffmpeg_version": build.version,
            "ffmpeg_configuration": build.configuration,
        },
        "configurations": per_config,
    }


@task(name="analyze", cache_policy=NO_CACHE)
def analyze(rows: list[JobRow], campaign: str, run_id: str, started_at: datetime) -> dict[str, Any]:
    """Summarize the run and store the summary beside its rows."""
    settings = load_settings()
    summary = summarize(rows, campaign=campaign, run_id=run_id, started_at=started_at, settings=settings)
    write_run_summary(settings.results_dir, campaign, run_id, summary)
    return summary
