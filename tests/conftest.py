"""Shared fixtures: isolated ffwatt state per test, real FFmpeg, and a real Prefect server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ffwatt.ffmpeg import ffmpeg_path
from ffwatt.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture
def ffwatt_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point FFWATT_HOME and FFWATT_RESULTS_DIR at a fresh directory."""
    monkeypatch.setenv("FFWATT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FFWATT_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    return ffmpeg_path(load_settings())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
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


def stop_process_group(process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """SIGTERM the group, then SIGKILL whatever is left."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real ``prefect server start`` on loopback with its own SQLite database.

    Yields the environment a client needs to use it.
    """
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    }
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_http(f"{url}/health", 120, process)
        yield {"PREFECT_HOME": str(home), "PREFECT_API_URL": url,
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    finally:
        stop_process_group(process)
        log.close()


def ffwatt_cli() -> str:
    found = BIN / "ffwatt"
    return str(found) if found.exists() else shutil.which("ffwatt") or "ffwatt"
