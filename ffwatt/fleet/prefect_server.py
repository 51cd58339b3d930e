"""Starting a Prefect server: the one launcher the stack, the tests and the benches use (their throwaway
server is :func:`testbed.prefect_server.temporary_server`)."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

__all__ = ["BIN", "PREFECT_ENV", "free_port", "server_command", "server_env", "wait_healthy"]

BIN = Path(sys.executable).parent
# What every Prefect process ffwatt starts (server, workers, flows, the CLI's runs) has in its
# environment: no phoning home, and FFmpeg's text logged verbatim (rich reads "0:v:0" as an emoji).
PREFECT_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS": "ffwatt.fleet.prefect_console.VerbatimConsoleHandler",
}


def server_command(host: str, port: int) -> list[str]:
    return [str(BIN / "prefect"), "server", "start", "--host", host, "--port", str(port)]


def server_env(home: Path, *, ui: bool = True, **extra: str) -> dict[str, str]:
    """The server's environment: its own PREFECT_HOME (database, logs), no phoning home."""
    return {**os.environ, **PREFECT_ENV, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "true" if ui else "false",
            **extra}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_healthy(api_url: str, timeout_s: float, alive: Callable[[], bool]) -> bool:
    """Whether ``api_url/health`` answered 200 within ``timeout_s`` while ``alive()`` held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api_url}/health", timeout=2, verify=False).status_code == 200:
                return True
        if not alive():
            return False
        time.sleep(0.3)
    return False
