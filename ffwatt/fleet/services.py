"""Background services of a node (the master's stack, an agent's workers and exporters).

Each service is a process started in its own session with its log and pid file
under ``FFWATT_HOME/run``, so ``status`` and ``stop`` work from any later shell,
and stopping kills the whole process group (a Prefect worker's flow runs too).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Service", "ServiceStatus", "service_status", "start_service", "stop_service"]


@dataclass(frozen=True)
class Service:
    """How to start one background process."""

    name: str
    command: list[str]
    env: dict[str, str]
    url: str = ""
    cwd: Path | None = None


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    running: bool
    url: str
    log: Path


def _paths(run_dir: Path, name: str) -> tuple[Path, Path, Path]:
    return run_dir / f"{name}.pid", run_dir / f"{name}.log", run_dir / f"{name}.url"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def service_status(run_dir: Path, name: str) -> ServiceStatus:
    pid_file, log, url_file = _paths(run_dir, name)
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    url = url_file.read_text() if url_file.exists() else ""
    return ServiceStatus(name, pid, pid is not None and _alive(pid), url, log)


def start_service(run_dir: Path, service: Service) -> ServiceStatus:
    """Start ``service`` unless it already runs; its output goes to its log."""
    current = service_status(run_dir, service.name)
    if current.running:
        return current
    run_dir.mkdir(parents=True, exist_ok=True)
    pid_file, log, url_file = _paths(run_dir, service.name)
    with log.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(service.command)}\n".encode())
        out.flush()
        process = subprocess.Popen(service.command, env=service.env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=service.cwd, start_new_session=True)
    pid_file.write_text(str(process.pid))
    url_file.write_text(service.url)
    return ServiceStatus(service.name, process.pid, True, service.url, log)


def stop_service(run_dir: Path, name: str, *, timeout_s: float = 20) -> bool:
    """SIGTERM the service's process group, SIGKILL what's left after ``timeout_s``. True if it ran."""
    status = service_status(run_dir, name)
    pid_file = _paths(run_dir, name)[0]
    if not status.running or status.pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(status.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _alive(status.pid):
            time.sleep(0.1)
        if not _alive(status.pid):
            break
    with contextlib.suppress(ProcessLookupError):  # whatever of the group outlived its leader
        os.killpg(status.pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True
