"""FFmpeg, the seam to the encoders: which binary, what it can do, and running it measured.

``FFWATT_FFMPEG`` selects a binary; otherwise the static build shipped in the
``imageio-ffmpeg`` wheel is used (it has libvmaf, which Debian's FFmpeg lacks).

One runner, :func:`run_ffmpeg`, serves every step that calls FFmpeg: it reads
``-progress`` from the child's stdout as it comes, keeps stderr in a file (its
tail explains failures), kills the child at a deadline, and reaps it with
``wait4`` to get the CPU time and peak memory of exactly that process.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from ffwatt.encoders import Pool, profile_for
from ffwatt.errors import FFmpegError
from ffwatt.hardware.progress import Progress, ProgressParser
from ffwatt.settings import Settings

__all__ = [
    "RUNNER_ARGS",
    "EncoderCheck",
    "FFmpegBuild",
    "FFmpegRun",
    "MediaInfo",
    "VideoStream",
    "check_encoder",
    "encoder_options",
    "ffmpeg_path",
    "probe_build",
    "probe_media",
    "run_ffmpeg",
    "stream_hash",
]

_STDERR_TAIL_LINES = 15
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# What the runner puts before a step's own arguments: quiet, non-interactive, progress on stdout.
# A recorded command without them is the command a user would type (``ffwatt recommend`` prints it).
RUNNER_ARGS: tuple[str, ...] = ("-hide_banner", "-nostdin", "-y", "-nostats", "-stats_period", "0.5",
                                "-progress", "pipe:1")


class FFmpegBuild(BaseModel):
    """What an FFmpeg binary is: its path, version, configure line and video encoders."""

    path: str
    version: str
    configuration: str
    encoders: frozenset[str]
    has_libvmaf: bool


def ffmpeg_path(settings: Settings) -> str:
    """The FFmpeg binary this node uses."""
    if settings.ffmpeg:
        found = shutil.which(settings.ffmpeg) or settings.ffmpeg
        if not Path(found).is_file():
            raise FFmpegError(
                f"FFWATT_FFMPEG={settings.ffmpeg} is not an executable file; "
                "unset it to use the bundled FFmpeg, or give a full path"
            )
        return found
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - it's a dependency
        raise FFmpegError("imageio-ffmpeg is not installed; run `make test` or set FFWATT_FFMPEG") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoStream:
    codec: str
    width: int
    height: int
    fps: float
    pix_fmt: str | None = None


@dataclass(frozen=True)
class MediaInfo:
    """What FFmpeg sees in a file: its first video stream, how many audio streams, or why it
    can't read it at all."""

    video: VideoStream | None
    audio_streams: int
    duration_s: float | None
    error: str | None


_STREAM = re.compile(r"^\s*Stream #\d+:\d+\S*: (Video|Audio): (\w+)(.*)$", re.MULTILINE)
_SIZE = re.compile(r", (\d{1,5})x(\d{1,5})")
_RATE = re.compile(r", ([\d.]+) (?:fps|tbr)")
_PIX_FMT = re.compile(r", ((?:yuvj?|yuva|gray|nv|p0|p2|rgb|bgr|gbr)[a-z0-9]*)\b")
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_OPEN_ERROR = re.compile(r"Error opening input(?: file[^:]*)?: (.+)$", re.MULTILINE)


def probe_media(ffmpeg: str, path: Path, *, timeout_s: float = 60) -> MediaInfo:
    """Ask FFmpeg what ``path`` holds (the bundled build has no ffprobe: ``ffmpeg -i`` says it)."""
    try:
        done = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True,
                              text=True, timeout=timeout_s, errors="replace")
    except subprocess.TimeoutExpired:
        return MediaInfo(None, 0, None, f"FFmpeg took over {timeout_s:g} s to open it")
    except OSError as exc:
        raise FFmpegError(f"can't run FFmpeg at {ffmpeg}: {exc}") from exc
    error = _OPEN_ERROR.search(done.stderr)
    if error:
        return MediaInfo(None, 0, None, error[1].strip())
    video, audio = None, 0
    for kind, codec, rest in _STREAM.findall(done.stderr):
        if kind == "Audio":
            audio += 1
        elif video is None and (size := _SIZE.search(rest)):
            rate, pix_fmt = _RATE.search(rest), _PIX_FMT.search(rest)
            video = VideoStream(codec, int(size[1]), int(size[2]), float(rate[1]) if rate else 0.0,
                                pix_fmt[1] if pix_fmt else None)
    duration = _DURATION.search(done.stderr)
    seconds = int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3]) if duration else None
    return MediaInfo(video, audio, seconds, None)


class EncoderCheck(BaseModel):
    """Whether an encoder really encodes here, proven by a short encode, and why not."""

    encoder: str
    pool: Pool
    works: bool
    seconds: float
    error: str | None = None


