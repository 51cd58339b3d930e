"""Background services of a node (the master's stack, an agent's workers and exporters).

Each service is a process started in its own session with its log and pid file
under ``FFWATT_HOME/run``, so ``status`` and ``stop`` work from any later shell,
and stopping kills the whole process group (a Prefect worker's flow runs too).

Nothing is signalled or reported as running on the word of a pid file alone: the
file records what identifies the process (its start time, with its command line for people
to read: :mod:`ffwatt.processes`), and a pid that now belongs to another process
is a stale file, never a target. A service that listens is started only when its port is free, and
counts as started only once the listener on that port is in its own process group.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from ffwatt.errors import MonitoringError, PortTaken, ServiceError
from ffwatt.processes import Identity, identity, listening_pids, stop_group

__all__ = [
    "Service",
    "ServiceStatus",
    "port_holder",
    "program",
    "service_status",
    "start_service",
    "stop_service",
]


def program(name: str, package: str) -> str:
    """The path of ``name``, a program of Debian's ``package`` (a monitoring service's), or
    :class:`MonitoringError` saying how to install it."""
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if found is None:
        raise MonitoringError(f"{name} is not installed: apt-get install {package} (or run `make deps` as root, "
                              "which runs infra/bootstrap.sh)")
    return found


@dataclass(frozen=True)
class Service:
    """How to start one background process; ``listen`` is the (host, port) it must own."""

    name: str
    command: list[str]
    env: dict[str, str]
    url: str = ""
    cwd: Path | None = None
    listen: tuple[str, int] | None = None


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    running: bool
    url: str
    log: Path
    note: str = ""  # e.g. why a pid file was set aside


def _paths(run_dir: Path, name: str) -> tuple[Path, Path]:
    return run_dir / f"{name}.pid", run_dir / f"{name}.log"


def _settled_identity(pid: int) -> Identity | None:
    """The identity of a process just started: its command line reads empty for an instant
    while exec completes, so wait for it (a second at most)."""
    deadline = time.monotonic() + 1.0
    found = identity(pid)
    while found is not None and not found.cmdline and time.monotonic() < deadline:
        time.sleep(0.01)
        found = identity(pid)
    return found


def _read_record(pid_file: Path) -> tuple[Identity | None, str]:
    """The identity a pid file recorded, and its URL; (None, "") when unreadable or from an older
    ffwatt that recorded only the pid (which then can't be proven ours). Files from before psutil
    recorded the start in clock ticks since boot: the same instant."""
    try:
        record = json.loads(pid_file.read_text())
        if "started_at" in record:
            started_at = float(record["started_at"])
        else:
            started_at = psutil.boot_time() + int(record["start_ticks"]) / os.sysconf("SC_CLK_TCK")
        return Identity(int(record["pid"]), started_at, list(record["cmdline"])), record["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, ""


def service_status(run_dir: Path, name: str) -> ServiceStatus:
    """Whether the service recorded under ``name`` runs: its pid file's process, still the same one."""
    pid_file, log = _paths(run_dir, name)
    if not pid_file.exists():
        return ServiceStatus(name, None, False, "", log)
    recorded, url = _read_record(pid_file)
    if recorded is None:
        return ServiceStatus(name, None, False, url, log, note=f"{pid_file} doesn't identify a process; ignored")
    if not recorded.same_process(identity(recorded.pid)):
        return ServiceStatus(name, recorded.pid, False, url, log,
                             note=f"pid {recorded.pid} in {pid_file} is no longer this service")
    return ServiceStatus(name, recorded.pid, True, url, log)


def port_holder(host: str, port: int) -> str | None:
    """Who holds ``host:port``, in words, or None when it is free to bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT isn't a holder
        try:
            sock.bind((host, port))
            return None
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"no interface has address {host}"
            if exc.errno != errno.EADDRINUSE:
                return f"it can't be bound ({exc.strerror})"
    holders = [found for pid in sorted(listening_pids(port)) if (found := identity(pid))]
    if not holders:
        return "another process (not visible to this user)"
    return "; ".join(f"pid {h.pid} ({' '.join(h.cmdline)[:120]})" for h in holders)


def _owns_port(pid: int, port: int) -> bool:
    """Whether a process of ``pid``'s process group (the session we started) listens on ``port``."""
    for listener in listening_pids(port):
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(listener) == pid:
                return True
    return False


def _log_tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace")[-1500:]
    return ""


def start_service(run_dir: Path, service: Service, *, listen_timeout_s: float = 120.0) -> ServiceStatus:
    """Start ``service`` unless it already runs; its output goes to its log.

    A service with ``listen`` is started only when that port is free, and returns once its own
    process group listens there; if it exits first or another process holds the port,
    :class:`ServiceError` / :class:`PortTaken` say so in one line.
    """
    current = service_status(run_dir, service.name)
    if current.running:
        return current
    if service.listen is not None:
        holder = port_holder(*service.listen)
        if holder is not None:
            host, port = service.listen
            raise PortTaken(f"can't start {service.name}: port {port} on {host} is held by {holder}; "
                            "stop it, or give ffwatt another port (see docs/production.md)")
    run_dir.mkdir(parents=True, exist_ok=True)
    pid_file, log = _paths(run_dir, service.name)
    with log.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(service.command)}\n".encode())
        out.flush()
        process = subprocess.Popen(service.command, env=service.env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=service.cwd, start_new_session=True)
    started = _settled_identity(process.pid)
    if started is None:  # exited before it could be looked at
        raise ServiceError(f"{service.name} exited at once; its log ({log}) ends:\n{_log_tail(log)}")
    pid_file.write_text(json.dumps({"pid": started.pid, "started_at": started.started_at,
                                    "cmdline": started.cmdline, "url": service.url}))
    if service.listen is not None:
        _wait_listening(process, service, log, listen_timeout_s)
    return ServiceStatus(service.name, process.pid, True, service.url, log)


def _wait_listening(process: subprocess.Popen[bytes], service: Service, log: Path, timeout_s: float) -> None:
    assert service.listen is not None
    host, port = service.listen
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _owns_port(process.pid, port):
            return
        if process.poll() is not None:
            holder = port_holder(host, port)
            why = f"port {port} on {host} is held by {holder}" if holder else f"it exited with {process.returncode}"
            raise ServiceError(f"{service.name} did not start: {why}; its log ({log}) ends:\n{_log_tail(log)}")
        time.sleep(0.2)
    stop_group(process.pid, timeout_s=5.0)
    raise ServiceError(f"{service.name} did not listen on {host}:{port} within {timeout_s:.0f} s; stopped it. "
                       f"Its log ({log}) ends:\n{_log_tail(log)}")


def stop_service(run_dir: Path, name: str, *, timeout_s: float = 20) -> bool:
    """Stop the service if it is still the process its pid file identifies; True if it ran.

    A stale pid file (the pid gone, or reused by another process) is removed and nothing is
    signalled.
    """
    status = service_status(run_dir, name)
    pid_file = _paths(run_dir, name)[0]
    if status.running and status.pid is not None:
        stop_group(status.pid, timeout_s=timeout_s)
    pid_file.unlink(missing_ok=True)
    return status.running
