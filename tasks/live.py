"""live: one sweep step of a live job on this node, N streams at once through the RTMP ingest.

Per stream, a player of the source and a player of each rendition join the ingest first, then
the transcoder joins the source; once every one of them holds its connection, the publishers
push the contribution clip in real time and the step's energy window opens. The transcoders'
progress goes to the spool (one record per stream) as they run; the players time every packet.

A watchdog ends the step within bounded time whatever happens: a process that fails (the
publisher dying, the ingest going away, a transcoder erroring) or a rendition that hasn't
shown a frame ``first_frame_timeout_s`` after it was due stops every stream of the step, and
the step's deadline kills whatever is left. Every FFmpeg runs in its own process group through
:func:`ffwatt.hardware.ffmpeg.run_ffmpeg`, which kills the group when it is cancelled or its
deadline passes, so none outlives the step.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from exporters.redfish import WallMeter, WallReading
from ffwatt.errors import FFmpegError
from ffwatt.files import made_once
from ffwatt.hardware.ffmpeg import FFmpegRun, ffmpeg_path, probe_build, run_ffmpeg
from ffwatt.hardware.meter import EnergyMeter, EnergyWindow
from ffwatt.hardware.progress import Progress, ProgressRecord, prune_progress_records, write_progress_record
from ffwatt.jobs import Job
from ffwatt.live import ingest_url, split_ingest_url, unreachable
from ffwatt.settings import Settings, load_settings
from tasks._logging import run_logger
from tasks._streams import (
    FrameLog,
    connected_to,
    contribution_args,
    first_frame_delay_s,
    latencies_ms,
    player_args,
    publisher_args,
    rung_bitrate_kbps,
    steady_speed,
    stream_names,
    transcoder_args,
)
from tasks.generate import Reference

__all__ = ["Contribution", "LiveStepResult", "StreamResult", "contribution_stream", "live_step",
           "prepare_contribution", "run_live_step"]

# After every process holds its TCP connection, the RTMP handshake and play command still take a few
# round trips: the publishers start this much later, so no player misses the first frame.
SETTLE_S = 0.5
POLL_S = 0.25


class Contribution(BaseModel):
    """The clip every publisher of an input pushes (H.264 in FLV), and its facts."""

    path: str
    width: int
    height: int
    fps: float
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


def prepare_contribution(reference: Reference, settings: Settings) -> Contribution:
    """The cached contribution clip of ``reference``, made first if needed (once per node)."""
    ffmpeg = ffmpeg_path(settings)
    key = hashlib.sha256(json.dumps({"reference": reference.model_dump(), "ffmpeg": probe_build(ffmpeg).version},
                                    sort_keys=True).encode()).hexdigest()[:16]
    directory = settings.cache_dir / "contributions"
    media, meta = directory / f"{reference.name}-{key}.flv", directory / f"{reference.name}-{key}.json"

    def make(tmp: Path) -> Contribution:
        run = run_ffmpeg(ffmpeg, contribution_args(reference.path, reference.fps, tmp), timeout_s=3600)
        failure = run.failure()
        if failure or run.last_progress is None or run.last_progress.frame == 0:
            raise FFmpegError(f"making the contribution clip of {reference.name!r} failed: "
                              f"{failure or 'no frames'}\n{run.stderr_tail}")
        return Contribution(path=str(media), width=reference.width, height=reference.height, fps=reference.fps,
                            frames=run.last_progress.frame)

    return made_once(media, meta, Contribution, make)


@task(name="contribution-stream", cache_policy=NO_CACHE)
def contribution_stream(reference: Reference) -> Contribution:
    """Prepare (or reuse) the clip publishers push for this input: H.264 in FLV, as a camera sends."""
    return prepare_contribution(reference, load_settings())


class StreamResult(BaseModel):
    """What one stream of a step did."""

    stream: int
    state: Literal["ok", "failed", "stopped"]
    error: str | None = None
    speed: float | None = None  # steady speed (ffwatt.live.steady_speed)
    ffmpeg_speed: float | None = None  # FFmpeg's own, over its whole run
    source_frames: int = 0  # the publisher pushed
    frames: int = 0  # the transcoder encoded
    rendition_frames: list[int] = []
    dropped_frames: int = 0  # source frames missing from a rendition, over every rung
    duplicated_frames: int = 0
    rung_kbps: list[float | None] = []
    first_frame_s: float | None = None  # the slowest rung's
    latencies_ms: list[float] = []


class LiveStepResult(BaseModel):
    """What one live sweep step did and cost: each stream, the processes' time, the energy window."""

    job_id: str
    node: str
    ingest: str
    error: str | None = None
    streams: list[StreamResult] = []
    started_at: datetime | None = None
    ended_at: datetime | None = None
    wall_s: float | None = None
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0
    max_rss_bytes: int = 0
    ffmpeg_version: str | None = None
    ffmpeg_cmd: str | None = None
    output_path: str | None = None
    energy: EnergyWindow | None = None

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s


