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
from master.tls import proxy_config

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


def scaled_out(settings: Settings) -> bool:
    """Whether the server runs Prefect's scaled-out shape: several API processes here, or a Redis shared
    with API machines elsewhere."""
    return settings.api_processes > 1 or settings.redis_url is not None


def stack_up(settings: Settings, *, api_only: bool = False) -> list[ServiceStatus]:
    """Start the master's services; ``api_only``, only API processes that join a master spread over
    machines (its PostgreSQL, its Redis, its credentials), behind its TLS proxy (FFWATT_API_PEERS)."""
    run_dir = settings.run_dir
    if api_only:
        _check_api_only(settings)
    # The UI's address opens the V2 UI, whose login asks before it calls the API (V1's first call is refused
    # and shows "Authentication failed" before anything is typed); ApiClient.ui_page links there too. An
    # API machine behind the master's proxy serves the UI the proxy's address given it (PREFECT_UI_API_URL).
    ui_api = (os.environ.get("PREFECT_UI_API_URL") if api_only else None) or public_api_url(settings)
    env = {**_base_env(settings), "PREFECT_SERVER_API_AUTH_STRING": auth_string(settings),
           "PREFECT_UI_API_URL": ui_api, "PREFECT_SERVER_UI_V2_ENABLED": "true"}
    _check_scale_out(settings, env)  # first, as the next: a shape that can't run here starts nothing
    monitoring = [] if api_only else monitoring_services(settings)  # a missing binary stops us before anything starts
    ingest = [] if api_only else [ingest_service(settings), rtmp_exporter_service(settings, str(BIN / "ffwatt"))]
    # Started only on a free port, and only once its own process group listens there is it ours:
    # a server someone else runs on the port is never adopted.
    statuses: list[ServiceStatus] = []
    if scaled_out(settings):
        env, statuses = _scale_out(settings, env)
    statuses.append(start_service(run_dir, Service(
        "prefect-server", server_command(settings.master_host, settings.master_port,
                                         processes=settings.api_processes, services=not scaled_out(settings)),
        env, url=public_api_url(settings).removesuffix("/api"),
        listen=(settings.master_host, settings.master_port))))
    if scaled_out(settings) and not api_only:  # one services process for the whole server
        statuses.append(start_service(run_dir, Service("prefect-services", services_command(), env)))
    _wait_healthy(settings.master_api_url, 120, run_dir)
    (settings.stack_dir / "database").write_text(database_kind(env) + "\n")
    (settings.stack_dir / "role").write_text(("api-only" if api_only else "master") + "\n")
    if api_only:
        return statuses
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


def _check_api_only(settings: Settings) -> None:
    """:class:`StackError` naming what an API machine lacks to join its master, or nothing."""
    if settings.redis_url is None:
        raise StackError("`ffwatt stack up --api-only` joins a master spread over machines: set FFWATT_REDIS_URL to "
                         "the Redis its API machines share and PREFECT_SERVER_DATABASE_CONNECTION_URL to its "
                         "PostgreSQL (docs/fleet.md)")
    if not settings.auth_file.exists():  # a new secret here would refuse every agent holding the master's
        raise StackError(f"`ffwatt stack up --api-only` takes the master's API credentials: copy its "
                         f"FFWATT_HOME/stack/auth to {settings.auth_file} (mode 600)")


def _check_scale_out(settings: Settings, env: dict[str, str]) -> None:
    """:class:`StackError` naming what a scaled-out server lacks here (PostgreSQL, Redis), or nothing."""
    if not scaled_out(settings):
        return
    shape = (f"FFWATT_API_PROCESSES={settings.api_processes}" if settings.redis_url is None
             else "a server spread over machines (FFWATT_REDIS_URL)")
    if database_kind(env) != "postgresql":
        raise StackError(f"{shape} needs PostgreSQL (SQLite can't be shared by several API "
                         "processes): set PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://... before "
                         "`ffwatt stack up`, or FFWATT_API_PROCESSES=1 (docs/fleet.md)")
    if settings.redis_url is None and not Path(redis_command(settings.stack_dir / "redis" / "redis.sock")[0]).exists():
        processes = settings.api_processes
        raise StackError(f"FFWATT_API_PROCESSES={processes} needs Redis: apt-get install redis-server "
                         "(or run `make deps` as root)")


def _scale_out(settings: Settings, env: dict[str, str]) -> tuple[dict[str, str], list[ServiceStatus]]:
    """Redis for a scaled-out server, started (unless the API machines share one elsewhere), and the
    database prepared once for its API processes; the server's environment with Redis in it."""
    if settings.redis_url is not None:
        return with_redis(env, settings.redis_url, lambda: True, None), []
    redis_dir = settings.stack_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    redis_dir.chmod(0o700)  # the socket's directory: the stack's user alone gets to it
    socket_path = redis_dir / "redis.sock"
    status = start_service(settings.run_dir, Service("redis", redis_command(socket_path), dict(os.environ),
                                                     url=redis_url(socket_path)))
    env = with_redis(env, redis_url(socket_path), lambda: service_status(settings.run_dir, "redis").running,
                     settings.run_dir / "redis.log")
    return env, [status]


def tls_proxy_conf(settings: Settings) -> Path:
    """The TLS proxy's nginx configuration, written under its prefix (``stack/nginx``): in front of this
    machine's API and its peers' (FFWATT_API_PEERS)."""
    tls = settings.tls_dir
    prefix = settings.stack_dir / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    upstreams = [f"{settings.master_host}:{settings.master_port}", *filter(None, settings.api_peers.split(","))]
    conf = prefix / "nginx.conf"
    conf.write_text(proxy_config(prefix=prefix, listen=f"{settings.master_host}:{settings.master_tls_port}",
                                 cert=tls / "server.pem", key=tls / "server-key.pem", upstreams=upstreams))
    return conf


def start_tls_proxy(settings: Settings) -> ServiceStatus:
    """nginx terminating TLS on ``master_tls_port`` in front of the API (and its websockets)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise StackError("TLS needs nginx: apt-get install nginx-light (or run `make deps` as root)")
    conf = tls_proxy_conf(settings)
    prefix = conf.parent
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


def _started_here(settings: Settings) -> set[str]:
    """The services ``stack up`` starts on this machine, as it was last started (an API machine of a master
    spread over several runs its server alone)."""
    try:
        api_only = (settings.stack_dir / "role").read_text().strip() == "api-only"
    except OSError:
        api_only = False
    if api_only:
        return {"prefect-server"}
    if not scaled_out(settings):
        return set(SERVICES) - {"prefect-services", "redis"}
    return set(SERVICES) - ({"redis"} if settings.redis_url is not None else set())  # the shared one isn't ours


def stack_status(settings: Settings) -> list[ServiceStatus]:
    """Each service's status: those that run, and those ``stack up`` starts here."""
    statuses = [service_status(settings.run_dir, name) for name in SERVICES]
    here = _started_here(settings)
    return [s for s in statuses if s.running or s.name in here]
