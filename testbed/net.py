"""Ports for what a test or bench starts, and waiting for it to answer."""

from __future__ import annotations

import subprocess
import time

import httpx

from ffwatt.fleet.prefect_server import free_port
from ffwatt.ports import PORTS

__all__ = ["free_ports_env", "wait_http"]


def wait_http(url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Return once ``url`` answers 200; raise when ``timeout_s`` passes or ``process`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def free_ports_env() -> dict[str, str]:
    """``FFWATT_*_PORT`` for every service ffwatt runs on a master or a node, each on a distinct free
    port: a stack or agent a test starts can't meet a demo (or another suite) running on the defaults."""
    settings = [port.setting for port in PORTS.values() if port.setting.startswith("FFWATT_")]
    numbers: set[int] = set()
    while len(numbers) < len(settings):  # free_port can give a number twice: it is free until someone binds it
        numbers.add(free_port())
    return dict(zip(settings, (str(n) for n in sorted(numbers)), strict=True))
