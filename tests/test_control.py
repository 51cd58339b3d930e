"""The control endpoints (an agent's POST /wake, discovery's POST /alerts and GET /nodes) behind the
stack's credentials, with bodies checked and wake-ups rate-limited; /metrics and /targets stay open.
Real servers on loopback, real HTTP clients; the expected answers are the HTTP statuses the issue
names, not the code's."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from agent.node import WAKE_BURST, WAKE_RATE_PER_S, _wake_server
from ffwatt.fleet.client import api_client
from tests.conftest import free_port

CREDENTIALS = "ffwatt:s3cret-token"
AUTH = ("ffwatt", "s3cret-token")


@contextlib.contextmanager
def wake_server(credentials: str | None, clock: Callable[[], float] = time.monotonic
                ) -> Iterator[tuple[str, list[int]]]:
    woken: list[int] = []
    port = free_port()
    server = _wake_server("127.0.0.1", port, lambda: woken.append(1), credentials, clock=clock)
    try:
        yield f"http://127.0.0.1:{port}/wake", woken
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def discovery(tmp_path: Path, rotate_bytes: int = 16 << 20) -> Iterator[str]:
    """The discovery service over a Prefect client whose API is not there: the control routes
    must answer before they ever read it."""
    from master.discovery import discovery_server

    with api_client({"PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}) as client:
        port = free_port()
        server: ThreadingHTTPServer = discovery_server("127.0.0.1", port, tmp_path / "stack", tmp_path / "results",
                                                       client, credentials=CREDENTIALS,
                                                       alerts_rotate_bytes=rotate_bytes)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.shutdown()
            server.server_close()


def raw(url: str, request: bytes) -> bytes:
    """Send ``request`` as it is (a client library would fix what these tests break) and read the
    whole answer: a dropped connection would raise here."""
    host, port = url.split("//")[1].split("/", maxsplit=1)[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_wake_answers_401_without_the_stack_s_credentials_and_200_with_them():
    with wake_server(CREDENTIALS) as (url, woken):
        assert httpx.post(url).status_code == 401
        assert httpx.post(url, auth=("ffwatt", "wrong")).status_code == 401
        assert httpx.post(url, headers={"Authorization": "Bearer s3cret-token"}).status_code == 401
        assert woken == []
        answer = httpx.post(url, auth=AUTH)
        assert answer.status_code == 200 and answer.json() == {"woken": True}
        assert woken == [1]


def test_an_agent_without_credentials_takes_no_wake_up_from_anyone():
    with wake_server(None) as (url, woken):
        answer = httpx.post(url, auth=AUTH)
        assert answer.status_code == 401 and "holds no credentials" in answer.json()["error"]
        assert woken == []


def test_wake_refuses_bad_bodies_with_400_and_large_ones_with_413():
    with wake_server(CREDENTIALS) as (url, woken):
        for body in (b"[1, 2]", b'"wake"', b"{not json", b"\xff\xfe"):
            answer = httpx.post(url, auth=AUTH, content=body)
            assert answer.status_code == 400, (body, answer.text)
        assert httpx.post(url, auth=AUTH, content=b"x" * 2048).status_code == 413
        header = httpx.BasicAuth(*AUTH)._auth_header
        for length in (b"ten", b"-5"):
            reply = raw(url, b"POST /wake HTTP/1.1\r\nHost: x\r\nAuthorization: " + header.encode()
                        + b"\r\nContent-Length: " + length + b"\r\n\r\n")
            assert reply.startswith(b"HTTP/1.0 400"), reply
            assert b"Content-Length" in reply.split(b"\r\n\r\n", 1)[1]
        assert woken == []
        assert httpx.post(url, auth=AUTH, json={"from": "dispatcher"}).status_code == 200


def test_wake_ups_past_the_burst_get_429_and_a_retry_after():
    # The rate's clock stands still unless the test moves it: a loaded machine's slow calls refill nothing.
    now = [0.0]
    with wake_server(CREDENTIALS, clock=lambda: now[0]) as (url, woken):
        statuses = [httpx.post(url, auth=AUTH).status_code for _ in range(WAKE_BURST + 5)]
        assert statuses[:WAKE_BURST] == [200] * WAKE_BURST
        assert statuses[WAKE_BURST:] == [429] * 5
        refused = httpx.post(url, auth=AUTH)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        # Guessing is as slow as calling: a caller out of tokens is refused before its credentials count.
        assert httpx.post(url, auth=("ffwatt", "guess")).status_code == 429
        now[0] += 1 / WAKE_RATE_PER_S  # one token back
        assert httpx.post(url, auth=AUTH).status_code == 200
        assert httpx.post(url, auth=AUTH).status_code == 429
        assert len(woken) == statuses.count(200) + 1


def test_alerts_and_nodes_answer_401_without_credentials_metrics_stays_open(tmp_path: Path):
    with discovery(tmp_path) as base:
        notification = {"status": "firing", "alerts": [{"labels": {"alertname": "X"}}]}
        assert httpx.post(f"{base}/alerts", json=notification).status_code == 401
        assert httpx.post(f"{base}/alerts", json=notification, auth=("ffwatt", "no")).status_code == 401
        assert httpx.get(f"{base}/nodes").status_code == 401
        assert not (tmp_path / "stack" / "alerts.jsonl").exists()
        # With them, /nodes reaches the (absent) API: past the guard
        assert httpx.get(f"{base}/nodes", auth=AUTH).status_code == 503
        assert httpx.get(f"{base}/metrics").status_code == 200
        assert httpx.post(f"{base}/alerts", json=notification, auth=AUTH).status_code == 200


def test_alerts_are_stamped_by_the_server_and_bad_ones_refused(tmp_path: Path):
    sink = tmp_path / "stack" / "alerts.jsonl"
    with discovery(tmp_path) as base:
        before = time.time()
        sent = {"status": "firing", "received_at": 1.0, "alerts": [{"labels": {"alertname": "X"}}]}
        assert httpx.post(f"{base}/alerts", json=sent, auth=AUTH).status_code == 200
        (line,) = sink.read_text().splitlines()
        stored = json.loads(line)
        assert stored["received_at"] >= before and stored["alerts"] == sent["alerts"]
        for body in (b"[]", b'"firing"', b"{}", b'{"alerts": "X"}', b"nope", b""):
            answer = httpx.post(f"{base}/alerts", content=body, auth=AUTH)
            assert answer.status_code == 400, (body, answer.text)
            assert answer.json()["error"]
        assert httpx.post(f"{base}/alerts", content=b" " * ((1 << 20) + 1), auth=AUTH).status_code == 413
        assert len(sink.read_text().splitlines()) == 1


def test_the_alert_log_is_moved_aside_at_its_size(tmp_path: Path):
    sink = tmp_path / "stack" / "alerts.jsonl"
    notification = {"status": "firing", "alerts": [{"labels": {"alertname": "Y", "pad": "x" * 200}}]}
    with discovery(tmp_path, rotate_bytes=1000) as base:
        for _ in range(12):
            assert httpx.post(f"{base}/alerts", json=notification, auth=AUTH).status_code == 200
    kept = sink.read_text().splitlines() + (tmp_path / "stack" / "alerts.jsonl.1").read_text().splitlines()
    assert sink.stat().st_size <= 1000 and (tmp_path / "stack" / "alerts.jsonl.1").stat().st_size <= 1000
    assert 0 < len(sink.read_text().splitlines()) < 12 and len(kept) < 12  # the oldest went
    assert all(json.loads(line)["alerts"] == notification["alerts"] for line in kept)


@pytest.mark.e2e  # a Prefect server
def test_nodes_answers_200_with_the_credentials(prefect_server: dict[str, str], tmp_path: Path):
    from master.discovery import discovery_server

    with api_client(prefect_server) as client:
        port = free_port()
        server = discovery_server("127.0.0.1", port, tmp_path / "stack", tmp_path / "results", client,
                                  credentials=CREDENTIALS)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/nodes").status_code == 401
            answer = httpx.get(f"http://127.0.0.1:{port}/nodes", auth=AUTH)
            assert answer.status_code == 200 and isinstance(answer.json(), list)
            assert httpx.get(f"http://127.0.0.1:{port}/targets").status_code == 200
        finally:
            server.shutdown()
            server.server_close()


def test_the_dispatcher_wakes_with_the_credentials_it_holds_for_the_api():
    from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings

    from flows.fleet_api import _wake

    with wake_server(CREDENTIALS) as (url, woken):
        with temporary_settings(updates={PREFECT_API_AUTH_STRING: CREDENTIALS}):
            _wake(url)
        assert woken == [1]
        with temporary_settings(updates={PREFECT_API_AUTH_STRING: "ffwatt:other"}):
            _wake(url)  # refused, and said nothing: the node's next poll takes the batch
        assert woken == [1]


def test_alertmanager_sends_the_stack_s_credentials_to_discovery_and_no_one_else(tmp_path: Path):
    from ffwatt.settings import Settings
    from master.monitoring import monitoring_services

    settings = Settings(home=tmp_path / "home", alert_webhook_url=None)
    monitoring_services(settings)
    config = (tmp_path / "home" / "monitoring" / "alertmanager.yml").read_text()
    (webhook,) = yaml.safe_load(config)["receivers"][0]["webhook_configs"]
    auth = webhook["http_config"]["basic_auth"]
    user, password = (tmp_path / "home" / "stack" / "auth").read_text().strip().split(":", 1)
    assert auth["username"] == user and Path(auth["password_file"]).read_text() == password
    assert Path(auth["password_file"]).stat().st_mode & 0o077 == 0
    other = Settings(home=tmp_path / "other", alert_webhook_url="https://hooks.example/x")
    monitoring_services(other)
    (webhook,) = yaml.safe_load((tmp_path / "other" / "monitoring" / "alertmanager.yml").read_text()
                                )["receivers"][0]["webhook_configs"]
    assert "http_config" not in webhook and webhook["url"] == "https://hooks.example/x"

