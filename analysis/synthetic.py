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
from ffwatt.schema import JobRow, is_estimated
from ffwatt.series import Series, cross_check, job_window, labels_json, series_table, write_series

__all__ = ["ENCODER_TRAITS", "synthetic_rows", "synthetic_series", "write_synthetic_run"]

IDLE_W = 8.0  # the synthetic node's power between encodes

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


def synthetic_series(rows: list[JobRow], *, phase_s: float = 0.3) -> dict[str, list[Series]]:
    """Each job's series as the campaign's 1 Hz sampler would give them, from one node drawing
    :data:`IDLE_W` between encodes and each row's average power during its encode: CPU power and its
    energy counter (RAPL package, or the estimate where the row's energy is estimated), utilisation,
    FFmpeg's fps and frames."""
    spans = [(r.started_at.timestamp(), r.ended_at.timestamp(), (r.energy_j or 0.0) / r.wall_s)
             for r in rows if r.started_at and r.ended_at and r.wall_s]
    origin = min(start for start, _, _ in spans) - 60.0

    def joules(t: np.ndarray) -> np.ndarray:
        total = 1000.0 + IDLE_W * (t - origin)
        for start, end, watts in spans:
            total += (watts - IDLE_W) * np.clip(t - start, 0, end - start)
        return total

    out = {}
    for row in rows:
        window = job_window(row)
        if window is None or not row.started_at or not row.ended_at:
            continue
        start, end = row.started_at.timestamp(), row.ended_at.timestamp()
        t = np.arange(np.floor(window[0]) + phase_s, window[1], 1.0)
        watts = np.full(len(t), IDLE_W)
        for s_, e_, w in spans:
            watts = np.where((t >= s_) & (t <= e_), w, watts)
        encoding = (t >= start) & (t <= end)
        fps = float(row.encode_fps or 0.0)
        package = {"kind": "package", "socket": "0", "zone": "package-0"}
        cpu: list[tuple[str, dict[str, str], np.ndarray]]
        if is_estimated(row.energy_source):
            cpu = [("ffwatt_cpu_estimated_energy_joules_total", {}, joules(t)),
                   ("ffwatt_cpu_estimated_power_watts", {}, watts)]
        else:
            cpu = [("ffwatt_rapl_energy_joules_total", package, joules(t)), ("ffwatt_rapl_power_watts", package, watts)]
        own = {"job_id": row.job_id, "campaign": row.campaign, "encoder": row.encoder, "preset": row.preset or ""}
        cpu += [("ffwatt_cpu_utilization_ratio", {}, np.where(watts > IDLE_W, 0.9, 0.05)),
                ("ffwatt_ffmpeg_fps", own, np.where(encoding, fps, 0.0)),
                ("ffwatt_ffmpeg_frames_total", own, fps * np.clip(t - start, 0, end - start))]
        ms = (t * 1000).astype(np.int64)
        out[row.job_id] = [Series(metric, labels_json(labels), ms, np.asarray(values, dtype=float))
                           for metric, labels, values in cpu]
    return out


def write_synthetic_run(results_dir: Path, *, facts: Mapping[str, Any] | None = None, series: bool = True,
                        **kwargs: Any) -> tuple[str, str]:
    """Write :func:`synthetic_rows` and a ``_run.json`` under ``results_dir``; (campaign, run_id).
    ``facts`` overrides the node's facts (e.g. another ``ffmpeg_version``); ``series`` writes each
    job's :func:`synthetic_series` beside it, and its cross-check on the row."""
    rows = synthetic_rows(**kwargs)
    every = synthetic_series(rows) if series else {}
    for i, plain in enumerate(rows):
        if plain.job_id in every:
            own = every[plain.job_id]
            write_series(Path(results_dir), plain.campaign, series_table(
                own, run_id=plain.run_id, job_id=plain.job_id, node=plain.node, source="local"))
            rows[i] = plain.model_copy(update=cross_check(plain, own, "local").model_dump())
        write_job_row(Path(results_dir), rows[i])
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
