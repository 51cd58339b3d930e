"""The master's scrape-target discovery: every live node's exporters in Prometheus HTTP-SD format.

``GET /targets`` serves the groups (also written to ``stack/targets.json`` for
file_sd); ``GET /nodes`` the node records with whether each is online.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ffwatt.files import write_atomic
from ffwatt.fleet.nodes import NodeRecord, list_nodes, sd_targets

__all__ = ["serve_discovery"]


def serve_discovery(host: str, port: int, targets_file: Path) -> None:
    """Serve until interrupted."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path not in ("/targets", "/nodes"):
                self.send_error(404, "try /targets or /nodes")
                return
            try:
                records: list[NodeRecord] = list_nodes()
            except Exception as exc:  # noqa: BLE001 - the API restarting: say so, Prometheus keeps the last targets
                self.send_error(503, f"Prefect API unavailable: {exc}")
                return
            if path == "/targets":
                body = json.dumps(sd_targets(records)).encode()
                write_atomic(targets_file, lambda tmp: tmp.write_bytes(body))  # file_sd for other stores
            else:
                body = json.dumps([r.model_dump(mode="json") | {"online": r.online()} for r in records]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer((host, port), Handler).serve_forever()
