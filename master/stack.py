"""The master's services on this machine: the Prefect server (with API credentials; scaled out, its
API processes, a process for its loop services and Redis for their messaging),
a process worker for campaign flows, the scrape-target discovery endpoint, the
metrics store and alerting (:mod:`master.monitoring`), the RTMP ingest of live
jobs and its exporter (:mod:`master.ingest`), and optionally a TLS-terminating
nginx in front of the API.

State lives under ``FFWATT_HOME``: ``run/`` (pid files, logs), ``stack/auth``
(the API credentials, mode 600), ``stack/tls/`` (CA and server certificate).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from ffwatt.encoders import NODE_POOLS
from ffwatt.errors import StackError
from ffwatt.fleet.client import ensure_pools
from ffwatt.fleet.prefect_server import (
    BIN,
    redis_command,
    redis_url,
    server_command,
    server_env,
    services_command,
    wait_healthy,
    with_redis,
)
from ffwatt.fleet.services import Service, ServiceStatus, service_status, start_service, stop_service
from ffwatt.settings import REPO, Settings
from master.credentials import auth_string
from master.ingest import ingest_service, rtmp_exporter_service
from master.monitoring import MONITORING_SERVICES, monitoring_services

__all__ = ["POOLS", "StackError", "client_env", "stack_down", "stack_status", "stack_up"]

POOLS = ("master", *NODE_POOLS)  # the master runs campaign flows; every node pool gets its batches
SERVICES = ("redis", "prefect-server", "prefect-services", "master-worker", "discovery", *MONITORING_SERVICES,
            "rtmp-ingest", "rtmp-exporter", "tls-proxy")


def _reachable_host(settings: Settings) -> str:
    """The master's address as others reach it: its host name when it listens on every interface."""
    return socket.getfqdn() if settings.master_host in ("0.0.0.0", "::", "") else settings.master_host


def public_api_url(settings: Settings) -> str:
    """The API URL people and agents use: through the TLS proxy when it runs, else the API itself.
    The UI served by the server talks to this one, whatever the master's port."""
    if (settings.tls_dir / "server.pem").exists():
        return f"https://{_reachable_host(settings)}:{settings.master_tls_port}/api"
    return f"http://{_reachable_host(settings)}:{settings.master_port}/api"


def client_env(settings: Settings, url: str | None = None) -> dict[str, str]:
    """What a client (CLI, worker, agent) needs in its environment to use this stack's API."""
    env = {"PREFECT_API_URL": url or settings.master_api_url, "PREFECT_API_AUTH_STRING": auth_string(settings)}
    ca = settings.tls_dir / "ca.pem"
    if env["PREFECT_API_URL"].startswith("https") and ca.exists():
        env["PREFECT_API_SSL_CERT_FILE"] = str(ca)
    return env


def _base_env(settings: Settings) -> dict[str, str]:
    return server_env(settings.home / "prefect", FFWATT_HOME=str(settings.home),
                      FFWATT_RESULTS_DIR=str(settings.results_dir.resolve()), FFWATT_REPO=str(REPO))


def _wait_healthy(url: str, timeout_s: float, run_dir: Path) -> None:
    if wait_healthy(url, timeout_s, lambda: service_status(run_dir, "prefect-server").running):
        return
    log = run_dir / "prefect-server.log"
    tail = log.read_text()[-2000:] if log.exists() else ""
    raise StackError(f"the Prefect server did not become healthy at {url}; its log ({log}) ends:\n{tail}")


