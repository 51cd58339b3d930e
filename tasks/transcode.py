"""transcode: one job's encode with real FFmpeg, measured.

Records wall time, the FFmpeg process's CPU time and peak memory, FFmpeg's own
progress (frames, fps, speed, dropped/duplicated frames), the output's size and
bitrate, the exact command, and the CPU energy window around the process.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run

from ffwatt.encoders import encode_command
from ffwatt.errors import EncodeFailed
from ffwatt.files import scratch_dir
from ffwatt.hardware.ffmpeg import ffmpeg_path, probe_build, run_ffmpeg, stream_hash
from ffwatt.hardware.meter import EnergyMeter, EnergyWindow
from ffwatt.hardware.progress import Progress, ProgressRecord, prune_progress_records, write_progress_record
from ffwatt.jobs import Job
from ffwatt.schema import EncodeColumns
from ffwatt.settings import Settings, load_settings
from tasks._logging import run_logger
from tasks.generate import Reference

__all__ = ["EncodeResult", "encode", "encode_args", "output_path_for", "transcode"]


class EncodeResult(EncodeColumns):
    """What one encode did and cost: the row's encode columns, and what the later steps need."""

    job_id: str
    node: str
    attempts: int
    output_width: int
    output_height: int
    output_path: str  # the encoded file, until the quality pass has read it
    energy: EnergyWindow

    @property
    def cpu_s(self) -> float:
        return (self.cpu_user_s or 0.0) + (self.cpu_sys_s or 0.0)


def output_size(job: Job, reference: Reference) -> tuple[int, int]:
    if job.output_size == "source":
        return reference.width, reference.height
    width, height = job.output_size.split("x")
    return int(width), int(height)


def encode_args(job: Job, reference: Reference, output: Path) -> list[str]:
    """FFmpeg arguments (after the global ones) that encode ``reference`` as ``job`` says."""
    size = output_size(job, reference)
    return encode_command(job.encoder, preset=job.preset, rate_control=job.rate_control, value=job.value,
                          source=reference.path, output=str(output),
                          scale_to=None if size == (reference.width, reference.height) else size,
                          threads=job.threads, extra_args=job.extra_args)


def output_path_for(job: Job, run_id: str, settings: Settings) -> Path:
    base = settings.outputs_dir if job.keep_output else scratch_dir(settings.home)
    return base / job.campaign / run_id / f"{job.job_id}.mkv"


def encode(job: Job, reference: Reference, run_id: str, *, attempt: int, settings: Settings) -> EncodeResult:
    """Run the encode; raise :class:`EncodeFailed` with FFmpeg's reason if it fails."""
    ffmpeg = ffmpeg_path(settings)
    build = probe_build(ffmpeg)
    output = output_path_for(job, run_id, settings)
    output.parent.mkdir(parents=True, exist_ok=True)
    meter = EnergyMeter(settings)
    logger = run_logger()
    last_log = time.monotonic()

    def publish(progress: Progress, done: bool = False) -> None:
        write_progress_record(settings.progress_dir, ProgressRecord(
            job_id=job.job_id, campaign=job.campaign, encoder=job.encoder, preset=job.preset or "",
            node=settings.node, progress=progress, updated_at=time.time(), done=done))

    def on_progress(progress: Progress) -> None:
        nonlocal last_log
        meter.sample()
        publish(progress)
        if time.monotonic() - last_log >= settings.progress_log_interval_s and not progress.done:
            last_log = time.monotonic()
            logger.info("%s: frame %d/%d, %s fps, speed %sx", job.label, progress.frame,
                        reference.frames, progress.fps, progress.speed)

    prune_progress_records(settings.progress_dir)
    meter.start()
    try:
        run = run_ffmpeg(ffmpeg, encode_args(job, reference, output), timeout_s=job.timeout_s,
                         on_progress=on_progress, on_start=meter.track)
    except BaseException:  # interrupted: no half-written output stays behind
        output.unlink(missing_ok=True)
        raise
    window = meter.stop()
    publish(run.last_progress or Progress(), done=True)
    failure = run.failure()
    if failure is None and (not output.is_file() or output.stat().st_size == 0):
        failure = "FFmpeg exited 0 but wrote no output"
    if failure is None and (run.last_progress is None or run.last_progress.frame == 0):
        failure = "FFmpeg encoded no frames"
    if failure is not None:
        output.unlink(missing_ok=True)
        raise EncodeFailed(f"{failure}\ncommand: {run.command_line}\nstderr tail:\n{run.stderr_tail}",
                           command=run.command, stderr_tail=run.stderr_tail, attempt=attempt)
    assert run.last_progress is not None
    frames = run.last_progress.frame
    output_bytes = output.stat().st_size
    output_hash = stream_hash(ffmpeg, output)  # outside the measured window; tells identical encodes apart
    if not job.keep_output and not job.quality:
        output.unlink()  # nothing will read it
    width, height = output_size(job, reference)
    return EncodeResult(
        job_id=job.job_id,
        node=settings.node,
        attempts=attempt,
        **run.process_measurements(),
        frames=frames,
        encode_fps=frames / run.wall_s if run.wall_s > 0 else 0.0,
        speed=run.last_progress.speed,
        output_bytes=output_bytes,
        output_hash=output_hash,
        bitrate_kbps=output_bytes * 8 / (frames / reference.fps) / 1000,
        dropped_frames=run.last_progress.drop_frames,
        duplicated_frames=run.last_progress.dup_frames,
        output_width=width,
        output_height=height,
        ffmpeg_version=build.version,
        ffmpeg_cmd=run.command_line,
        threads=job.threads,
        extra_args=shlex.join(job.extra_args),
        output_path=str(output),
        energy=window,
    )


@task(name="transcode", cache_policy=NO_CACHE)
def transcode(job: Job, reference: Reference, run_id: str) -> EncodeResult:
    """Encode one job with real FFmpeg and measure it."""
    return encode(job, reference, run_id, attempt=task_run.run_count or 1, settings=load_settings())