def check_encoder(ffmpeg: str, encoder: str, *, timeout_s: float = 30) -> EncoderCheck:
    """Encode ten small frames with ``encoder`` and report whether it worked."""
    profile = profile_for(encoder)
    filters = [profile.upload_filter] if profile.upload_filter else []
    command = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", *profile.input_args,
               "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-frames:v", "10",
               *(["-vf", ",".join(filters)] if filters else []),
               "-c:v", encoder, *profile.preset_args(profile.default_preset), "-f", "null", "-"]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, errors="replace")
        error = None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[0]
    except subprocess.TimeoutExpired:
        error = f"no answer within {timeout_s:g} s"
    return EncoderCheck(encoder=encoder, pool=profile.pool, works=error is None,
                        seconds=time.perf_counter() - start, error=error)


_ENCODER_LINE = re.compile(r"^\s*V[A-Z.]{5}\s+(\S+)\s", re.MULTILINE)


@functools.lru_cache(maxsize=8)
def probe_build(path: str) -> FFmpegBuild:
    """Ask ``path`` for its version, configuration and video encoders (cached per path)."""
    try:
        version_out = subprocess.run(
            [path, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        encoders_out = subprocess.run(
            [path, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        filters_out = subprocess.run(
            [path, "-hide_banner", "-filters"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise FFmpegError(f"can't run FFmpeg at {path}: {exc}") from exc
    first = version_out.splitlines()[0] if version_out else ""
    version = first.split(" version ", 1)[1].split(" ", 1)[0] if " version " in first else "unknown"
    configuration = next(
        (line.split(":", 1)[1].strip() for line in version_out.splitlines() if line.startswith("configuration:")),
        "",
    )
    encoders = frozenset(
        name for name in _ENCODER_LINE.findall(encoders_out) if name != "="
    )
    return FFmpegBuild(
        path=path,
        version=version,
        configuration=configuration,
        encoders=encoders,
        has_libvmaf=re.search(r"^\s*\S+\s+libvmaf\s", filters_out, re.MULTILINE) is not None,
    )




_OPTION_LINE = re.compile(r"^  -(\S+)\s+<(\w+)>\s+\S+\s?(.*)$", re.MULTILINE)
_OPTION_RANGE = re.compile(r"\(from (\S+) to (\S+)\)")


def _bound(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # INT_MIN, INT_MAX, -FLT_MAX, ...
        return float("-inf") if text.startswith("-") or "MIN" in text else float("inf")


@functools.lru_cache(maxsize=64)
def encoder_options(path: str, encoder: str) -> dict[str, tuple[float, float] | None]:
    """The private options ``encoder`` takes in the FFmpeg at ``path`` (``-h encoder=NAME``), each with
    the range FFmpeg gives for it (None when it gives none): what an encoder ffwatt has no profile for
    really accepts, rather than a guess."""
    try:
        text = subprocess.run([path, "-hide_banner", "-h", f"encoder={encoder}"], capture_output=True, text=True,
                              timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise FFmpegError(f"can't ask FFmpeg at {path} about encoder {encoder}: {exc}") from exc
    options: dict[str, tuple[float, float] | None] = {}
    for name, _kind, rest in _OPTION_LINE.findall(text):
        found = _OPTION_RANGE.search(rest)
        options[name] = (_bound(found[1]), _bound(found[2])) if found else None
    return options


def stream_hash(path: str, media: Path, *, timeout_s: float = 120) -> str | None:
    """MD5 of the first video stream's packets in ``media`` (the ``streamhash`` muxer over a stream copy):
    two encodes that made the same video have the same hash, whatever ids their containers drew. None
    when FFmpeg can't tell (the caller's row then has no hash, rather than a wrong one)."""
    try:
        done = subprocess.run([path, "-hide_banner", "-nostdin", "-v", "error", "-i", str(media), "-map", "0:v:0",
                               "-c", "copy", "-f", "streamhash", "-hash", "md5", "-"],
                              capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"^0,v,MD5=([0-9a-f]{32})$", done.stdout, re.MULTILINE)
    return found[1] if done.returncode == 0 and found else None


@dataclass
class FFmpegRun:
    """What one FFmpeg process did."""

    command: list[str]
    returncode: int
    started_at: datetime
    ended_at: datetime
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    max_rss_bytes: int
    block_io_bytes: int  # storage reads and writes (rusage), children it reaped included
    last_progress: Progress | None
    stderr_tail: str
    timed_out: bool = False

    def process_measurements(self) -> dict[str, object]:
        """When the process ran, and what it used: the row's encode-window columns."""
        return {"started_at": self.started_at, "ended_at": self.ended_at, "wall_s": self.wall_s,
                "cpu_user_s": self.cpu_user_s, "cpu_sys_s": self.cpu_sys_s, "max_rss_bytes": self.max_rss_bytes}

    @property
    def command_line(self) -> str:
        return shlex.join(self.command)

    def failure(self) -> str | None:
        """Why the run failed, in one line, or None if it succeeded."""
        if self.timed_out:
            return f"FFmpeg killed after {self.wall_s:.0f} s (job_timeout_s)"
        if self.returncode < 0:
            return f"FFmpeg was killed by signal {signal.Signals(-self.returncode).name}"
        if self.returncode > 0:
            return f"FFmpeg exited {self.returncode}: {self._first_error()}"
        return None

    def _first_error(self) -> str:
        # FFmpeg's last line is usually "Conversion failed!"; the first error line says why.
        lines = [line.strip() for line in self.stderr_tail.splitlines() if line.strip()]
        for line in lines:
            if "error" in line.lower() or "invalid" in line.lower():
                return line
        return lines[-1] if lines else "(no stderr)"


def _dies_with_this_thread(cgroup: Path | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when the thread starting it ends, the
    whole process killed included (``PR_SET_PDEATHSIG``, kept across exec).

    FFmpeg ignores a broken progress pipe, so without it an encode whose agent was SIGKILLed runs on
    beside the batch that replaces it. Between fork and exec the child makes one system call and
    reads its parent's pid: nothing that takes a lock another thread of the parent could hold.
    With ``cgroup`` (a cgroup v2 directory), the child also joins it, so everything FFmpeg starts is
    counted there from its first instruction: open, write, close, no lock either; a refusal leaves it
    where it was (the caller checks, and counts it from rusage)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, in the parent, not in the child
    parent, kill = os.getpid(), int(signal.SIGKILL)
    procs = None if cgroup is None else os.fsencode(cgroup / "cgroup.procs")

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, kill) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the signal was set: nothing would send it
            os._exit(1)
        if procs is not None:
            try:
                fd = os.open(procs, os.O_WRONLY)
                try:
                    os.write(fd, b"0")  # 0: the writing process
                finally:
                    os.close(fd)
            except OSError:
                pass

    return preexec


def run_ffmpeg(
    ffmpeg: str,
    args: list[str],
    *,
    timeout_s: float,
    on_progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_line: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    cgroup: Path | None = None,
) -> FFmpegRun:
    """Run ``ffmpeg args`` to completion, calling ``on_progress`` for each progress block.

    FFmpeg runs in a process group of its own, and the deadline (or an interrupt) kills the
    whole group: an ``FFWATT_FFMPEG`` wrapper that doesn't ``exec`` can't leave the real encoder
    running, and nothing the job started outlives it. If this process dies (an agent SIGKILLed), the
    kernel kills FFmpeg (a wrapper only: it should ``exec`` FFmpeg). ``on_line`` sees every line of
    stdout as it arrives (an output muxed to ``pipe:1`` beside the progress); setting ``cancel`` kills
    the group from another thread, as the deadline does (the run then reports the signal); ``cgroup``:
    a cgroup v2 directory FFmpeg joins before it execs."""
    command = [ffmpeg, *RUNNER_ARGS, *args]
    parser = ProgressParser()
    last: Progress | None = None
    with tempfile.TemporaryFile(mode="w+", errors="replace") as stderr_file:
        started_at = datetime.now(UTC)
        start = time.perf_counter()
        # The thread that starts FFmpeg is the one that waits for it, so the death signal comes only
        # if this process dies first. (preexec_fn is unsafe with threads when it takes locks: see
        # _dies_with_this_thread for why this one doesn't.)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr_file, text=True, errors="replace",
                                   start_new_session=True,
                                   preexec_fn=_dies_with_this_thread(cgroup))  # noqa: PLW1509
        if on_start is not None:
            on_start(process.pid)
        timed_out = threading.Event()

        def kill_group() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

        def kill_at_deadline() -> None:
            timed_out.set()
            kill_group()

        deadline = threading.Timer(timeout_s, kill_at_deadline)
        deadline.daemon = True
        deadline.start()
        reaped = threading.Event()
        if cancel is not None:
            def kill_when_cancelled() -> None:
                # Polls rather than waits on ``cancel`` alone, so the thread ends with the run.
                while not reaped.is_set():
                    if cancel.wait(0.1):
                        if not reaped.is_set():
                            kill_group()
                        return

            threading.Thread(target=kill_when_cancelled, name="ffmpeg-cancel", daemon=True).start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if on_line is not None:
                    on_line(line)
                snapshot = parser.feed(line)
                if snapshot is not None:
                    last = snapshot
                    if on_progress is not None:
                        on_progress(snapshot)
            _, status, usage = os.wait4(process.pid, 0)
            reaped.set()
            process.returncode = os.waitstatus_to_exitcode(status)
        except BaseException:
            kill_group()
            process.wait()
            raise
        finally:
            reaped.set()
            deadline.cancel()
            kill_group()  # whatever of the job's group is left once FFmpeg itself has exited
            if process.stdout is not None:
                process.stdout.close()
        wall_s = time.perf_counter() - start
        ended_at = datetime.now(UTC)
        stderr_file.seek(0)
        tail = "\n".join(stderr_file.read().splitlines()[-_STDERR_TAIL_LINES:])
    return FFmpegRun(
        command=command,
        returncode=process.returncode,
        started_at=started_at,
        ended_at=ended_at,
        wall_s=wall_s,
        cpu_user_s=usage.ru_utime,
        cpu_sys_s=usage.ru_stime,
        max_rss_bytes=usage.ru_maxrss * 1024,  # Linux reports KiB
        block_io_bytes=(usage.ru_inblock + usage.ru_oublock) * 512,  # Linux counts 512-byte units
        last_progress=last,
        stderr_tail=tail,
        timed_out=timed_out.is_set(),
    )
