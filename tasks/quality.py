"""quality: PSNR, SSIM and VMAF of an encode against its reference, frame by frame, in one FFmpeg pass.

The encode is scaled back to the reference size (bicubic, as Netflix scores renditions: VMAF's
models expect the viewing size), both are converted to the deeper of their two pixel formats
(a 10-bit encode is scored at 10 bits), and both restart their timestamps at zero so frame N
meets frame N. libvmaf computes every model the campaign asked for and the PSNR and SSIM
features in the same pass and logs each frame; FFmpeg writes each frame's timestamp beside
it (``-stats_enc_pre``), which costs nothing more than the pass itself. The per-frame scores
are kept (:class:`~ffwatt.frames.FrameScores`) and the row's figures pooled from them. Then
the output is removed unless the campaign keeps outputs.
"""

from __future__ import annotations

import json
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ffwatt.campaign import PRIMARY_MODELS
from ffwatt.encoders import bit_depth
from ffwatt.errors import QualityFailed
from ffwatt.frames import FrameScores, pooled
from ffwatt.hardware.ffmpeg import ffmpeg_path, run_ffmpeg
from ffwatt.jobs import Job
from ffwatt.schema import QualityColumns
from ffwatt.settings import Settings, load_settings
from tasks.generate import Reference
from tasks.transcode import EncodeResult, output_size

__all__ = ["SCALER", "QualityScores", "measure_quality", "quality_filter", "score", "vmaf_model_for",
           "vmaf_models"]

SCALER = "bicubic"
# libvmaf's log names -> the frames file's columns (the metric features; the models are named by us).
_FEATURES = {"psnr_y": "psnr", "psnr_cb": "psnr_u", "psnr_cr": "psnr_v", "float_ssim": "ssim"}
_ASKED = {"psnr": ("psnr", "psnr_u", "psnr_v"), "ssim": ("ssim",)}


class QualityScores(QualityColumns):
    """The row's quality columns, and the per-frame scores they were pooled from (None when not scored)."""

    frames: FrameScores | None = None


def vmaf_model_for(width: int, height: int) -> str:
    """The model made for the screen a reference of this size is watched on: the 4K model (trained for
    2160p at 1.5 screen heights) for 2160p or 3840 wide and above, the default one (1080p at 3 heights)
    below."""
    return "vmaf_4k_v0.6.1" if height >= 2160 or width >= 3840 else "vmaf_v0.6.1"


def vmaf_models(job: Job, reference: Reference) -> dict[str, str]:
    """The frames file's VMAF column -> libvmaf's model option for it (``:`` escaped as the filter needs)."""
    primary = next((m for m in job.quality_models if m in PRIMARY_MODELS), "auto")
    version = vmaf_model_for(reference.width, reference.height) if primary == "auto" else primary
    models = {"vmaf": f"version={version}"}
    if "neg" in job.quality_models:
        # The NEG model of the same family: 4K viewing stays 4K viewing.
        models["vmaf_neg"] = f"version={version}neg"
    if "phone" in job.quality_models:
        # The phone transform belongs to vmaf_v0.6.1 alone: the 4K model has none.
        models["vmaf_phone"] = "version=vmaf_v0.6.1\\:enable_transform=true"
    return models


def quality_pix_fmt(job: Job, reference: Reference) -> str:
    """The deeper of the reference's and the encode's pixel formats: neither is rounded to fewer bits."""
    return max((reference.pix_fmt, job.pix_fmt), key=bit_depth)


def quality_filter(job: Job, reference: Reference, log_path: Path, threads: int) -> str:
    pix_fmt = quality_pix_fmt(job, reference)
    model = "|".join(f"{spec}\\:name={column}" for column, spec in vmaf_models(job, reference).items())
    return (
        f"[0:v]scale={reference.width}:{reference.height}:flags={SCALER},format={pix_fmt},"
        "setpts=PTS-STARTPTS[distorted];"
        f"[1:v]format={pix_fmt},setpts=PTS-STARTPTS[reference];"
        # Quoted: the filter graph keeps the model list's own "\:" for libvmaf to split each model's options.
        f"[distorted][reference]libvmaf=model='{model}':log_fmt=json:log_path={log_path}"
        f":n_threads={threads}:feature=name=psnr|name=float_ssim"
    )


