"""``ffwatt agent start``: make this machine a worker node of a master.

It probes the node, creates the work pools it can serve and its own work queue in
each, starts the local exporters and node_exporter, and serves one warm worker per
pool in this process (:mod:`agent.warm`: flow runs start without a new
Python; each worker runs one at a time, and a node-wide lock in the batch flow keeps
measured jobs one at a time across pools). Its record (pools, encoders, exporter
targets, queue, wake-up address) is written once and again only when it changes;
whether the node is alive is its workers' own heartbeats. ``POST /wake`` on the
agent's port makes the workers poll at once: the master's dispatcher calls it after
sending this node a batch. It survives the master restarting: workers and the
record retry until the API answers again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from agent.probe import NodeProbe, probe_node
from ffwatt.errors import MonitoringError, ServiceError
from ffwatt.fleet.client import ensure_pools
from ffwatt.fleet.nodes import NodeRecord, forget_node, node_queue, publish_node, variable_name
from ffwatt.fleet.prefect_server import BIN, PREFECT_ENV
from ffwatt.fleet.services import Service, port_holder, program, start_service, stop_service
from ffwatt.settings import Settings

__all__ = ["node_exporter_service", "run_agent"]

log = logging.getLogger("ffwatt.agent")
RECORD_CHECK_S = 60.0  # how often the agent makes sure the master still has its record
NODE_EXPORTER_COLLECTORS = ("cpu", "cpufreq", "meminfo", "hwmon", "thermal_zone", "netdev", "diskstats", "pressure")


def node_exporter_service(address: str, port: int, *, sysfs: Path | None = None) -> Service:
    """node_exporter on ``address:port`` with only :data:`NODE_EXPORTER_COLLECTORS`
    (``sysfs``: another root than ``/sys``, as tests give it)."""
    command = [program("prometheus-node-exporter", "prometheus-node-exporter"),
               f"--web.listen-address={address}:{port}", "--collector.disable-defaults",
               *(f"--collector.{name}" for name in NODE_EXPORTER_COLLECTORS)]
    if sysfs is not None:
        command.append(f"--path.sysfs={sysfs}")
    return Service("node-exporter", command, {}, url=f"http://{address}:{port}/metrics", listen=(address, port))


def _wake_server(address: str, port: int, wake: Callable[[], None]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/wake":
                self.send_error(404, "POST /wake")
                return
            wake()
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    try:
        server = ThreadingHTTPServer((address, port), Handler)
    except OSError as exc:
        holder = port_holder(address, port)
        raise ServiceError(f"the agent can't listen on {address}:{port} for wake-ups: "
                           f"{f'held by {holder}' if holder else exc.strerror}; set FFWATT_AGENT_PORT") from exc
    threading.Thread(target=server.serve_forever, name="wake-server", daemon=True).start()
    return server


def _keep_record(record: NodeRecord) -> None:
    """Write the record unless the master already has it as it is (after a restart with an empty
    database, say, it hasn't)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        current = client.read_variable_by_name(variable_name(record.node))
    if current is None or current.value != record.model_dump(mode="json", exclude={"heartbeat_at", "timeout_s"}):
        publish_node(record)


def run_agent(settings: Settings, *, master_env: dict[str, str], address: str, stop: threading.Event,
              probe: NodeProbe | None = None) -> None:
    """Serve this node until ``stop`` is set; then stop what it started and deregister."""
    probe = probe or probe_node(settings)
    if not probe.pools:
        raise ServiceError(f"node {settings.node} has no working encoder; see `ffwatt agent probe`")
    # This process talks to the master too (its workers, its record): before Prefect is imported.
    os.environ.update({**PREFECT_ENV, **master_env})
    env = {**os.environ, "FFWATT_HOME": str(settings.home), "FFWATT_NODE": settings.node}
    ensure_pools(env, probe.pools, queue=node_queue(settings.node))
    run_dir = settings.run_dir
    ports = settings.exporter_ports
    exporters: dict[str, str] = {}
    workers: threading.Thread | None = None
    wake_server: ThreadingHTTPServer | None = None
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

        from agent.warm import run_warm_workers

        wakers: list[Callable[[], None]] = []
        ready = threading.Event()

        def wake_ready(wake: Callable[[], None]) -> None:
            wakers.append(wake)
            ready.set()

        workers = threading.Thread(target=run_warm_workers, name="workers", daemon=True, args=(probe.pools,), kwargs={
            "node": settings.node, "queue": node_queue(settings.node), "limit": 1,
            "query_s": settings.worker_poll_s, "heartbeat_s": settings.worker_heartbeat_s, "stop": stop,
            "on_wake_ready": wake_ready})
        workers.start()
        ready.wait(60)
        def wake_all() -> None:
            for wake in wakers:
                wake()

        wake_server = _wake_server(address, settings.agent_port, wake_all)
        record = NodeRecord(node=settings.node, address=address, pools=probe.pools,
                            encoders=probe.working_encoders, exporters=exporters, started_at=time.time(),
                            queue=node_queue(settings.node), wake_url=f"http://{address}:{settings.agent_port}/wake")
        log.info("node %s serving pools %s; exporters %s", settings.node, ", ".join(probe.pools), exporters)
        while not stop.is_set():
            if not workers.is_alive():
                raise ServiceError(f"the workers of node {settings.node} stopped; see the log above")
            try:
                _keep_record(record)
            except Exception as exc:  # noqa: BLE001 - the master restarting: keep serving, try again soon
                log.warning("can't reach the master (%s); retrying", exc)
                stop.wait(5)
                continue
            stop.wait(RECORD_CHECK_S)
    finally:
        stop.set()
        if wake_server is not None:
            wake_server.shutdown()
        if workers is not None:
            workers.join(30)
        for kind in ports:
            stop_service(run_dir, f"exporter-{kind}")
        stop_service(run_dir, "node-exporter")
        with contextlib.suppress(Exception):
            forget_node(settings.node)