@dataclass
class _Process:
    """One FFmpeg of the step, run on its own thread."""

    role: str  # "publisher", "transcoder", "source player", "player of r1 (640x360@800k)"
    stream: int
    args: list[str]
    log: FrameLog | None = None  # players: every packet they saw
    samples: list[tuple[float, float]] = field(default_factory=list)  # transcoder: (wall, media) seconds
    pid: int | None = None
    run: FFmpegRun | None = None
    crash: str | None = None  # FFmpeg couldn't be run at all
    ended: float | None = None  # monotonic
    thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        return self.thread is not None and not self.thread.is_alive()

    @property
    def frames(self) -> int:
        progress = self.run.last_progress if self.run else None
        return progress.frame if progress else 0

    def start(self, ffmpeg: str, *, timeout_s: float, cancel: threading.Event,
              on_progress: Callable[[Progress], None] | None = None) -> None:
        def on_line(line: str) -> None:
            assert self.log is not None
            self.log.feed(line, time.monotonic())

        def progress(snapshot: Progress) -> None:
            if snapshot.out_time_s is not None and not snapshot.done:  # the last block is the encoders' flush
                self.samples.append((time.monotonic(), snapshot.out_time_s))
            if on_progress is not None:
                on_progress(snapshot)

        def target() -> None:
            try:
                self.run = run_ffmpeg(ffmpeg, self.args, timeout_s=timeout_s, cancel=cancel, on_progress=progress,
                                      on_start=lambda pid: setattr(self, "pid", pid),
                                      on_line=on_line if self.log is not None else None)
            except Exception as exc:  # noqa: BLE001 - reported as this process's failure
                self.crash = f"{type(exc).__name__}: {exc}"
            finally:
                self.ended = time.monotonic()

        self.thread = threading.Thread(target=target, name=f"live-{self.role}-{self.stream}", daemon=True)
        self.thread.start()

    def failure(self, *, cancelled: bool) -> str | None:
        """Why this process failed, in words; None when it ended well (or was stopped by us)."""
        if self.crash:
            return f"{self.role} couldn't run: {self.crash}"
        if self.run is None:
            return None
        if self.run.timed_out:
            return f"{self.role} killed at the step's deadline"
        if cancelled and self.run.returncode < 0:
            return None  # stopped because another process failed
        why = self.run.failure()
        if why is None:
            return None
        if self.role == "publisher":
            return f"publisher died after {self.frames} frames ({why})"
        if self.log is not None and self.log.frames == 0:
            return f"{self.role} got no frame ({why})"
        return f"{self.role} failed: {why}"


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


