"""``ffwatt agent start``: make this machine a worker node of a master.

It probes the node, creates the work pools it can serve, starts the local
exporters and node_exporter, and one Prefect process worker per pool (each running one flow run at a
time; a node-wide lock in the batch flow keeps measured jobs one at a time even
across pools), and publishes the node's record (pools, encoders, exporter
targets) every few seconds so the master sees it live. It survives the master
restarting: workers and heartbeats retry until the API answers again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

from agent.probe import NodeProbe, probe_node
from ffwatt.errors import ServiceError
from ffwatt.fleet.monitoring import MonitoringError, node_exporter_service
from ffwatt.fleet.nodes import NodeRecord, forget_node, publish_node
from ffwatt.fleet.prefect_server import BIN, PREFECT_ENV
from ffwatt.fleet.services import Service, service_status, start_service, stop_service
from ffwatt.fleet.stack import ensure_pools
from ffwatt.ports import EXPORTER_PORTS
from ffwatt.settings import REPO, Settings

__all__ = ["run_agent"]

log = logging.getLogger("ffwatt.agent")
HEARTBEAT_S = 5.0


def _worker_name(pool: str) -> str:
    return f"worker-{pool}"


def run_agent(settings: Settings, *, master_env: dict[str, str], address: str,
              stop: threading.Event, exporter_ports: dict[str, int] | None = None,
              probe: NodeProbe | None = None) -> None:
    """Serve this node until ``stop`` is set; then stop what it started and deregister."""
    probe = probe or probe_node(settings)
    if not probe.pools:
        raise ServiceError(f"node {settings.node} has no working encoder; see `ffwatt agent probe`")
    env = {**os.environ, **PREFECT_ENV, **master_env, "FFWATT_HOME": str(settings.home),
           "FFWATT_NODE": settings.node, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    ensure_pools(env, probe.pools)
    run_dir = settings.home / "run"
    ports = exporter_ports or EXPORTER_PORTS
    exporters = {}
    try:  # whatever fails to start, what did start is stopped again
        for kind, port in ports.items():
            start_service(run_dir, Service(f"exporter-{kind}", [str(BIN / "ffwatt"), "exporter", kind,
                                                                "--listen", f"{address}:{port}"], env,
                                           listen=(address, port)))
            exporters[kind] = f"{address}:{port}"
        try:
            node_exporter = node_exporter_service(address, settings.node_exporter_port)
        except MonitoringError as exc:  # ffwatt's own readings don't need it: serve without
            log.warning("%s; this node's CPU frequency and temperatures won't be in the store", exc)
        else:
            start_service(run_dir, node_exporter)
            exporters["node"] = f"{address}:{settings.node_exporter_port}"
        for pool in probe.pools:
            start_service(run_dir, Service(_worker_name(pool), [
                str(BIN / "prefect"), "worker", "start", "--pool", f"ffwatt-{pool}", "--type", "process",
                "--name", f"{settings.node}-{pool}", "--limit", "1"], env, cwd=REPO))
        log.info("node %s serving pools %s; exporters %s", settings.node, ", ".join(probe.pools), exporters)
        started = time.time()
        for key, value in master_env.items():  # the heartbeat below talks to the master's API
            os.environ[key] = value
        while not stop.is_set():
            live_pools = [p for p in probe.pools if service_status(run_dir, _worker_name(p)).running]
            record = NodeRecord(node=settings.node, address=address, pools=live_pools,
                                encoders=probe.working_encoders, exporters=exporters,
                                heartbeat_at=time.time(), started_at=started)
            try:
                publish_node(record)
            except Exception as exc:  # noqa: BLE001 - the master restarting: keep serving, publish again soon
                log.warning("can't reach the master (%s); retrying", exc)
            stop.wait(HEARTBEAT_S)
    finally:
        for pool in probe.pools:
            stop_service(run_dir, _worker_name(pool))
        for kind in ports:
            stop_service(run_dir, f"exporter-{kind}")
        stop_service(run_dir, "node-exporter")
        with contextlib.suppress(Exception):
            forget_node(settings.node)


