"""The store's admin API and Alertmanager's silences answer loopback callers only, whatever
FFWATT_MASTER_HOST is: the real store, Alertmanager, vmalert and gate (nginx) as `ffwatt stack up`
starts them, on this machine's non-loopback address, called from that address and from loopback."""

from __future__ import annotations

import ipaddress
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import pytest

from ffwatt.settings import Settings
from master.monitoring import gated
from tests.conftest import free_port
from tests.monitoring import monitoring


def _outside_address() -> str | None:
    """An IPv4 address of this machine that isn't loopback: the master's FFWATT_MASTER_HOST here."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not ipaddress.ip_address(address.address).is_loopback:
                return address.address
    return None


def test_only_a_master_host_past_loopback_puts_the_store_behind_the_gate():
    assert not gated(Settings(master_host="127.0.0.1")) and not gated(Settings(master_host="localhost"))
    assert not gated(Settings(master_host="::1"))
    assert gated(Settings(master_host="0.0.0.0")) and gated(Settings(master_host="10.1.2.3"))
    assert gated(Settings(master_host="master.example"))


@pytest.mark.e2e  # VictoriaMetrics, Alertmanager, vmalert, nginx
def test_delete_series_and_silences_answer_loopback_only(tmp_path: Path):
    outside = _outside_address()
    if outside is None:
        pytest.skip("this machine has no address but loopback")
    settings = Settings(home=tmp_path / "master", master_host=outside, store_port=free_port(),
                        store_loopback_port=free_port(), alertmanager_port=free_port(),
                        alertmanager_loopback_port=free_port(), vmalert_port=free_port(),
                        discovery_port=free_port(), rtmp_exporter_port=free_port())
    store, store_own = f"http://{outside}:{settings.store_port}", f"http://127.0.0.1:{settings.store_loopback_port}"
    am, am_own = (f"http://{outside}:{settings.alertmanager_port}",
                  f"http://127.0.0.1:{settings.alertmanager_loopback_port}")
    now = datetime.now(UTC)
    silence = {"matchers": [{"name": "alertname", "value": "X", "isRegex": False, "isEqual": True}],
               "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat(),
               "createdBy": "test", "comment": "gate"}
    delete = "/api/v1/admin/tsdb/delete_series?match[]=up"
    with monitoring(settings):
        # Through the gate, from this machine's outside address: reads pass, changes don't.
        assert httpx.get(f"{store}/api/v1/query", params={"query": "1"}).status_code == 200
        assert httpx.post(f"{store}{delete}").status_code == 403
        assert httpx.post(f"{store}/{delete}").status_code == 403  # a doubled slash is the same path
        assert httpx.get(f"{am}/api/v2/status").status_code == 200
        assert httpx.post(f"{am}/api/v2/silences", json=silence).status_code == 403
        assert httpx.get(f"{am}/api/v2/silences").status_code == 403
        # The services themselves listen on loopback only.
        with pytest.raises(httpx.ConnectError):
            httpx.post(f"http://{outside}:{settings.store_loopback_port}{delete}")
        # On loopback, the master's own callers may.
        assert httpx.post(f"{store_own}{delete}").status_code == 204
        created = httpx.post(f"{am_own}/api/v2/silences", json=silence)
        assert created.status_code == 200 and created.json()["silenceID"]
