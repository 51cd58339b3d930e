"""The master's discovery service: scrape targets, the master's own metrics, and an alert sink.

- ``GET /targets``: every live node's exporters in Prometheus HTTP-SD format (also
  written to ``stack/targets.json`` for file_sd), labelled ``node``, ``exporter``, ``pool``.
- ``GET /nodes``: the node records, with whether each is online (with the stack's credentials).
- ``GET /metrics``: each campaign's latest results per configuration
  (:mod:`exporters.results`) and the running batches' heartbeats (:mod:`exporters.batches`),
  each collector isolated as in the node exporters.
- ``POST /alerts``: Alertmanager's webhook receiver by default (with the stack's credentials,
  which the generated Alertmanager config sends); each notification is appended as one JSON
  line to ``stack/alerts.jsonl``, stamped ``received_at`` here, the file moved aside to
  ``alerts.jsonl.1`` past ``ALERTS_ROTATE_BYTES``.

The store asks for targets every 2 s and scrapes ``/metrics`` every second, and reading
the nodes pages through every node's record and every worker, 200 a call: so the node
list is read at most every ``NODES_MAX_AGE_S``, through one API client for the process,
and shared by all three.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

from exporters.control import ControlGuard, ControlHandler, Refused
from ffwatt.files import write_atomic
from ffwatt.fleet.cadence import Cadence, cadence_for, publish_cadence, read_cadence
from ffwatt.fleet.nodes import NodeRecord, list_nodes, sd_targets
from ffwatt.settings import Settings
from master.credentials import control_credentials

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

__all__ = ["CadenceKeeper", "NodeList", "discovery_server", "serve_discovery"]

log = logging.getLogger("ffwatt.discovery")
CADENCE_CHECK_S = 10.0  # the node list is read at least this often, so the cadence follows the fleet

NODES_MAX_AGE_S = 2.0  # a node is offline after three heartbeats (30 s by default): this is well inside it


class NodeList:
    """The fleet's node records, read through ``client`` at most every ``max_age_s``, whoever asks."""

    def __init__(self, client: SyncPrefectClient, *, max_age_s: float = NODES_MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic,
                 on_read: Callable[[list[NodeRecord]], None] | None = None) -> None:
        self._client = client
        self._on_read = on_read
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._records: list[NodeRecord] = []
        self._read_at: float | None = None

    def __call__(self) -> list[NodeRecord]:
        with self._lock:
            if self._read_at is None or self._clock() - self._read_at >= self._max_age_s:
                self._records = list_nodes(self._client)  # raises while the API is away: nothing stale is kept
                self._read_at = self._clock()
                if self._on_read is not None:
                    self._on_read(self._records)
            return self._records


class CadenceKeeper:
    """Publishes the fleet's cadence (:mod:`ffwatt.fleet.cadence`) for the nodes registered, when it changes."""

    def __init__(self, client: SyncPrefectClient, *, budget_rps: float, heartbeat_s: int, poll_s: float) -> None:
        self._client = client
        self._budget_rps, self._heartbeat_s, self._poll_s = budget_rps, heartbeat_s, poll_s
        self._published: Cadence | None = None

    def __call__(self, records: list[NodeRecord]) -> None:
        cadence = cadence_for(sum(len(r.pools) for r in records), len(records), budget_rps=self._budget_rps,
                              heartbeat_s=self._heartbeat_s, poll_s=self._poll_s)
        try:
            if self._published is None:
                self._published = read_cadence(self._client)
            if cadence != self._published:
                publish_cadence(self._client, cadence)
                self._published = cadence
                log.info("the fleet's cadence for %d nodes: beat every %d s, poll every %g s (within %g calls/s)",
                         len(records), cadence.heartbeat_s, cadence.poll_s, cadence.budget_rps)
        except Exception as exc:  # noqa: BLE001 - the API away: the node list failed too, or will; try next read
            log.warning("can't publish the fleet's cadence: %s", exc)


ALERT_MAX_BYTES = 1 << 20  # one notification; Alertmanager's are a few KiB
# alerts.jsonl is moved aside to alerts.jsonl.1 (the one before is dropped) when a line would take it past
# this: a flapping alert can't fill the master's disk.
ALERTS_ROTATE_BYTES = 16 << 20


