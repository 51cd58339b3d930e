"""Processes ffwatt starts and stops: who a pid is, who listens on a port, what a process group holds,
and stopping a group ffwatt started. Read through psutil, the one way into ``/proc`` outside the
measured seams (:mod:`ffwatt.hardware.procstat` keeps its procfs root so tests can hand it another).

A pid alone proves nothing (pids are reused): a process is identified by its pid and its start
time, a pair no two processes of one boot share.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = ["Identity", "group_members", "identity", "incarnation", "incarnation_runs", "listening_pids", "stop_group"]

# psutil's start time is the kernel's, in clock ticks (1/100 s on Linux) since boot: equal within
# two ticks is the same start.
_SAME_START_S = 0.02


@dataclass(frozen=True)
class Identity:
    pid: int
    started_at: float  # unix seconds (psutil's create_time)
    cmdline: list[str]  # for people to read: nginx and others retitle themselves, so it isn't compared

    def same_process(self, other: Identity | None) -> bool:
        return other is not None and other.pid == self.pid and abs(other.started_at - self.started_at) < _SAME_START_S


def identity(pid: int) -> Identity | None:
    """What identifies process ``pid`` now, or None when there is none. A zombie counts as gone but is
    left for its owner to reap: FFmpeg's runner waits on its own child for the rusage, and a reaper
    here (the in-process exporter looks at that same pid) would take it and fail the job with ECHILD."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return Identity(pid, process.create_time(), process.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # another user's process: it exists, its command line is private
        with contextlib.suppress(psutil.Error):
            return Identity(pid, psutil.Process(pid).create_time(), [])
        return None


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def incarnation(pid: int) -> str | None:
    """A name for process ``pid`` that no other process ever has, here or on another machine: this
    boot's id, the pid and its start time. None when there is no such process."""
    found = identity(pid)
    return None if found is None else f"{_boot_id()}/{pid}/{found.started_at:.2f}"


def incarnation_runs(name: str) -> bool | None:
    """Whether the process an :func:`incarnation` names still runs; None when it ran on another machine
    (or before this machine's last boot), where this one can't tell."""
    boot, _, rest = name.partition("/")
    pid, _, started_at = rest.partition("/")
    if boot != _boot_id() or not pid.isdigit():
        return None
    try:
        named = Identity(int(pid), float(started_at), [])
    except ValueError:
        return None
    return named.same_process(identity(int(pid)))


def listening_pids(port: int) -> set[int]:
    """Processes (that this user may see) with a TCP socket listening on ``port``."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return set()
    return {c.pid for c in connections
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid is not None}


def group_members(pgid: int) -> list[psutil.Process]:
    """The processes of process group ``pgid``, its leader first when alive."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid:
                members.append(process)
    return sorted(members, key=lambda p: p.pid != pgid)


def stop_group(pgid: int, *, timeout_s: float = 15.0) -> None:
    """SIGTERM the process group ``pgid`` (one ffwatt started, in a session of its own), and SIGKILL
    what is left of it after ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and identity(pgid) is not None:
            time.sleep(0.05)
        os.killpg(pgid, signal.SIGKILL)  # what is left, the leader gone or not
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and identity(pgid) is not None:
        time.sleep(0.05)