def _timestamps(path: Path) -> list[float]:
    """Each frame's presentation time in seconds from ``-stats_enc_pre``'s ``{pts} {tb}`` lines, exact."""
    times = []
    for line in path.read_text().splitlines():
        pts, time_base = line.split()
        times.append(float(int(pts) * Fraction(time_base)))
    return times


def _frame_scores(job: Job, log: dict[str, Any], times: list[float]) -> FrameScores:
    frames = log.get("frames", [])
    if len(times) != len(frames):
        raise QualityFailed(f"libvmaf logged {len(frames)} frames and FFmpeg timed {len(times)}: they must pair")
    columns: dict[str, list[float]] = {}
    for record in frames:
        for name, value in record["metrics"].items():
            column = _FEATURES.get(name, name)
            columns.setdefault(column, []).append(float(value))
    wanted = {c for metric in job.quality for c in _ASKED.get(metric, ())}
    if "vmaf" in job.quality:
        wanted |= {"vmaf", "vmaf_neg", "vmaf_phone"}
    return FrameScores(frame=[int(r["frameNum"]) for r in frames], pts_s=times,
                       **{c: values for c, values in columns.items() if c in wanted and c in FrameScores.model_fields})


def _pooled_columns(job: Job, log: dict[str, Any], frames: FrameScores) -> dict[str, Any]:
    """The row's figures: each mean as libvmaf pools it (as ffwatt always reported), the low end from the
    frames as written."""
    means = log["pooled_metrics"]
    columns: dict[str, Any] = {}
    for metric, feature in (("psnr", "psnr_y"), ("ssim", "float_ssim"), ("vmaf", "vmaf")):
        if metric not in job.quality:
            continue
        columns[metric] = means[feature]["mean"]
        columns |= {f"{metric}_{k}": v for k, v in pooled(getattr(frames, metric) or [],
                                                          harmonic=metric == "vmaf").items()}
    for extra in ("vmaf_neg", "vmaf_phone"):
        if getattr(frames, extra) is not None:
            columns[extra] = means[extra]["mean"]
    return columns


def score(job: Job, reference: Reference, distorted: Path, settings: Settings) -> QualityScores:
    """Compute the job's requested metrics for ``distorted``, frame by frame."""
    if not job.quality:
        return QualityScores()
    ffmpeg = ffmpeg_path(settings)
    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="ffwatt-vmaf-") as tmp:
        log_path, times_path = Path(tmp) / "vmaf.json", Path(tmp) / "pts.txt"
        run = run_ffmpeg(
            ffmpeg,
            ["-threads", str(threads), "-i", str(distorted), "-i", reference.path,
             "-lavfi", quality_filter(job, reference, log_path, threads),
             # One timestamp line per frame libvmaf scored, in the same order: nothing dropped or repeated.
             "-fps_mode", "passthrough", "-stats_enc_pre", str(times_path), "-stats_enc_pre_fmt", "{pts} {tb}",
             "-f", "null", "-"],
            timeout_s=max(600.0, job.timeout_s),
        )
        failure = run.failure()
        if failure is not None or not log_path.is_file() or not times_path.is_file():
            raise QualityFailed(f"quality pass failed: {failure or 'libvmaf wrote no log'}\n"
                                f"command: {run.command_line}\nstderr tail:\n{run.stderr_tail}")
        log = json.loads(log_path.read_text())
        times = _timestamps(times_path)
    frames = _frame_scores(job, log, times)
    vmaf = vmaf_models(job, reference)["vmaf"] if "vmaf" in job.quality else None
    upscaled = output_size(job, reference) != (reference.width, reference.height)
    return QualityScores(
        **_pooled_columns(job, log, frames),
        vmaf_model=vmaf.removeprefix("version=") if vmaf else None,
        quality_scaler=SCALER if upscaled else None,
        quality_pix_fmt=quality_pix_fmt(job, reference),
        quality_frames=len(frames),
        frames=frames,
    )


@task(name="quality", cache_policy=NO_CACHE)
def measure_quality(job: Job, reference: Reference, encoded: EncodeResult) -> QualityScores:
    """Score the encode against its reference, then drop the output unless it is kept."""
    settings = load_settings()
    try:
        return score(job, reference, Path(encoded.output_path), settings)
    finally:
        if not job.keep_output:
            Path(encoded.output_path).unlink(missing_ok=True)
