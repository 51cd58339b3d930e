"""record: a job's row, assembled from what each step returned, written to the dataset."""

from __future__ import annotations

from ffwatt.campaign import Job
from ffwatt.results import write_job_row
from ffwatt.schema import JobRow
from ffwatt.settings import load_settings
from tasks.energy import EnergyReport
from tasks.generate import Reference
from tasks.quality import QualityScores
from tasks.transcode import EncodeResult

__all__ = ["build_row", "record_job"]


def build_row(
    *,
    job: Job,
    run_id: str,
    node: str,
    reference: Reference | None,
    encoded: EncodeResult | None = None,
    energy: EnergyReport | None = None,
    quality: QualityScores | None = None,
    error: str | None = None,
    attempts: int | None = None,
) -> JobRow:
    """The row of one job. Anything a failed job never reached stays null."""
    values: dict[str, object] = {
        "campaign": job.campaign,
        "run_id": run_id,
        "job_id": job.job_id,
        "config_id": job.config_id,
        "repetition": job.repetition,
        "node": encoded.node if encoded else node,
        "input_name": job.input.name,
        "encoder": job.encoder,
        "preset": job.preset,
        "rate_control": job.rate_control,
        "crf": job.crf,
        "qp": job.qp,
        "target_bitrate_kbps": job.target_bitrate_kbps,
        "status": "failed" if error else "ok",
        "error": error,
        "attempts": attempts if attempts is not None else (encoded.attempts if encoded else 1),
    }
    if reference is not None:
        values |= {
            "input_width": reference.width,
            "input_height": reference.height,
            "input_fps": reference.fps,
            "input_frames": reference.frames,
            "reference_path": reference.path,
        }
    if encoded is not None:
        values |= encoded.model_dump(include={
            "started_at", "ended_at", "wall_s", "cpu_user_s", "cpu_sys_s", "max_rss_bytes", "frames",
            "encode_fps", "speed", "output_bytes", "bitrate_kbps", "dropped_frames", "duplicated_frames",
            "output_width", "output_height", "ffmpeg_version", "ffmpeg_cmd",
        })
        values["output_path"] = encoded.output_path if job.keep_output else None
    if energy is not None:
        values |= energy.model_dump()
    if quality is not None:
        values |= quality.model_dump(include={"psnr", "ssim", "vmaf", "vmaf_model"})
    return JobRow.model_validate(values)


def record_job(row: JobRow) -> JobRow:
    """Write the row now, so a campaign that dies later loses nothing already measured.

    A plain function, not a task: a task run costs the Prefect server about 45 ms
    of CPU (measured with bench/overhead.py), which on a small node competes with
    the encode being measured, and writing one small file needs no retries.
    """
    write_job_row(load_settings().results_dir, row)
    return row
