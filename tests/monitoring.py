"""Helpers for the monitoring tests: a synthetic sysfs for node_exporter, a RAPL counter that
advances like a busy CPU's, ffwatt services and node records as agents publish them, a store
client, and the master's monitoring services on free ports."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ffwatt.fleet.client import ensure_pools, work_pool
from ffwatt.fleet.nodes import NodeRecord, publish_node, worker_name
from ffwatt.fleet.services import Service, start_service, stop_service
from ffwatt.settings import REPO, Settings
from master.monitoring import MONITORING_SERVICES, monitoring_services
from testbed.fleet import wait_for
from testbed.powercap import make_zone, set_energy
from tests.conftest import ffwatt_cli, wait_http

DASHBOARDS = REPO / "infra" / "grafana" / "provisioning" / "dashboards"  # what Grafana provisions


def make_sysfs(root: Path) -> Path:
    """What node_exporter's hwmon, thermal_zone and cpufreq collectors read, for a machine (like
    this VM) whose /sys has none of it: one sensor, one zone, one CPU at 2.4 GHz."""
    hwmon = root / "class" / "hwmon" / "hwmon0"
    zone = root / "class" / "thermal" / "thermal_zone0"
    cpufreq = root / "devices" / "system" / "cpu" / "cpu0" / "cpufreq"
    files = {
        hwmon / "name": "coretemp", hwmon / "temp1_input": "47000", hwmon / "temp1_label": "Package id 0",
        zone / "type": "x86_pkg_temp", zone / "temp": "46000", zone / "policy": "step_wise",
        cpufreq / "scaling_cur_freq": "2400000", cpufreq / "cpuinfo_cur_freq": "2400000",
        cpufreq / "cpuinfo_max_freq": "3500000", cpufreq / "scaling_max_freq": "3500000",
        cpufreq / "cpuinfo_min_freq": "800000", cpufreq / "scaling_min_freq": "800000",
        cpufreq / "scaling_governor": "performance", cpufreq / "scaling_available_governors": "performance",
        cpufreq / "scaling_driver": "intel_pstate", cpufreq / "related_cpus": "0",
        cpufreq / "scaling_setspeed": "<unsupported>", cpufreq / "cpuinfo_transition_latency": "0",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


@contextlib.contextmanager
def drawing_package(root: Path, watts: float) -> Iterator[Path]:
    """A powercap tree with one package whose counter advances at ``watts`` while the context lasts."""
    package = make_zone(root, "intel-rapl:0", "package-0")
    stop = threading.Event()

    def advance() -> None:
        start = time.monotonic()
        while not stop.wait(0.05):
            set_energy(package, int((time.monotonic() - start) * watts * 1e6))

    thread = threading.Thread(target=advance, daemon=True)
    thread.start()
    try:
        yield root
    finally:
        stop.set()
        thread.join(5)


def ffwatt_service(run_dir: Path, name: str, args: list[str], env: dict[str, str]) -> None:
    """``ffwatt ARGS`` as a background service named ``name`` (stop it with ``stop_service``)."""
    start_service(run_dir, Service(name, [ffwatt_cli(), *args], env))


def start_discovery(run_dir: Path, settings: Settings, env: dict[str, str]) -> None:
    """The master's discovery service (scrape targets, node list, /metrics) on ``settings.discovery_port``."""
    ffwatt_service(run_dir, "discovery", ["stack", "discovery", "--listen", f"127.0.0.1:{settings.discovery_port}"],
                   {**env, "FFWATT_HOME": str(settings.home), "FFWATT_RESULTS_DIR": str(settings.results_dir)})
    wait_http(f"http://127.0.0.1:{settings.discovery_port}/targets", 60)  # /nodes wants the stack's credentials


# How often the Publisher's workers beat, as warm workers do.
HEARTBEAT_S = 2


@dataclass
class Publisher:
    """Plays the agents: writes each node's record once, then sends its workers' heartbeats (one
    worker per pool, every 2 s) as warm workers do, until a node is dropped."""

    env: dict[str, str]
    records: dict[str, NodeRecord] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            self.beat()

    def beat(self) -> None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            for record in list(self.records.values()):
                for pool in record.pools:
                    client.send_worker_heartbeat(work_pool(pool), worker_name(record.node, pool),
                                                 heartbeat_interval_seconds=HEARTBEAT_S)

    def add(self, node: str, pools: list[str], exporters: dict[str, str]) -> None:
        ensure_pools(self.env, pools)
        self.records[node] = NodeRecord(node=node, address="127.0.0.1", pools=pools, encoders=[],
                                        exporters=exporters, started_at=time.time())
        publish_node(self.records[node])
        self.beat()


class Store:
    """The Prometheus query API of a VictoriaMetrics."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        assert response.status_code == 200, (path, params, response.text)
        return response.json()["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", query=expr)["result"]  # type: ignore[no-any-return]

    def query_range(self, expr: str, start: float, end: float, step: str = "5s") -> list[dict[str, Any]]:
        return self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step)["result"]  # type: ignore[no-any-return]

    def label_values(self, label: str, match: str, start: float, end: float) -> list[str]:
        return self._get(f"/api/v1/label/{label}/values", **{"match[]": match, "start": start, "end": end})  # type: ignore[no-any-return]

    def targets(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/targets")["activeTargets"]  # type: ignore[no-any-return]


@contextlib.contextmanager
def monitoring(settings: Settings) -> Iterator[Store]:
    """The master's store, Alertmanager and vmalert as ``ffwatt stack up`` starts them; stopped after."""
    run_dir = settings.run_dir
    services = monitoring_services(settings)
    try:
        for service in services:
            start_service(run_dir, service)
            assert wait_for(lambda url=service.url: _healthy(url), 30, every_s=0.2), \
                f"{service.name} did not answer at {service.url}; see {run_dir / service.name}.log"
        yield Store(services[0].url)
    finally:
        for name in reversed(MONITORING_SERVICES):
            stop_service(run_dir, name)


def _healthy(url: str) -> bool:
    for path in ("/health", "/-/healthy"):  # VictoriaMetrics and vmalert; Alertmanager
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + path, timeout=1).status_code == 200:
                return True
    return False