class _Step:
    """The processes of one step and the rules that end it."""

    def __init__(self, job: Job, contribution: Contribution, url: str, keep: Path | None, deadline: float) -> None:
        assert job.live is not None
        self.step, self.contribution, self.deadline = job.live, contribution, deadline
        self.cancel = threading.Event()
        self.error: str | None = None
        self.failed_stream: int | None = None
        names = stream_names(job, secrets.token_hex(3))
        # FFmpeg's own read timeout, a backstop under the watchdog (watch_first_frames) for processes
        # that outlive the step's Python process: long enough to wait out joining and a first frame.
        wait_s = 2 * self.step.first_frame_timeout_s + 5
        self.publishers: list[_Process] = []
        self.transcoders: list[_Process] = []
        self.source_players: list[_Process] = []
        self.rendition_players: list[list[_Process]] = []
        base = url.rstrip("/")
        for index, name in enumerate(names, 1):
            source, renditions = f"{base}/{name.source}", [f"{base}/{rendition}" for rendition in name.renditions]
            self.publishers.append(_Process("publisher", index, publisher_args(contribution.path, source)))
            self.transcoders.append(_Process("transcoder", index, transcoder_args(
                job, self.step, (contribution.width, contribution.height), contribution.fps, source, renditions,
                timeout_s=wait_s)))
            self.source_players.append(_Process("source player", index, player_args(source, wait_s), log=FrameLog()))
            self.rendition_players.append([
                _Process(f"player of r{k} ({rung.label})", index,
                         player_args(rendition, wait_s, keep / f"stream{index}-r{k}.flv" if keep else None),
                         log=FrameLog())
                for k, (rung, rendition) in enumerate(zip(self.step.ladder, renditions))])

    @property
    def joining(self) -> list[_Process]:
        """Everything that joins before the publishers start, players first."""
        players = [p for stream in self.rendition_players for p in stream] + self.source_players
        return players + self.transcoders

    @property
    def everything(self) -> list[_Process]:
        return self.joining + self.publishers

    def remaining_s(self) -> float:
        return max(0.1, self.deadline - time.monotonic())

    def fail(self, stream: int | None, reason: str) -> None:
        """The first failure ends the step: every stream's processes are stopped."""
        if self.error is None:
            self.error = f"stream {stream}: {reason}" if stream is not None else reason
            self.failed_stream = stream
        self.cancel.set()

    def check_processes(self) -> None:
        for process in self.everything:
            if process.done and (why := process.failure(cancelled=self.cancel.is_set())) is not None:
                self.fail(process.stream, why)
                return
        for index, publisher in enumerate(self.publishers):
            if publisher.done and publisher.run is not None and publisher.run.returncode == 0 \
                    and publisher.frames < self.contribution.frames:
                self.fail(index + 1, f"publisher stopped after {publisher.frames} of {self.contribution.frames} "
                                     "frames")
                return
            started = publisher.thread is not None
            if started and publisher.done:
                continue  # the stream is over: its transcoder and players end after it
            for process in [self.transcoders[index], self.source_players[index], *self.rendition_players[index]]:
                if process.done:  # ended by itself (its exit status was fine): the ingest hung up on it
                    when = "while the publisher was still pushing" if started else "before the publish"
                    self.fail(index + 1, f"{process.role} ended {when} "
                                         f"(after {process.log.frames if process.log else process.frames} frames)")
                    return

    def watch_first_frames(self, published_at: float) -> None:
        """A stream or rendition with no frame ``first_frame_timeout_s`` after the publish, or none for
        that long while its publisher still pushes, fails the step."""
        now, limit = time.monotonic(), self.step.first_frame_timeout_s
        for index, publisher in enumerate(self.publishers):
            for player in [self.source_players[index], *self.rendition_players[index]]:
                assert player.log is not None
                what = "the source" if player.role == "source player" else player.role.removeprefix("player of ")
                if not player.log.frames and now - published_at > limit:
                    self.fail(index + 1, f"{what} never appeared on the ingest within {_fmt_s(limit)} of the publish")
                    return
                if player.log.frames and not publisher.done and now - player.log.arrivals[-1] > limit:
                    self.fail(index + 1, f"{what} stalled: no frame for {_fmt_s(limit)} while the publisher pushed")
                    return


