"""A throwaway Prefect server for a test or a bench, through the stack's own launcher."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ffwatt.errors import FfwattError
from ffwatt.fleet.prefect_server import PREFECT_ENV, free_port, server_command, server_env, wait_healthy
from ffwatt.processes import stop_group

__all__ = ["temporary_server"]


@contextlib.contextmanager
def temporary_server(*, ui: bool = False, log: Path | None = None, database_url: str | None = None,
                     pids: list[int] | None = None) -> Iterator[dict[str, str]]:
    """A throwaway ``prefect server start`` on a free loopback port with its own SQLite database
    (or ``database_url``'s).

    Yields the environment a client needs to use it; stops it (its whole process group) on exit.
    ``pids`` receives the server's process-group id (its leader's pid).
    """
    with tempfile.TemporaryDirectory(prefix="ffwatt-prefect-") as home:
        port = free_port()
        out = (log or Path(home) / "server.log").open("ab")
        extra = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url} if database_url else {}
        process = subprocess.Popen(server_command("127.0.0.1", port), env=server_env(Path(home), ui=ui, **extra),
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if pids is not None:
            pids.append(process.pid)
        url = f"http://127.0.0.1:{port}/api"
        try:
            if not wait_healthy(url, 180, lambda: process.poll() is None):
                raise FfwattError(f"a temporary Prefect server did not start; see {out.name}")
            yield {**PREFECT_ENV, "PREFECT_HOME": home, "PREFECT_API_URL": url}
        finally:
            if process.poll() is None:
                stop_group(process.pid)  # the group we started: the server and its uvicorn
                process.wait()
            out.close()
