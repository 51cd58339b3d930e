"""Starting a Prefect server: the one launcher the stack, the tests and the benches use (their throwaway
server is :func:`testbed.prefect_server.temporary_server`).

Scaled out (``processes`` > 1), the server is Prefect's own shape for it: several API processes behind
one address (``prefect server start --workers N --no-services``), one process for the loop services
(``prefect server services start``), PostgreSQL, and Redis for messaging, event ordering, lease
storage and the task queue (``prefect-redis``). Redis listens on a unix socket only, mode 600, so
nothing but the stack's own user reaches it. The database is migrated and the block types are
registered once beforehand: N processes doing it at start race on PostgreSQL's catalog and fail.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

__all__ = [
    "BIN",
    "PREFECT_ENV",
    "free_port",
    "redis_command",
    "redis_url",
    "server_command",
    "server_env",
    "services_command",
    "shown_url",
    "wait_healthy",
    "with_redis",
]

BIN = Path(sys.executable).parent
# What every Prefect process ffwatt starts (server, workers, flows, the CLI's runs) has in its
# environment: no phoning home, FFmpeg's text logged verbatim (rich reads "0:v:0" as an emoji), and
# 500 retried as Prefect's client retries 502 and 503 (5 times, backing off to 30 s): a scaled-out
# server answers 500 for the seconds its Redis is away, and a batch whose row or final state met
# one would fail, or be left Running, for an outage that was already over.
PREFECT_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS": "ffwatt.fleet.prefect_console.VerbatimConsoleHandler",
    "PREFECT_CLIENT_RETRY_EXTRA_CODES": "500",
}


def server_command(host: str, port: int, *, processes: int = 1, services: bool = True) -> list[str]:
    """The API (and, in one process, the loop services too); ``processes`` > 1, or ``services`` off
    (scaled out over machines), runs that many API processes on the one port without the services
    (:func:`services_command` runs those, once for the whole server)."""
    command = [str(BIN / "prefect"), "server", "start", "--host", host, "--port", str(port)]
    return command if processes == 1 and services else [*command, "--workers", str(processes), "--no-services"]


def services_command() -> list[str]:
    """The loop services (scheduler, late runs, cancellation, events) of a scaled-out server."""
    return [str(BIN / "prefect"), "server", "services", "start"]


def redis_command(socket_path: Path) -> list[str]:
    """Redis on a unix socket only (no TCP port), readable by its user alone, nothing kept on disk: what
    it holds is messaging in flight, and the flow runs' states are PostgreSQL's."""
    redis = shutil.which("redis-server") or "/usr/bin/redis-server"
    return [redis, "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "600",
            "--save", "", "--appendonly", "no", "--dir", str(socket_path.parent)]


def redis_url(socket_path: Path) -> str:
    return f"unix://{socket_path}?db=0"


def _scale_out_env(redis: str) -> dict[str, str]:
    """What every process of a scaled-out server needs: Redis for what one process keeps in memory."""
    return {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_URL": redis,
        "PREFECT_SERVER_DOCKET_URL": redis,
        # Done once by with_redis() before the processes start.
        "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
        "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
    }


# What a server does at start, done once: the same calls as its lifespan (prefect.server.api.server).
_PREPARE = """
import asyncio
from prefect.server.database import provide_database_interface
from prefect.server.models.block_registration import run_block_auto_registration

async def prepare():
    db = provide_database_interface()
    await db.create_db()
    session = await db.session()
    async with session:
        await run_block_auto_registration(session=session)

asyncio.run(prepare())
"""


def _prepare_database(env: dict[str, str], timeout_s: float = 300) -> str | None:
    """Migrate the server's database and register the block types, once; None, or what went wrong."""
    done = subprocess.run([sys.executable, "-c", _PREPARE], env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    return None if done.returncode == 0 else (done.stdout + done.stderr)[-3000:]


def _wait_redis(url: str, timeout_s: float, alive: Callable[[], bool]) -> bool:
    """Whether Redis at ``url`` answered PING within ``timeout_s`` while ``alive()`` held."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, OSError):
                if client.ping():
                    return True
            if not alive():
                return False
            time.sleep(0.1)
        return False
    finally:
        client.close()


def server_env(home: Path, *, ui: bool = True, **extra: str) -> dict[str, str]:
    """The server's environment: its own PREFECT_HOME (database, logs), no phoning home."""
    return {**os.environ, **PREFECT_ENV, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "true" if ui else "false",
            **extra}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_healthy(api_url: str, timeout_s: float, alive: Callable[[], bool]) -> bool:
    """Whether ``api_url/health`` answered 200 within ``timeout_s`` while ``alive()`` held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api_url}/health", timeout=2, verify=False).status_code == 200:
                return True
        if not alive():
            return False
        time.sleep(0.3)
    return False


def shown_url(url: str) -> str:
    """``url`` with its password masked, for messages and logs."""
    return re.sub(r"(//[^/@]*?:)[^/@]*@", r"\1***@", url)


def with_redis(env: dict[str, str], url: str, alive: Callable[[], bool], log: Path | None) -> dict[str, str]:
    """The scaled-out server's environment once the Redis at ``url`` answers (the one the stack started,
    ``alive()`` while it may yet, or one the API machines share), with its database prepared once;
    :class:`StackError` says which step failed."""
    from ffwatt.errors import StackError

    if not _wait_redis(url, 30, alive):
        if log is None:
            raise StackError(f"Redis did not answer on {shown_url(url)} (FFWATT_REDIS_URL): is it up, reachable "
                             "from here, and its password the one in the URL?")
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise StackError(f"Redis did not answer on {url}; its log ({log}) ends:\n{tail}")
    env = {**env, **_scale_out_env(url)}
    problem = _prepare_database(env)
    if problem is not None:
        raise StackError(f"the Prefect database could not be prepared for several API processes:\n{problem}")
    return env