def prefect_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``prefect`` CLI of this environment with ``env``."""
    return subprocess.run([str(BIN / "prefect"), "--no-prompt", *args], env=env, capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def _prefect(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return prefect_cli({**_base_env(settings), **client_env(settings)}, *args)


def deploy(settings: Settings) -> None:
    """Register the deployments in deployments/prefect.yaml (campaign/*, node-batch/<pool>)."""
    done = _prefect(settings, "deploy", "--all", "--prefect-file", str(REPO / "deployments" / "prefect.yaml"))
    if done.returncode != 0:
        raise StackError(f"prefect deploy failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def stack_up(settings: Settings) -> list[ServiceStatus]:
    run_dir = settings.run_dir
    # The UI's address opens the V2 UI, whose login asks before it calls the API (V1's first call is refused
    # and shows "Authentication failed" before anything is typed); ApiClient.ui_page links there too.
    env = {**_base_env(settings), "PREFECT_SERVER_API_AUTH_STRING": auth_string(settings),
           "PREFECT_UI_API_URL": public_api_url(settings), "PREFECT_SERVER_UI_V2_ENABLED": "true"}
    _check_scale_out(settings, env)  # first, as the next: a shape that can't run here starts nothing
    monitoring = monitoring_services(settings)  # a missing binary stops us before anything starts
    ingest = [ingest_service(settings), rtmp_exporter_service(settings, str(BIN / "ffwatt"))]
    # Started only on a free port, and only once its own process group listens there is it ours:
    # a server someone else runs on the port is never adopted.
    processes = settings.api_processes
    statuses: list[ServiceStatus] = []
    if processes > 1:
        env, statuses = _scale_out(settings, env)
    statuses.append(start_service(run_dir, Service(
        "prefect-server", server_command(settings.master_host, settings.master_port, processes=processes),
        env, url=public_api_url(settings).removesuffix("/api"),
        listen=(settings.master_host, settings.master_port))))
    if processes > 1:
        statuses.append(start_service(run_dir, Service("prefect-services", services_command(), env)))
    _wait_healthy(settings.master_api_url, 120, run_dir)
    (settings.stack_dir / "database").write_text(database_kind(env) + "\n")
    ensure_pools({**_base_env(settings), **client_env(settings)}, POOLS)
    deploy(settings)
    # A warm worker: campaign flows start in its process, without a new Python each (agent/warm.py).
    statuses.append(start_service(run_dir, Service(
        "master-worker", [str(BIN / "ffwatt"), "stack", "worker"], {**_base_env(settings), **client_env(settings)},
        cwd=REPO)))
    statuses.append(start_service(run_dir, Service(
        "discovery",
        [str(BIN / "ffwatt"), "stack", "discovery", "--listen", f"{settings.master_host}:{settings.discovery_port}"],
        {**_base_env(settings), **client_env(settings)},
        url=f"http://{settings.master_host}:{settings.discovery_port}/targets",
        listen=(settings.master_host, settings.discovery_port))))
    statuses += [start_service(run_dir, service) for service in [*monitoring, *ingest]]
    tls = settings.tls_dir
    if (tls / "server.pem").exists():
        statuses.append(start_tls_proxy(settings))
    return statuses


def _check_scale_out(settings: Settings, env: dict[str, str]) -> None:
    """:class:`StackError` naming what a scaled-out server lacks here (PostgreSQL, Redis), or nothing."""
    processes = settings.api_processes
    if processes == 1:
        return
    if database_kind(env) != "postgresql":
        raise StackError(f"FFWATT_API_PROCESSES={processes} needs PostgreSQL (SQLite can't be shared by several API "
                         "processes): set PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://... before "
                         "`ffwatt stack up`, or FFWATT_API_PROCESSES=1 (docs/fleet.md)")
    if not Path(redis_command(settings.stack_dir / "redis" / "redis.sock")[0]).exists():
        raise StackError(f"FFWATT_API_PROCESSES={processes} needs Redis: apt-get install redis-server "
                         "(or run `make deps` as root)")


def _scale_out(settings: Settings, env: dict[str, str]) -> tuple[dict[str, str], list[ServiceStatus]]:
    """Redis for a scaled-out server, started, and the database prepared once for its API processes;
    the server's environment with Redis in it."""
    redis_dir = settings.stack_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    redis_dir.chmod(0o700)  # the socket's directory: the stack's user alone gets to it
    socket_path = redis_dir / "redis.sock"
    status = start_service(settings.run_dir, Service("redis", redis_command(socket_path), dict(os.environ),
                                                     url=redis_url(socket_path)))
    env = with_redis(env, socket_path, lambda: service_status(settings.run_dir, "redis").running,
                     settings.run_dir / "redis.log")
    return env, [status]


def start_tls_proxy(settings: Settings) -> ServiceStatus:
    """nginx terminating TLS on ``master_tls_port`` in front of the API (and its websockets)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise StackError("TLS needs nginx: apt-get install nginx-light (or run `make deps` as root)")
    tls = settings.tls_dir
    prefix = settings.stack_dir / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    template = (REPO / "infra" / "nginx" / "ffwatt-master.conf").read_text()
    conf = prefix / "nginx.conf"
    conf.write_text(template.format(prefix=prefix, listen=f"{settings.master_host}:{settings.master_tls_port}",
                                    cert=tls / "server.pem", key=tls / "server-key.pem",
                                    upstream=f"{settings.master_host}:{settings.master_port}"))
    return start_service(settings.run_dir, Service(
        "tls-proxy", [nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"], dict(os.environ),
        url=f"https://{settings.master_host}:{settings.master_tls_port}/api",
        listen=(settings.master_host, settings.master_tls_port)))


def database_kind(env: dict[str, str]) -> str:
    """The Prefect server's database dialect (``sqlite`` unless a connection URL says otherwise)."""
    url = env.get("PREFECT_SERVER_DATABASE_CONNECTION_URL") or env.get("PREFECT_API_DATABASE_CONNECTION_URL") or ""
    return url.split(":", 1)[0].split("+", 1)[0] or "sqlite"


def served_database(settings: Settings) -> str | None:
    """The database the running stack's server was started on, as ``stack up`` recorded it."""
    try:
        return (settings.stack_dir / "database").read_text().strip() or None
    except OSError:
        return None


def sqlite_warning(database: str | None, online_nodes: int) -> str | None:
    """Why a SQLite-backed master shouldn't serve this many nodes, or None."""
    if database != "sqlite" or online_nodes <= 1:
        return None
    return (f"the Prefect server runs on SQLite and serves {online_nodes} online nodes: its concurrent writes "
            "fail (503, retried) and slow down past one node. Put it on PostgreSQL: "
            "PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://... before `ffwatt stack up` "
            "(docs/fleet.md)")


def stack_down(settings: Settings) -> list[str]:
    run_dir = settings.run_dir
    return [name for name in reversed(SERVICES) if stop_service(run_dir, name)]


SCALE_OUT_SERVICES = ("redis", "prefect-services")


def stack_status(settings: Settings) -> list[ServiceStatus]:
    """Each service's status; a scaled-out server's own services only where they run or are asked for."""
    statuses = [service_status(settings.run_dir, name) for name in SERVICES]
    return [s for s in statuses if s.running or settings.api_processes > 1 or s.name not in SCALE_OUT_SERVICES]
