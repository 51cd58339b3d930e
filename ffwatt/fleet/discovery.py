"""The master's discovery service: scrape targets, the master's own metrics, and an alert sink.

- ``GET /targets``: every live node's exporters in Prometheus HTTP-SD format (also
  written to ``stack/targets.json`` for file_sd), labelled ``node``, ``exporter``, ``pool``.
- ``GET /nodes``: the node records, with whether each is online.
- ``GET /metrics``: each campaign's latest results per configuration
  (:mod:`exporters.results`) and the running batches' heartbeats (:mod:`exporters.batches`),
  each collector isolated as in the node exporters.
- ``POST /alerts``: Alertmanager's webhook receiver by default; each notification is
  appended as one JSON line to ``stack/alerts.jsonl``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ffwatt.files import write_atomic
from ffwatt.fleet.nodes import NodeRecord, list_nodes, sd_targets

__all__ = ["serve_discovery"]

_MAX_ALERT_BYTES = 1 << 20


def serve_discovery(host: str, port: int, state_dir: Path, results_dir: Path) -> None:
    """Serve until interrupted; ``state_dir`` is ``FFWATT_HOME/stack``."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    from exporters._collector import CollectorSet
    from exporters.batches import BatchCollector
    from exporters.results import ResultsCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(CollectorSet([ResultsCollector(results_dir), BatchCollector()]))
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
                records: list[NodeRecord] = list_nodes()
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

    state_dir.mkdir(parents=True, exist_ok=True)
    ThreadingHTTPServer((host, port), Handler).serve_forever()
