"""``ffwatt stack up|status|down`` on free loopback ports: the store and alerting come up with
the rest, status shows them, down stops every process it started."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from ffwatt.fleet.services import service_status
from ffwatt.fleet.stack import SERVICES
from tests.conftest import ffwatt_cli, free_port
from tests.fleet import wait_for

pytestmark = pytest.mark.e2e


def test_stack_up_starts_the_store_and_alerting_and_status_shows_them(tmp_path: Path):
    ports = {name: free_port() for name in ("MASTER", "DISCOVERY", "STORE", "VMALERT", "ALERTMANAGER")}
    env = {**os.environ, "FFWATT_HOME": str(tmp_path / "home"), "FFWATT_RESULTS_DIR": str(tmp_path / "results"),
           "COLUMNS": "250", **{f"FFWATT_{name}_PORT": str(port) for name, port in ports.items()}}
    run_dir = tmp_path / "home" / "run"
    try:
        up = subprocess.run([ffwatt_cli(), "stack", "up"], env=env, capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        store = f"http://127.0.0.1:{ports['STORE']}"
        assert "metrics-store" in up.stdout and store in up.stdout

        def master_scraped() -> bool:
            targets = httpx.get(f"{store}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            return any(t["labels"]["exporter"] == "master" and t["health"] == "up" for t in targets)

        assert wait_for(master_scraped, 60)
        status = subprocess.run([ffwatt_cli(), "stack", "status"], env=env, capture_output=True, text=True,
                                timeout=120)
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"metrics store {store}: 1 targets up, 0 down" in status.stdout, status.stdout
        assert "firing alerts: none" in status.stdout, status.stdout
        rendered = (tmp_path / "home" / "monitoring" / "scrape.yml").read_text()
        assert f"http://127.0.0.1:{ports['DISCOVERY']}/targets" in rendered
    finally:
        down = subprocess.run([ffwatt_cli(), "stack", "down"], env=env, capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "vmalert, alertmanager, metrics-store, discovery" in down.stdout
    assert not any(service_status(run_dir, name).running for name in SERVICES)
