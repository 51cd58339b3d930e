"""Synthetic but plausible job rows, for tests, demos and the benchmark.

Rates follow the usual CRF rule (bitrate halves every +6 CRF), quality rises with
log(bitrate), power depends on encoder and preset. Nothing here is a measurement:
every row says ``energy_basis="synthetic"``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ffwatt.nodefacts import NodeFacts
from ffwatt.results import RunSummary, write_job_row, write_run_summary
from ffwatt.schema import JobRow

__all__ = ["ENCODER_TRAITS", "synthetic_rows", "write_synthetic_run"]

# encoder -> (bits needed relative to x264, fps at 720p on one core-ish, average watts)
ENCODER_TRAITS: dict[str, tuple[float, float, float]] = {
    "libx264": (1.00, 90.0, 18.0),
    "libx265": (0.70, 35.0, 22.0),
    "libsvtav1": (0.60, 45.0, 25.0),
}
_PRESET_SPEED = {"veryfast": 1.6, "medium": 1.0, "slow": 0.5, "ultrafast": 2.5, "10": 1.4, "8": 0.8}


def _id(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


def synthetic_rows(*, campaign: str = "synthetic", run_id: str = "run-1", node: str = "node-a",
                   encoders: dict[str, str] | None = None, crfs: tuple[int, ...] = (22, 27, 32, 37),
                   repetitions: int = 2, estimated_encoders: tuple[str, ...] = ("libx265",),
                   width: int = 1280, height: int = 720, fps: float = 30.0, frames: int = 90,
                   seed: int = 0, start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
                   energy_factor: Mapping[str, float] | None = None) -> list[JobRow]:
    """Rows for every encoder (name -> preset) × CRF × repetition; energy of the encoders in
    ``estimated_encoders`` is marked estimated, the rest rapl. ``energy_factor`` scales the
    power of the encoders it names (1.1 = a known 10 % regression in joules per frame)."""
    rng = np.random.default_rng(seed)
    encoders = encoders or {"libx264": "medium", "libx265": "medium"}
    energy_factor = energy_factor or {}
    fields = JobRow.model_fields
    rows = []
    for rep in range(1, repetitions + 1):
        for encoder, preset in encoders.items():
            bits, base_fps, watts = ENCODER_TRAITS.get(encoder, (1.0, 60.0, 20.0))
            speed = _PRESET_SPEED.get(preset, 1.0)
            for crf in crfs:
                config = _id(campaign, encoder, preset, crf, width, height)
                kbps = 3000.0 * bits * 2 ** (-(crf - 23) / 6) * (width * height / 921600) * rng.normal(1, 0.01)
                psnr = 20.0 + 3.2 * np.log(kbps / bits) + rng.normal(0, 0.05)
                vmaf = float(np.clip(100 - 600 / (kbps / bits) ** 0.5 + rng.normal(0, 0.2), 0, 100))
                enc_fps = base_fps * speed * (921600 / (width * height)) * (1 + (crf - 30) / 100) * rng.normal(1, 0.03)
                wall = frames / enc_fps
                power = watts * (1.2 - 0.1 * speed) * rng.normal(1, 0.02) * energy_factor.get(encoder, 1.0)
                energy = power * wall
                estimated = encoder in estimated_encoders
                values: dict[str, Any] = dict(
                    campaign=campaign, run_id=run_id, job_id=_id(config, rep), config_id=config,
                    repetition=rep, node=node, input_name=f"clip-{height}p", input_width=width,
                    input_height=height, input_fps=fps, input_frames=frames, encoder=encoder, preset=preset,
                    rate_control="crf", crf=crf, output_width=width, output_height=height, status="ok",
                    attempts=1, started_at=start, ended_at=start + timedelta(seconds=wall), wall_s=wall,
                    cpu_user_s=wall * 1.8, cpu_sys_s=wall * 0.05, frames=frames, encode_fps=enc_fps,
                    output_bytes=int(kbps * 1000 / 8 * frames / fps), bitrate_kbps=kbps, psnr=psnr,
                    ssim=0.99, vmaf=vmaf, energy_j=energy,
                    energy_source="estimated" if estimated else "rapl",
                    energy_basis="synthetic", joules_per_frame=energy / frames,
                )
                start += timedelta(seconds=wall + 1)
                rows.append(JobRow(**{k: v for k, v in values.items() if k in fields}))
    return rows


def write_synthetic_run(results_dir: Path, *, facts: Mapping[str, Any] | None = None,
                        **kwargs: Any) -> tuple[str, str]:
    """Write :func:`synthetic_rows` and a ``_run.json`` under ``results_dir``; (campaign, run_id).
    ``facts`` overrides the node's facts (e.g. another ``ffmpeg_version``)."""
    rows = synthetic_rows(**kwargs)
    for row in rows:
        write_job_row(Path(results_dir), row)
    first = rows[0]
    started = min(r.started_at for r in rows if r.started_at)
    ended = max(r.ended_at for r in rows if r.ended_at)
    node = NodeFacts(**{**dict(name=first.node, cpu_model="Synthetic CPU 9000", logical_cpus=16,
                               kernel="6.0-synthetic", cpu_energy="rapl", ffmpeg_path="/synthetic/ffmpeg",
                               ffmpeg_version="n7.1-synthetic", ffmpeg_configuration=""), **(facts or {})})
    write_run_summary(Path(results_dir), RunSummary(
        campaign=first.campaign, run_id=first.run_id, state="complete", host="synthetic", pid=0,
        started_at=started, ended_at=ended,
        wall_s=(ended - started).total_seconds(), jobs=len(rows), ok=len(rows), failed=0,
        encode_wall_s=sum(r.wall_s or 0 for r in rows), nodes={first.node: node}, idle_baselines={}))
    return first.campaign, first.run_id
