"""quality: PSNR, SSIM and VMAF of an encode against its reference, in one FFmpeg pass.

The encode is scaled back to the reference size (VMAF's models expect that) and
both streams restart their timestamps at zero so frame N meets frame N. Then the
output is removed unless the campaign keeps outputs.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from ffwatt.errors import QualityFailed
from ffwatt.hardware.ffmpeg import ffmpeg_path, run_ffmpeg
from ffwatt.jobs import Job
from ffwatt.schema import QualityColumns
from ffwatt.settings import Settings, load_settings
from tasks.generate import Reference
from tasks.transcode import EncodeResult

__all__ = ["QualityScores", "measure_quality", "quality_filter", "score"]


class QualityScores(QualityColumns):
    """Pooled (mean) scores, the row's quality columns; a metric that wasn't asked for is None."""

    frames_compared: int | None = None


def vmaf_model_for(height: int) -> str:
    # The 4K model is trained for 2160p viewing; the default model for 1080p and below.
    return "vmaf_4k_v0.6.1" if height >= 2160 else "vmaf_v0.6.1"


def quality_filter(reference: Reference, log_path: Path, threads: int) -> str:
    model = vmaf_model_for(reference.height)
    return (
        f"[0:v]scale={reference.width}:{reference.height}:flags=bicubic,format={reference.pix_fmt},"
        "setpts=PTS-STARTPTS[distorted];"
        f"[1:v]format={reference.pix_fmt},setpts=PTS-STARTPTS[reference];"
        f"[distorted][reference]libvmaf=model=version={model}:log_fmt=json:log_path={log_path}"
        f":n_threads={threads}:feature=name=psnr|name=float_ssim"
    )


def score(job: Job, reference: Reference, distorted: Path, settings: Settings) -> QualityScores:
    """Compute the job's requested metrics for ``distorted``."""
    if not job.quality:
        return QualityScores()
    ffmpeg = ffmpeg_path(settings)
    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="ffwatt-vmaf-") as tmp:
        log_path = Path(tmp) / "vmaf.json"
        run = run_ffmpeg(
            ffmpeg,
            ["-threads", str(threads), "-i", str(distorted), "-i", reference.path,
             "-lavfi", quality_filter(reference, log_path, threads), "-f", "null", "-"],
            timeout_s=max(600.0, job.timeout_s),
        )
        failure = run.failure()
        if failure is not None or not log_path.is_file():
            raise QualityFailed(f"quality pass failed: {failure or 'libvmaf wrote no log'}\n"
                                f"command: {run.command_line}\nstderr tail:\n{run.stderr_tail}")
        log = json.loads(log_path.read_text())
    pooled = log["pooled_metrics"]
    return QualityScores(
        psnr=pooled["psnr_y"]["mean"] if "psnr" in job.quality else None,
        ssim=pooled["float_ssim"]["mean"] if "ssim" in job.quality else None,
        vmaf=pooled["vmaf"]["mean"] if "vmaf" in job.quality else None,
        vmaf_model=vmaf_model_for(reference.height) if "vmaf" in job.quality else None,
        frames_compared=len(log.get("frames", [])),
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
