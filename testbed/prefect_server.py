"""A throwaway Prefect server for a test or a bench, through the stack's own launcher."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ffwatt.errors import FfwattError
from ffwatt.fleet.prefect_server import (
    PREFECT_ENV,
    free_port,
    redis_command,
    redis_url,
    server_command,
    server_env,
    services_command,
    wait_healthy,
    with_redis,
)
from ffwatt.processes import stop_group

__all__ = ["temporary_server"]


@contextlib.contextmanager
def temporary_server(*, ui: bool = False, log: Path | None = None, database_url: str | None = None,
                     pids: list[int] | None = None, api_processes: int = 1) -> Iterator[dict[str, str]]:
    """A throwaway ``prefect server start`` on a free loopback port with its own SQLite database
    (or ``database_url``'s); with ``api_processes`` > 1, scaled out as the stack does it (Redis, a
    services process; PostgreSQL needed).

    Yields the environment a client needs to use it; stops it (every process group it started) on exit.
    ``pids`` receives the server's process-group id (its leader's pid), then the services' and Redis's.
    """
    if api_processes > 1 and database_url is None:
        raise FfwattError("a scaled-out Prefect server needs PostgreSQL (database_url)")
    with tempfile.TemporaryDirectory(prefix="ffwatt-prefect-") as home, contextlib.ExitStack() as started:
        out = started.enter_context((log or Path(home) / "server.log").open("ab"))

        def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)

            @started.callback
            def stop() -> None:
                if process.poll() is None:
                    stop_group(process.pid)  # the group we started: the process and its children
                    process.wait()
            return process

        port = free_port()
        extra = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url} if database_url else {}
        env = server_env(Path(home), ui=ui, **extra)
        helpers: list[subprocess.Popen[bytes]] = []
        if api_processes > 1:
            socket_path = Path(home) / "redis.sock"
            redis = start(redis_command(socket_path), env)
            env = with_redis(env, redis_url(socket_path), lambda: redis.poll() is None, Path(out.name))
            helpers = [start(services_command(), env), redis]
        server = start(server_command("127.0.0.1", port, processes=api_processes), env)
        if pids is not None:
            pids += [server.pid, *(helper.pid for helper in helpers)]
        url = f"http://127.0.0.1:{port}/api"
        if not wait_healthy(url, 180, lambda: server.poll() is None):
            raise FfwattError(f"a temporary Prefect server did not start; see {out.name}")
        yield {**PREFECT_ENV, "PREFECT_HOME": home, "PREFECT_API_URL": url}
