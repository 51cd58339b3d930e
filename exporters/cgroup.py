"""A job's own cgroup (v2): what FFmpeg and everything it starts used, counted by the kernel.

The transcode task makes ``ffwatt-job-<job>-<pid>-<n>`` under ``FFWATT_CGROUP_ROOT`` (by default
this process's own cgroup, which a systemd unit with ``Delegate=yes`` lets it write), FFmpeg joins
it between fork and exec (:func:`ffwatt.hardware.ffmpeg.run_ffmpeg`'s ``cgroup``, beside its death
signal), and once the encode is reaped its ``cpu.stat`` and ``io.stat`` give the row's
``cgroup_cpu_s`` and ``cgroup_io_bytes``; then the directory, empty, is removed.

Where no cgroup can be made (cgroup v1 only, a directory not delegated), or the io controller
isn't enabled for it, the figures come from FFmpeg's ``wait4`` rusage instead (its CPU time and
its block I/O, ``ru_inblock``/``ru_oublock`` in 512-byte units, children it reaped included) and
``resource_source`` says which: this is logged once per process, not per job.

It lives with the exporters because the FFmpeg exporter reads a running job's cgroup too
(``container_*`` metrics) and the transcode task, a floor up, may import it from here.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from pathlib import Path

__all__ = ["JobCgroup", "cgroup_usage", "cgroup_working_set", "own_cgroup_dir"]

log = logging.getLogger("ffwatt.cgroup")
_said: set[str] = set()  # what this process already logged about cgroups
_serial = itertools.count(1)


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.warning(message)


def own_cgroup_dir(proc_root: Path = Path("/proc")) -> Path | None:
    """This process's cgroup v2 directory (the unified hierarchy's mount point plus ``0::`` path), or
    None where there is none."""
    try:
        relative = next((line[3:].strip() for line in (proc_root / "self" / "cgroup").read_text().splitlines()
                         if line.startswith("0::")), None)
        mounts = (proc_root / "self" / "mountinfo").read_text().splitlines()
    except OSError:
        return None
    if relative is None:
        return None
    for line in mounts:
        fields = line.split()
        if " - cgroup2 " in line and len(fields) > 4:
            return Path(fields[4]) / relative.lstrip("/")
    return None


def cgroup_usage(directory: Path) -> tuple[float | None, int | None]:
    """CPU seconds (``cpu.stat`` usage_usec, always there in v2) and bytes read and written
    (``io.stat``, only with the io controller: None without) of the cgroup so far."""
    cpu_s = io_bytes = None
    with contextlib.suppress(OSError, ValueError):
        stat = dict(line.split() for line in (directory / "cpu.stat").read_text().splitlines() if line.strip())
        cpu_s = int(stat["usage_usec"]) / 1e6
    with contextlib.suppress(OSError, ValueError):
        io_bytes = sum(int(value) for line in (directory / "io.stat").read_text().splitlines()
                       for key, _, value in (part.partition("=") for part in line.split()[1:])
                       if key in ("rbytes", "wbytes"))
    return cpu_s, io_bytes


def cgroup_working_set(directory: Path) -> int | None:
    """Memory in use less what could be dropped at once (``memory.current`` - ``inactive_file``, as
    cAdvisor counts a container's working set); None without the memory controller."""
    try:
        current = int((directory / "memory.current").read_text())
        stat = dict(line.split() for line in (directory / "memory.stat").read_text().splitlines() if line.strip())
    except (OSError, ValueError):
        return None
    return max(0, current - int(stat.get("inactive_file", 0)))


class JobCgroup:
    """One job's cgroup, made at :meth:`create` when it can be; :attr:`path` None when it couldn't (and
    why, logged once)."""

    def __init__(self, root: Path | None, job_id: str) -> None:
        self._root = root
        self._name = f"ffwatt-job-{job_id}-{os.getpid()}-{next(_serial)}"
        self.path: Path | None = None
        self.io_controller = False

    def create(self) -> JobCgroup:
        root = self._root or own_cgroup_dir()
        if root is None:
            _say_once("no cgroup v2 hierarchy here: a job's CPU time and I/O come from FFmpeg's rusage "
                      "(resource_source=rusage)")
            return self
        try:
            (root / self._name).mkdir()
        except OSError as exc:
            _say_once(f"can't make a job cgroup under {root} ({exc.strerror}; delegate it to this user, or set "
                      "FFWATT_CGROUP_ROOT): a job's CPU time and I/O come from FFmpeg's rusage "
                      "(resource_source=rusage)")
            return self
        self.path = root / self._name
        self.io_controller = (self.path / "io.stat").exists()
        if not self.io_controller:  # enabling it is the owner of the root's to do (+io in its subtree_control)
            _say_once(f"the io controller isn't enabled for job cgroups under {root}: a job's I/O comes from "
                      "FFmpeg's rusage (resource_source=cgroup+rusage)")
        return self

    def holds(self, pid: int) -> bool:
        """Whether ``pid`` (alive or not yet reaped) is in this cgroup."""
        if self.path is None:
            return False
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return False
        relative = next((line[3:].strip() for line in text.splitlines() if line.startswith("0::")), "")
        return relative.endswith("/" + self._name)

    def remove(self) -> None:
        """Remove the cgroup: FFmpeg's group was killed and reaped, so it is empty; one that isn't (a
        process that escaped its group) is left, and said so."""
        if self.path is None:
            return
        try:
            self.path.rmdir()
        except OSError as exc:
            log.warning("job cgroup %s not removed: %s", self.path, exc.strerror)
