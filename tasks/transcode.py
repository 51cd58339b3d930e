"""transcode: one job's encode with real FFmpeg, measured.

Records wall time, the FFmpeg process's CPU time and peak memory, FFmpeg's own
progress (frames, fps, speed, dropped/duplicated frames), the output's size and
bitrate, the exact command, and the CPU energy window around the process.

A density sweep step runs ``concurrency`` copies of the encode at once, each FFmpeg
on a thread of its own under one energy window: the step's frames are every copy's,
its fps the aggregate, its output (for the quality pass) the first copy's.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run

from exporters.cgroup import JobCgroup, cgroup_usage
from exporters.redfish import WallMeter
from ffwatt.encoders import encode_command
from ffwatt.errors import EncodeFailed
from ffwatt.files import scratch_dir
from ffwatt.hardware.ffmpeg import FFmpegRun, ffmpeg_path, probe_build, run_ffmpeg, stream_hash
from ffwatt.hardware.meter import EnergyMeter, EnergyWindow
from ffwatt.hardware.progress import Progress, ProgressRecord, prune_progress_records, write_progress_record
from ffwatt.jobs import Job
from ffwatt.schema import ConditionsColumns, EncodeColumns
from ffwatt.settings import Settings, load_settings
from tasks._logging import run_logger
from tasks.conditions import ConditionsSampler
from tasks.generate import Reference

__all__ = ["EncodeResult", "encode", "encode_args", "output_path_for", "transcode"]

log = logging.getLogger("ffwatt.transcode")


class EncodeResult(EncodeColumns):
    """What one encode did and cost: the row's encode columns, and what the later steps need."""

    job_id: str
    node: str
    attempts: int
    output_width: int
    output_height: int
    output_path: str  # the encoded file, until the quality pass has read it
    energy: EnergyWindow
    conditions: ConditionsColumns | None = None  # temperature, clock, throttling over the encode

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
                          threads=job.threads, extra_args=job.extra_args,
                          # The reference's own format needs no conversion: 8-bit jobs keep their commands.
                          pix_fmt=None if job.pix_fmt == reference.pix_fmt else job.pix_fmt)


def output_path_for(job: Job, run_id: str, settings: Settings) -> Path:
    base = settings.outputs_dir if job.keep_output else scratch_dir(settings.home)
    return base / job.campaign / run_id / f"{job.job_id}.mkv"


def _run_copies(ffmpeg: str, job: Job, reference: Reference, outputs: list[Path],
                on_progress: Callable[[int, Progress], None], on_start: Callable[[int, int], None],
                cgroup: Path | None = None) -> list[FFmpegRun]:
    """The encode into each of ``outputs`` at once, each FFmpeg on a thread of its own (here for one), each
    in ``cgroup``; the runs in order. ``on_start`` gets each copy's index and pid. When one copy is
    interrupted or fails, the others are stopped."""
    if len(outputs) == 1:
        return [run_ffmpeg(ffmpeg, encode_args(job, reference, outputs[0]), timeout_s=job.timeout_s,
                           on_progress=lambda p: on_progress(0, p), on_start=lambda pid: on_start(0, pid),
                           cgroup=cgroup)]
    cancel = threading.Event()
    runs: list[FFmpegRun | BaseException | None] = [None] * len(outputs)

    def copy(index: int) -> None:
        try:
            runs[index] = run_ffmpeg(ffmpeg, encode_args(job, reference, outputs[index]), timeout_s=job.timeout_s,
                                     on_progress=lambda p: on_progress(index, p), cancel=cancel,
                                     on_start=lambda pid: on_start(index, pid), cgroup=cgroup)
            if runs[index].failure() is not None:  # type: ignore[union-attr]
                cancel.set()
        except BaseException as exc:  # noqa: BLE001 - raised on the caller's thread below
            runs[index] = exc
            cancel.set()

    threads = [threading.Thread(target=copy, args=(i,), name=f"copy-{i + 1}", daemon=True)
               for i in range(len(outputs))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:  # Ctrl-C on the caller's thread: every copy's group is killed
        cancel.set()
        for thread in threads:
            thread.join(timeout=10)
        raise
    for run in runs:
        if isinstance(run, BaseException):
            raise run
    return [run for run in runs if isinstance(run, FFmpegRun)]


def _started_at(pid: int) -> float | None:
    """When our FFmpeg ``pid`` started (psutil's create_time), so no one takes a reused pid for it."""
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).create_time()
    return None


