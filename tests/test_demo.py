"""`ffwatt demo` itself, as `make demo` runs it: the master stack, an agent for this machine and the
quick campaign through `prefect deployment run`, here on ports that aren't the defaults and in a home
of its own; then `ffwatt demo --stop` (`make down`), which must leave nothing of it running."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ffwatt.results import list_runs, read_results
from testbed.net import free_ports_env
from tests.conftest import ffwatt_cli

pytestmark = pytest.mark.e2e

FFWATT = ffwatt_cli()


def _processes_of(home: Path) -> list[str]:
    """Command lines of the processes started with this ``FFWATT_HOME`` (or a home under it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone, or not ours to read
            continue
        if any(v == f"FFWATT_HOME={home}".encode() or v.startswith(f"FFWATT_HOME={home}/".encode())
               for v in environ):
            found.append(f"{proc.name}: {command}")
    return found


def test_the_demo_runs_the_quick_campaign_through_the_stack_and_stops_it_all(tmp_path: Path):
    home, results = tmp_path / "home", tmp_path / "results"
    ports = free_ports_env()
    env = {**os.environ, "FFWATT_HOME": str(home), "FFWATT_RESULTS_DIR": str(results), **ports}
    try:
        demo = subprocess.run([FFWATT, "demo"], env=env, capture_output=True, text=True, timeout=900)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    finally:
        stop = subprocess.run([FFWATT, "demo", "--stop"], env=env, capture_output=True, text=True, timeout=300)
    assert stop.returncode == 0 and "agent" in stop.stdout, stop.stdout + stop.stderr
    assert _processes_of(home) == []

    assert "through the deployed stack" in demo.stdout
    [run] = list_runs(results)
    summary = run.summary
    assert run.campaign == "quick" and summary is not None and summary.state == "complete" and summary.failed == 0
    rows = read_results(results, run_id=run.run_id)
    assert len(rows) == summary.jobs > 0 and (rows.status == "ok").all()
    assert (rows.series_source == "store").all() and (rows.series_samples > 0).all()
    assert f"Prefect UI: http://127.0.0.1:{ports['FFWATT_MASTER_PORT']}" in demo.stdout.replace("\n", "")
    report = next(line.split(":", 1)[1].strip() for line in demo.stdout.splitlines() if line.startswith("report:"))
    assert Path(report).is_file() and Path(report).stat().st_size > 0


def test_the_demo_fails_when_another_agent_serves_its_node_and_leaves_that_agent_alone(tmp_path: Path):
    """An agent started by hand serves this machine's node: the demo's own can't serve beside it. The demo
    must say so, not run on the other agent and call it a success; `make down` must leave that agent
    running, and say it does."""
    import signal

    from ffwatt.fleet.services import service_status

    home, results = tmp_path / "home", tmp_path / "results"
    ports = free_ports_env()
    env = {**os.environ, "FFWATT_HOME": str(home), "FFWATT_RESULTS_DIR": str(results), **ports}
    by_hand = None
    try:
        up = subprocess.run([FFWATT, "stack", "up"], env=env, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        api = f"http://127.0.0.1:{ports['FFWATT_MASTER_PORT']}/api"
        with (tmp_path / "by-hand.log").open("wb") as log:
            by_hand = subprocess.Popen([FFWATT, "agent", "start", "--master", api, "--auth-string",
                                        (home / "stack" / "auth").read_text()], env=env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        exporter = home / "run"
        for _ in range(240):
            if service_status(exporter, "exporter-cpu").running or by_hand.poll() is not None:
                break
            time.sleep(0.5)
        assert service_status(exporter, "exporter-cpu").running, (tmp_path / "by-hand.log").read_text()[-3000:]
        demo = subprocess.run([FFWATT, "demo"], env=env, capture_output=True, text=True, timeout=600)
        stop = subprocess.run([FFWATT, "demo", "--stop"], env=env, capture_output=True, text=True, timeout=300)
        assert by_hand.poll() is None and service_status(exporter, "exporter-cpu").running
    finally:
        if by_hand is not None and by_hand.poll() is None:
            os.killpg(by_hand.pid, signal.SIGTERM)  # the session this test started
            by_hand.wait(60)
        subprocess.run([FFWATT, "demo", "--stop"], env=env, capture_output=True, text=True, timeout=300)
    assert demo.returncode != 0 and "Traceback" not in demo.stderr, demo.stdout[-3000:]
    error = " ".join(demo.stderr.split())
    assert (f"error: the demo's agent exited: error: node {socket.gethostname()} is already served by another "
            f"agent (pid {by_hand.pid} on this machine)") in error
    assert not list_runs(results)  # no campaign ran on someone else's agent
    assert stop.returncode == 0
    said = " ".join(stop.stdout.split())
    assert (f"still running: the agent of node {socket.gethostname()} (pid {by_hand.pid} on this machine), "
            "not started by the demo") in said
    assert _processes_of(home) == []
