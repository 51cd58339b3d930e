"""Shared fixtures: isolated ffwatt state per test, real FFmpeg, and a real Prefect server.

The suite reaches hardware only through its seams, so it passes the same on this VM, on a
server with readable RAPL and on one with NVIDIA GPUs: every process it starts reads an
empty powercap tree (tests that need RAPL build a synthetic one), has GPU metering off and
sees no CUDA device (GPU tests replay NVML readings recorded on an H200). The real
hardware path is checked by ``python -m bench.gpu_check`` on a machine that has it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ffwatt.fleet.prefect_server import BIN, free_port
from ffwatt.hardware.ffmpeg import ffmpeg_path
from ffwatt.processes import stop_group
from ffwatt.settings import REPO, load_settings
from testbed.net import wait_http
from testbed.prefect_server import temporary_server

__all__ = ["BIN", "REPO", "ffwatt", "free_port", "stop_process_group", "wait_http"]


_SEAMS: list[Path] = []  # made when pytest starts, not when this module is imported


def pytest_configure(config: pytest.Config) -> None:
    seams = Path(tempfile.mkdtemp(prefix="ffwatt-test-seams-"))
    _SEAMS.append(seams)
    seams.chmod(0o755)  # processes the suite starts as another user read it too
    (seams / "powercap").mkdir()
    os.environ["FFWATT_POWERCAP_ROOT"] = str(seams / "powercap")
    os.environ["FFWATT_GPU"] = "false"
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # NVENC/NVDEC see no device, whatever the host has


def pytest_unconfigure(config: pytest.Config) -> None:
    for seams in _SEAMS:
        shutil.rmtree(seams, ignore_errors=True)


@pytest.fixture
def ffwatt_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point FFWATT_HOME and FFWATT_RESULTS_DIR at a fresh directory."""
    monkeypatch.setenv("FFWATT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FFWATT_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    return ffmpeg_path(load_settings())


def stop_process_group(process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """SIGTERM the group the test started, then SIGKILL whatever is left; reap its leader."""
    if process.poll() is None:
        stop_group(process.pid, timeout_s=timeout_s)
    process.wait()


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[dict[str, str]]:
    """A real ``prefect server start`` on loopback with its own SQLite database.

    Yields the environment a client needs to use it.
    """
    with temporary_server() as env:
        yield env


def ffwatt(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    """``ffwatt ARGS`` as a user types it, run in this process: the same entry point, error lines and
    exit codes as the installed command, without a new interpreter per call. ``env`` is laid over
    this process's environment for the call. Commands that start servers or flows are run as
    processes instead (:func:`ffwatt_cli`): Prefect reads its settings once per process."""
    from click.testing import CliRunner

    from cli.main import main

    code = 0
    with (contextlib.chdir(cwd or Path.cwd()),
          CliRunner().isolation(env={"COLUMNS": "200", **(env or {})}) as (stdout, stderr, _)):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = stdout.getvalue().decode(), stderr.getvalue().decode()
    return subprocess.CompletedProcess(["ffwatt", *args], code, out, err)


def ffwatt_cli() -> str:
    found = BIN / "ffwatt"
    return str(found) if found.exists() else shutil.which("ffwatt") or "ffwatt"
