"""A BMC's Redfish chassis Power resource on loopback, for tests and benches: a constant power
reading behind basic auth, and a switch that makes it stop answering (the connection held open,
no reply), as a hung BMC does."""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["Bmc", "bmc"]

POWER_PATH = "/redfish/v1/Chassis/1/Power"


@dataclass
class Bmc:
    url: str
    user: str
    password: str
    watts: float
    answer_reads: int | None = None  # past this many good reads, stop answering
    reads: int = 0
    hung: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def bmc(watts: float = 123.0, *, user: str = "ffwatt-bmc", password: str = "calvin",
        answer_reads: int | None = None, tls: tuple[Path, Path] | None = None) -> Iterator[Bmc]:
    """A Redfish Power resource answering ``watts`` at ``Bmc.url`` until the block ends; over HTTPS with
    ``tls`` (certificate, key), as BMCs serve it, usually self-signed."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    state = Bmc("", user, password, watts, answer_reads)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != POWER_PATH:
                self._send(404, {"error": "no such resource"})
            elif self.headers.get("Authorization") != expected:
                self._send(401, {"error": {"code": "Base.1.0.NoValidSession"}})
            elif state.answer_reads is not None and state.reads >= state.answer_reads:
                state.hung.set()
                state.released.wait(60)  # the BMC hangs: no answer, the connection open
            else:
                state.reads += 1
                self._send(200, {"@odata.id": POWER_PATH, "Id": "Power", "PowerControl": [
                    {"@odata.id": f"{POWER_PATH}#/PowerControl/0", "MemberId": "0", "Name": "System Power Control",
                     "PowerConsumedWatts": state.watts}]})

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    state.url = f"http{'s' if tls else ''}://127.0.0.1:{server.server_address[1]}{POWER_PATH}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()
