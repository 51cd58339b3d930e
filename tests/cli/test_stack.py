"""``ffwatt stack up|status|down`` on free loopback ports: the store, alerting and the RTMP ingest
come up with the rest, status shows them, the store scrapes the ingest's streams, down stops every
process it started."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from ffwatt.fleet.services import service_status
from master.stack import SERVICES
from testbed.fleet import wait_for
from testbed.net import free_ports_env
from tests.conftest import ffwatt_cli

pytestmark = pytest.mark.e2e


def test_stack_up_starts_the_store_alerting_and_ingest_and_status_shows_them(tmp_path: Path, ffmpeg: str):
    ports = free_ports_env()
    env = {**os.environ, "FFWATT_HOME": str(tmp_path / "home"), "FFWATT_RESULTS_DIR": str(tmp_path / "results"),
           "COLUMNS": "250", **ports}
    run_dir = tmp_path / "home" / "run"
    try:
        up = subprocess.run([ffwatt_cli(), "stack", "up"], env=env, capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        store = f"http://127.0.0.1:{ports['FFWATT_STORE_PORT']}"
        assert "metrics-store" in up.stdout and store in up.stdout

        def scraped() -> bool:
            targets = httpx.get(f"{store}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            return {t["labels"]["exporter"] for t in targets if t["health"] == "up"} == {"master", "rtmp"}

        assert wait_for(scraped, 60)
        # A stream published to the stack's ingest reaches the store through the RTMP exporter.
        publisher = subprocess.Popen([ffmpeg, "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
                                      "testsrc2=size=320x240:rate=25", "-t", "20", "-c:v", "libx264", "-preset",
                                      "ultrafast", "-f", "flv", f"rtmp://127.0.0.1:{ports['FFWATT_RTMP_PORT']}/live/check"],
                                     start_new_session=True)
        try:
            def stream_bytes() -> float:
                result = httpx.get(f"{store}/api/v1/query", timeout=5, params={
                    "query": 'ffwatt_rtmp_stream_received_bytes_total{stream="check", exporter="rtmp"}'}).json()
                return sum(float(r["value"][1]) for r in result["data"]["result"])

            assert wait_for(stream_bytes, 30)
        finally:
            os.killpg(publisher.pid, signal.SIGKILL)
            publisher.wait()
        status = subprocess.run([ffwatt_cli(), "stack", "status"], env=env, capture_output=True, text=True,
                                timeout=120)
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"metrics store {store}: 2 targets up, 0 down" in status.stdout, status.stdout
        assert f"rtmp://127.0.0.1:{ports['FFWATT_RTMP_PORT']}/live" in status.stdout, status.stdout
        assert "firing alerts: none" in status.stdout, status.stdout
        rendered = (tmp_path / "home" / "monitoring" / "scrape.yml").read_text()
        assert f"http://127.0.0.1:{ports['FFWATT_DISCOVERY_PORT']}/targets" in rendered
    finally:
        down = subprocess.run([ffwatt_cli(), "stack", "down"], env=env, capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "rtmp-exporter, rtmp-ingest, vmalert, alertmanager, metrics-store, discovery" in down.stdout
    assert not any(service_status(run_dir, name).running for name in SERVICES)