def _resources(cgroup: JobCgroup, runs: list[FFmpegRun], joined: bool) -> dict[str, object]:
    """The job's CPU time and storage I/O: its cgroup's where it had one that every FFmpeg joined, else
    the processes' rusage, and which (``resource_source``). Removes the cgroup."""
    cpu_s = io_bytes = None
    if cgroup.path is not None:
        if joined:
            cpu_s, io_bytes = cgroup_usage(cgroup.path)
        else:
            log.warning("FFmpeg didn't join the job cgroup %s: its CPU time and I/O come from rusage", cgroup.path)
        cgroup.remove()
    source = "cgroup" if io_bytes is not None else "cgroup+rusage" if cpu_s is not None else "rusage"
    return {"cgroup_cpu_s": cpu_s if cpu_s is not None else sum(run.cpu_user_s + run.cpu_sys_s for run in runs),
            "cgroup_io_bytes": io_bytes if io_bytes is not None else sum(run.block_io_bytes for run in runs),
            "resource_source": source}


def _copy_failure(run: FFmpegRun, output: Path) -> str | None:
    failure = run.failure()
    if failure is None and (not output.is_file() or output.stat().st_size == 0):
        failure = "FFmpeg exited 0 but wrote no output"
    if failure is None and (run.last_progress is None or run.last_progress.frame == 0):
        failure = "FFmpeg encoded no frames"
    return failure