def serve_discovery(host: str, port: int, settings: Settings) -> None:
    """Serve until interrupted, state under ``FFWATT_HOME/stack``, control endpoints behind the
    stack's credentials (:func:`master.credentials.control_credentials`)."""
    from prefect.client.orchestration import get_client

    credentials = control_credentials(settings)
    with get_client(sync_client=True) as client:
        keeper = CadenceKeeper(client, budget_rps=settings.fleet_api_budget_rps,
                               heartbeat_s=settings.worker_heartbeat_s, poll_s=settings.worker_poll_s)
        nodes = NodeList(client, on_read=keeper)

        def keep_reading() -> None:  # the cadence follows the fleet even when no store asks for targets
            while True:
                with contextlib.suppress(Exception):
                    nodes()
                time.sleep(CADENCE_CHECK_S)

        server = discovery_server(host, port, settings.stack_dir, settings.results_dir, client,
                                  credentials=credentials, nodes=nodes)
        threading.Thread(target=keep_reading, name="cadence", daemon=True).start()
        server.serve_forever()


def _append_alert(path: Path, line: str, rotate_bytes: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size + len(line.encode()) > rotate_bytes:
            os.replace(path, path.with_name(path.name + ".1"))
    with path.open("a") as out:
        out.write(line)


def discovery_server(host: str, port: int, state_dir: Path, results_dir: Path, client: SyncPrefectClient, *,
                     credentials: str | None, alerts_rotate_bytes: int = ALERTS_ROTATE_BYTES,
                     nodes: NodeList | None = None) -> ThreadingHTTPServer:
    """The discovery service, bound and not yet serving (``serve_forever`` it)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    from exporters._collector import CollectorSet
    from exporters.batches import BatchCollector
    from exporters.results import ResultsCollector

    node_list = nodes or NodeList(client)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CollectorSet([ResultsCollector(results_dir), BatchCollector(client, node_list)]))
    scrape_lock = threading.Lock()  # the results cache is one per process
    alerts_lock = threading.Lock()

    class Handler(ControlHandler):
        guard = ControlGuard(credentials, max_body_bytes=ALERT_MAX_BYTES)

        def _reply(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/metrics":
                with scrape_lock:
                    body = generate_latest(registry)
                self._reply(body, "text/plain; version=0.0.4; charset=utf-8")
                return
            if path not in ("/targets", "/nodes"):
                self.refuse(Refused(404, "try /targets, /nodes or /metrics"))
                return
            try:
                if path == "/nodes":  # the records name every node's address and queue: callers with credentials
                    self.guarded()
                records = node_list()
            except Refused as refused:
                self.refuse(refused)
                return
            except Exception as exc:  # noqa: BLE001 - the API restarting: say so, Prometheus keeps the last targets
                self.refuse(Refused(503, f"Prefect API unavailable: {exc}"))
                return
            if path == "/targets":
                body = json.dumps(sd_targets(records)).encode()
                write_atomic(state_dir / "targets.json", lambda tmp: tmp.write_bytes(body))  # file_sd for others
            else:
                body = json.dumps([r.model_dump(mode="json") | {"online": r.online()} for r in records]).encode()
            self._reply(body, "application/json")

        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/alerts":
                self.refuse(Refused(404, "POST alerts to /alerts"))
                return
            try:
                self.guarded()
                notification = self.json_body(required=True)
                if not isinstance(notification.get("alerts"), list):
                    raise Refused(400, "expected an Alertmanager notification: an object with a list of alerts")
            except Refused as refused:
                self.refuse(refused)
                return
            # Stamped here, after the caller's fields: when it arrived is this server's to say.
            line = json.dumps({**notification, "received_at": time.time()}) + "\n"
            with alerts_lock:
                _append_alert(state_dir / "alerts.jsonl", line, alerts_rotate_bytes)
            self.send_json(200, {})

    state_dir.mkdir(parents=True, exist_ok=True)
    return ThreadingHTTPServer((host, port), Handler)
