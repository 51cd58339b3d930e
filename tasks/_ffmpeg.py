"""Running FFmpeg as a measured child process.

One runner serves every step that calls FFmpeg: it reads ``-progress`` from the
child's stdout as it comes, keeps stderr in a file (its tail explains failures),
kills the child at a deadline, and reaps it with ``wait4`` to get the CPU time and
peak memory of exactly that process.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ffwatt.progress import Progress, ProgressParser

__all__ = ["FFmpegRun", "run_ffmpeg", "run_logger"]

_STDERR_TAIL_LINES = 15


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
    last_progress: Progress | None
    stderr_tail: str
    timed_out: bool = False

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
            return f"FFmpeg exited with status {self.returncode}: {self._first_error()}"
        return None

    def _first_error(self) -> str:
        # FFmpeg's last line is usually "Conversion failed!"; the first error line says why.
        lines = [line.strip() for line in self.stderr_tail.splitlines() if line.strip()]
        for line in lines:
            if "error" in line.lower() or "invalid" in line.lower():
                return line
        return lines[-1] if lines else "(no stderr)"


def run_ffmpeg(
    ffmpeg: str,
    args: list[str],
    *,
    timeout_s: float,
    on_progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> FFmpegRun:
    """Run ``ffmpeg args`` to completion, calling ``on_progress`` for each progress block."""
    command = [ffmpeg, "-hide_banner", "-nostdin", "-y", "-nostats", "-stats_period", "0.5",
               "-progress", "pipe:1", *args]
    parser = ProgressParser()
    last: Progress | None = None
    with tempfile.TemporaryFile(mode="w+") as stderr_file:
        started_at = datetime.now(UTC)
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr_file, text=True)
        if on_start is not None:
            on_start(process.pid)
        timed_out = threading.Event()

        def kill_at_deadline() -> None:
            timed_out.set()
            process.kill()

        deadline = threading.Timer(timeout_s, kill_at_deadline)
        deadline.daemon = True
        deadline.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                snapshot = parser.feed(line)
                if snapshot is not None:
                    last = snapshot
                    if on_progress is not None:
                        on_progress(snapshot)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            deadline.cancel()
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
        last_progress=last,
        stderr_tail=tail,
        timed_out=timed_out.is_set(),
    )


def run_logger() -> logging.Logger | logging.LoggerAdapter:  # type: ignore[type-arg]
    """Prefect's run logger inside a flow or task run, a plain logger outside one."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # MissingContextError outside a run
        return logging.getLogger("ffwatt")