def _join(step: _Step, port: int, timeout_s: float) -> None:
    """Wait until every joining process holds a connection to the ingest (or one fails)."""
    waiting = list(step.joining)
    until = time.monotonic() + timeout_s
    while waiting and step.error is None:
        step.check_processes()
        waiting = [p for p in waiting if not (p.pid is not None and connected_to(p.pid, port))]
        if time.monotonic() > until:
            roles = sorted({f"stream {p.stream} {p.role}" for p in waiting})
            step.fail(None, f"couldn't join the ingest within {_fmt_s(timeout_s)}: {', '.join(roles[:4])}"
                            + (f" and {len(roles) - 4} more" if len(roles) > 4 else ""))
        time.sleep(0.05)
    if step.error is None:
        time.sleep(SETTLE_S)


def _stream_result(step: _Step, index: int) -> StreamResult:
    publisher, transcoder = step.publishers[index], step.transcoders[index]
    source_player, renditions = step.source_players[index], step.rendition_players[index]
    fps = step.contribution.fps
    assert source_player.log is not None
    logs = [player.log for player in renditions if player.log is not None]
    source_frames = publisher.frames
    progress = transcoder.run.last_progress if transcoder.run else None
    state: Literal["ok", "failed", "stopped"] = "ok"
    if step.error is not None:
        state = "failed" if step.failed_stream in (index + 1, None) else "stopped"
    latencies = [value for log in logs for value in latencies_ms(source_player.log, log, fps)]
    delays = [d for log in logs if (d := first_frame_delay_s(source_player.log, log)) is not None]
    return StreamResult(
        stream=index + 1, state=state, error=step.error if state == "failed" else None,
        # Up to just before the publisher left: the transcoder flushes its encoders as it sees the end.
        speed=steady_speed(transcoder.samples, until=publisher.ended - POLL_S if publisher.ended else None),
        ffmpeg_speed=progress.speed if progress else None,
        source_frames=source_frames, frames=progress.frame if progress else 0,
        rendition_frames=[log.frames for log in logs],
        dropped_frames=sum(max(0, source_frames - log.frames) for log in logs),
        duplicated_frames=progress.dup_frames if progress else 0,
        rung_kbps=[rung_bitrate_kbps(log, fps) for log in logs],
        first_frame_s=max(delays) if len(delays) == len(logs) and delays else None,
        latencies_ms=latencies)


