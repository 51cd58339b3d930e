"""The master's discovery service: scrape targets, the master's own metrics, and an alert sink.

- ``GET /targets``: every live node's exporters in Prometheus HTTP-SD format (also
  written to ``stack/targets.json`` for file_sd), labelled ``node``, ``exporter``, ``pool``.
- ``GET /nodes``: the node records, with whether each is online.
- ``GET /metrics``: each campaign's latest results per configuration
  (:mod:`exporters.results`) and the running batches' heartbeats (:mod:`exporters.batches`),
  each collector isolated as in the node exporters.
- ``POST /alerts``: Alertmanager's webhook receiver by default; each notification is
  appended as one JSON line to ``stack/alerts.jsonl``.

The store asks for targets every 2 s and scrapes ``/metrics`` every second, and reading
the nodes pages through every node's record and every worker, 200 a call: so the node
list is read at most every ``NODES_MAX_AGE_S``, through one API client for the process,
and shared by all three.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

from ffwatt.files import write_atomic
from ffwatt.fleet.cadence import Cadence, cadence_for, publish_cadence, read_cadence
from ffwatt.fleet.nodes import NodeRecord, list_nodes, sd_targets

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from ffwatt.settings import Settings

__all__ = ["CadenceKeeper", "NodeList", "serve_discovery"]

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


_MAX_ALERT_BYTES = 1 << 20


def serve_discovery(host: str, port: int, state_dir: Path, results_dir: Path, settings: Settings) -> None:
    """Serve until interrupted; ``state_dir`` is ``FFWATT_HOME/stack``."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        keeper = CadenceKeeper(client, budget_rps=settings.fleet_api_budget_rps,
                               heartbeat_s=settings.worker_heartbeat_s, poll_s=settings.worker_poll_s)
        _serve(host, port, state_dir, results_dir, client, NodeList(client, on_read=keeper))


def _serve(host: str, port: int, state_dir: Path, results_dir: Path, client: SyncPrefectClient,
           nodes: NodeList) -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    from exporters._collector import CollectorSet
    from exporters.batches import BatchCollector
    from exporters.results import ResultsCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(CollectorSet([ResultsCollector(results_dir), BatchCollector(client, nodes)]))
    scrape_lock = threading.Lock()  # the results cache is one per process
    alerts_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
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
                self.send_error(404, "try /targets, /nodes or /metrics")
                return
            try:
                records = nodes()
            except Exception as exc:  # noqa: BLE001 - the API restarting: say so, Prometheus keeps the last targets
                self.send_error(503, f"Prefect API unavailable: {exc}")
                return
            if path == "/targets":
                body = json.dumps(sd_targets(records)).encode()
                write_atomic(state_dir / "targets.json", lambda tmp: tmp.write_bytes(body))  # file_sd for others
            else:
                body = json.dumps([r.model_dump(mode="json") | {"online": r.online()} for r in records]).encode()
            self._reply(body, "application/json")

        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/alerts":
                self.send_error(404, "POST alerts to /alerts")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= _MAX_ALERT_BYTES:
                self.send_error(400, f"expected a JSON body of at most {_MAX_ALERT_BYTES} bytes")
                return
            try:
                notification = json.loads(self.rfile.read(length))
            except ValueError as exc:
                self.send_error(400, f"not JSON: {exc}")
                return
            line = json.dumps({"received_at": time.time(), **notification}) + "\n"
            with alerts_lock, (state_dir / "alerts.jsonl").open("a") as out:
                out.write(line)
            self._reply(b"{}", "application/json")

        def log_message(self, format: str, *args: object) -> None:
            pass

    def keep_reading() -> None:  # the cadence follows the fleet even when no store asks for targets
        while True:
            with contextlib.suppress(Exception):
                nodes()
            time.sleep(CADENCE_CHECK_S)

    state_dir.mkdir(parents=True, exist_ok=True)
    threading.Thread(target=keep_reading, name="cadence", daemon=True).start()
    ThreadingHTTPServer((host, port), Handler).serve_forever()