def encode(job: Job, reference: Reference, run_id: str, *, attempt: int, settings: Settings) -> EncodeResult:
    """Run the encode (each copy of a density step at once); raise :class:`EncodeFailed` with FFmpeg's
    reason if it, or any copy, fails."""
    ffmpeg = ffmpeg_path(settings)
    build = probe_build(ffmpeg)
    output = output_path_for(job, run_id, settings)
    output.parent.mkdir(parents=True, exist_ok=True)
    copies = job.density.concurrency if job.density is not None else 1
    outputs = [output] + [output.with_name(f"{output.stem}-copy{i + 1}{output.suffix}") for i in range(1, copies)]
    meter = EnergyMeter(settings)
    conditions = ConditionsSampler(settings)
    sampling = threading.Lock()  # copies report progress from their own threads
    logger = run_logger()
    last_log = time.monotonic()

    cgroup = JobCgroup(settings.cgroup_root, job.job_id).create()
    started: dict[int, tuple[int, float | None]] = {}  # copy -> FFmpeg's pid and start time
    joined: list[bool] = []  # whether each FFmpeg is in the job's cgroup

    def on_start(index: int, pid: int) -> None:
        if index == 0:
            meter.track(pid)
        started[index] = (pid, _started_at(pid))
        joined.append(cgroup.holds(pid))

    def publish(index: int, progress: Progress, done: bool = False) -> None:
        pid, pid_started_at = started.get(index, (None, None))
        write_progress_record(settings.progress_dir, ProgressRecord(
            job_id=job.job_id, stream=str(index + 1) if copies > 1 else "", campaign=job.campaign,
            encoder=job.encoder, preset=job.preset or "", node=settings.node, progress=progress,
            updated_at=time.time(), done=done, pid=None if done else pid, pid_started_at=pid_started_at,
            # The cgroup is the job's, every copy's: each copy's record stands for its own process alone.
            cgroup=str(cgroup.path) if cgroup.path is not None and copies == 1 and not done else None))

    def on_progress(index: int, progress: Progress) -> None:
        nonlocal last_log
        with sampling:
            meter.sample()
            conditions.sample()
            publish(index, progress)
            if time.monotonic() - last_log >= settings.progress_log_interval_s and not progress.done:
                last_log = time.monotonic()
                logger.info("%s: frame %d/%d, %s fps, speed %sx%s", job.label, progress.frame,
                            reference.frames, progress.fps, progress.speed,
                            f" (copy {index + 1} of {copies})" if copies > 1 else "")

    prune_progress_records(settings.progress_dir)
    conditions.start()  # the temperature as the encode starts, read before the meter's window opens
    wall = WallMeter(settings) if settings.redfish_url else None  # the plug, when the node's BMC is known
    if wall is not None:
        wall.start()
    meter.start()
    try:
        runs = _run_copies(ffmpeg, job, reference, outputs, on_progress, on_start, cgroup.path)
    except BaseException:  # interrupted: no half-written output stays behind
        if wall is not None:
            wall.stop()
        cgroup.remove()
        for each in outputs:
            each.unlink(missing_ok=True)
        raise
    window = meter.stop()
    ran_in = conditions.stop()
    resources = _resources(cgroup, runs, all(joined))
    if wall is not None:  # over the step's window: from the first copy's start to the last one's end
        reading = wall.stop((min(run.started_at for run in runs).timestamp(),
                             max(run.ended_at for run in runs).timestamp()))
        window = window.model_copy(update={"wall_j": reading.energy_j, "wall_missing": reading.missing})
    for index, run in enumerate(runs):
        publish(index, run.last_progress or Progress(), done=True)
    failures = [(i, why) for i, (run, out) in enumerate(zip(runs, outputs)) if (why := _copy_failure(run, out))]
    for extra in outputs[1:]:
        extra.unlink(missing_ok=True)  # every copy encodes the same: the first one stands for them
    if failures:
        index, failure = failures[0]
        run = runs[index]
        output.unlink(missing_ok=True)
        which = f"copy {index + 1} of {copies}: " if copies > 1 else ""
        raise EncodeFailed(f"{which}{failure}\ncommand: {run.command_line}\nstderr tail:\n{run.stderr_tail}",
                           command=run.command, stderr_tail=run.stderr_tail, attempt=attempt,
                           max_rss_bytes=run.max_rss_bytes or None)
    first = runs[0]
    assert first.last_progress is not None
    frames = sum(run.last_progress.frame for run in runs if run.last_progress is not None)
    output_bytes = output.stat().st_size
    output_hash = stream_hash(ffmpeg, output)  # outside the measured window; tells identical encodes apart
    if not job.keep_output and not job.quality:
        output.unlink()  # nothing will read it
    width, height = output_size(job, reference)
    # The step's window: from the first copy's start to the last one's end.
    started_at, ended_at = min(run.started_at for run in runs), max(run.ended_at for run in runs)
    wall_s = (ended_at - started_at).total_seconds() if copies > 1 else first.wall_s
    return EncodeResult(
        job_id=job.job_id,
        node=settings.node,
        attempts=attempt,
        started_at=started_at, ended_at=ended_at, wall_s=wall_s,
        cpu_user_s=sum(run.cpu_user_s for run in runs), cpu_sys_s=sum(run.cpu_sys_s for run in runs),
        max_rss_bytes=max(run.max_rss_bytes for run in runs),
        **resources,
        frames=frames,
        encode_fps=frames / wall_s if wall_s > 0 else 0.0,
        speed=min((run.last_progress.speed for run in runs if run.last_progress and run.last_progress.speed),
                  default=None),
        output_bytes=output_bytes,
        output_hash=output_hash,
        bitrate_kbps=output_bytes * 8 / (first.last_progress.frame / reference.fps) / 1000,
        dropped_frames=sum(run.last_progress.drop_frames or 0 for run in runs if run.last_progress),
        duplicated_frames=sum(run.last_progress.dup_frames or 0 for run in runs if run.last_progress),
        output_width=width,
        output_height=height,
        ffmpeg_version=build.version,
        ffmpeg_cmd=first.command_line,
        threads=job.threads,
        extra_args=shlex.join(job.extra_args),
        output_path=str(output),
        energy=window,
        conditions=ran_in,
    )


@task(name="transcode", cache_policy=NO_CACHE)
def transcode(job: Job, reference: Reference, run_id: str) -> EncodeResult:
    """Encode one job with real FFmpeg and measure it."""
    return encode(job, reference, run_id, attempt=task_run.run_count or 1, settings=load_settings())