def run_live_step(job: Job, contribution: Contribution, run_id: str, *, settings: Settings) -> LiveStepResult:
    """Run one live sweep step here and measure it. A step that fails returns its reason in ``error``
    (and what each stream did until then); it never waits past its deadline."""
    assert job.live is not None
    step_spec = job.live
    ffmpeg = ffmpeg_path(settings)
    build = probe_build(ffmpeg)
    url = ingest_url(settings)
    result = LiveStepResult(job_id=job.job_id, node=settings.node, ingest=url, ffmpeg_version=build.version)
    reason = unreachable(url)
    if reason is not None:
        result.error = (f"ingest {url} unreachable ({reason}): start it on the master (ffwatt stack up), or point "
                        "FFWATT_INGEST_URL at it")
        return result
    # Joining, the stream itself, and draining the encoders, each bounded; the job's timeout caps it all.
    budget = min(job.timeout_s, contribution.duration_s + 3 * step_spec.first_frame_timeout_s + 30)
    keep = settings.outputs_dir / job.campaign / run_id / job.job_id if job.keep_output else None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    step = _Step(job, contribution, url, keep, time.monotonic() + budget)
    logger = run_logger()
    last_log = time.monotonic()

    def spool(index: int, progress: Progress, done: bool = False) -> None:
        write_progress_record(settings.progress_dir, ProgressRecord(
            job_id=job.job_id, stream=str(index), campaign=job.campaign, encoder=job.encoder,
            preset=job.preset or "", node=settings.node, progress=progress, updated_at=time.time(), done=done))

    prune_progress_records(settings.progress_dir)
    meter = EnergyMeter(settings)
    wall = WallMeter(settings) if settings.redfish_url else None  # the plug, when the node's BMC is known
    window: EnergyWindow | None = None
    wall_reading: WallReading | None = None
    started_at: datetime | None = None
    start = 0.0
    try:
        for process in step.joining:
            on_progress = (lambda p, i=process.stream: spool(i, p)) if process.role == "transcoder" else None
            process.start(ffmpeg, timeout_s=step.remaining_s(), cancel=step.cancel, on_progress=on_progress)
        _join(step, split_ingest_url(url)[1], step_spec.first_frame_timeout_s)
        if step.error is None:
            if wall is not None:
                wall.start()
            meter.start()
            started_at, start = datetime.now(UTC), time.monotonic()
            for publisher in step.publishers:
                publisher.start(ffmpeg, timeout_s=step.remaining_s(), cancel=step.cancel)
            while not all(process.done for process in step.everything):
                time.sleep(POLL_S)
                meter.sample()
                if step.error is None:
                    step.check_processes()
                if step.error is None:
                    step.watch_first_frames(start)
                if step.error is None and time.monotonic() > step.deadline:
                    step.fail(None, f"still running at the step's deadline ({_fmt_s(budget)}); stopped")
                if time.monotonic() - last_log >= settings.progress_log_interval_s:
                    last_log = time.monotonic()
                    logger.info("%s: %s", job.label, "; ".join(
                        f"stream {p.stream} at {p.samples[-1][1]:.1f} s" for p in step.transcoders if p.samples))
            window = meter.stop()
        if step.error is not None:
            # Name the ingest when it is what went away: the processes only see a broken connection.
            gone = unreachable(url, timeout_s=1.0)
            if gone is not None:
                step.error = f"the ingest {url} went away ({gone}); {step.error}"
    finally:
        step.cancel.set()  # a no-op once every process has ended; after an interrupt, it ends them
        for process in step.everything:
            if process.thread is not None:
                process.thread.join(timeout=step.remaining_s() + 10)
        if window is None and started_at is not None:
            window = meter.stop()
        if wall is not None and started_at is not None:  # here, so an interrupted step stops its sampler too
            wall_reading = wall.stop((started_at.timestamp(), time.time()))
        for transcoder in step.transcoders:
            last = transcoder.run.last_progress if transcoder.run else None
            spool(transcoder.stream, last or Progress(), done=True)
    if started_at is not None:
        result.started_at, result.ended_at = started_at, datetime.now(UTC)
        result.wall_s = time.monotonic() - start
        if wall_reading is not None and window is not None:
            window = window.model_copy(update={"wall_j": wall_reading.energy_j, "wall_missing": wall_reading.missing})
    runs = [process.run for process in step.everything if process.run is not None]
    result.cpu_user_s = sum(run.cpu_user_s for run in runs)
    result.cpu_sys_s = sum(run.cpu_sys_s for run in runs)
    result.max_rss_bytes = max((run.max_rss_bytes for p in step.transcoders if (run := p.run)), default=0)
    first = step.transcoders[0]
    result.ffmpeg_cmd = first.run.command_line if first.run else None
    result.streams = [_stream_result(step, index) for index in range(step_spec.streams)]
    result.energy = window
    result.error = step.error
    if keep is not None:
        if step.error is None:
            result.output_path = str(keep)
        else:
            shutil.rmtree(keep, ignore_errors=True)
    return result


@task(name="live-step", cache_policy=NO_CACHE)
def live_step(job: Job, contribution: Contribution, run_id: str) -> LiveStepResult:
    """Run one live sweep step (N streams at once through the ingest) and measure it."""
    return run_live_step(job, contribution, run_id, settings=load_settings())

