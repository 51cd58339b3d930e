"""The master's RTMP ingest: nginx with the RTMP module as a background service, the exporter that
turns its statistics page into metrics, and a private ingest for a run without the stack.

The ingest listens on ``FFWATT_MASTER_HOST:FFWATT_RTMP_PORT`` (1935) for publishers and players
and serves its statistics page (``rtmp_stat``) on loopback only (``FFWATT_RTMP_STATS_PORT``);
the RTMP exporter reads that page on each scrape (:mod:`exporters.rtmp`), and the store scrapes
the exporter. Its configuration is ``infra/nginx/ffwatt-rtmp.conf``, rendered under
``FFWATT_HOME/stack/rtmp``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ffwatt.errors import StackError
from ffwatt.fleet.services import Service, start_service, stop_service
from ffwatt.live import APPLICATION, ingest_url, unreachable
from ffwatt.settings import REPO, Settings

__all__ = [
    "RTMP_MODULE",
    "PrivateIngest",
    "ingest_for_run",
    "ingest_service",
    "private_ingest",
    "render_config",
    "rtmp_exporter_service",
]

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")  # Debian's libnginx-mod-rtmp
TEMPLATE = REPO / "infra" / "nginx" / "ffwatt-rtmp.conf"


def _nginx() -> str:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists() or not RTMP_MODULE.exists():
        raise StackError("the RTMP ingest needs nginx with the RTMP module: apt-get install nginx-light "
                         "libnginx-mod-rtmp (or run `make deps` as root)")
    return nginx


def _command(nginx: str, prefix: Path, conf: Path) -> list[str]:
    # Errors to stderr (the service's log) from the start: an unprivileged user can't open nginx's default log.
    return [nginx, "-e", "stderr", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]


def _allow(allow: str) -> str:
    """``allow publish/play`` lines for each address or network in ``allow`` (or everyone), and a
    deny for the rest."""
    if allow.strip() == "all":
        return "            allow publish all;\n            allow play all;"
    lines = []
    for network in (part.strip() for part in allow.split(",") if part.strip()):
        lines += [f"            allow publish {network};", f"            allow play {network};"]
    return "\n".join([*lines, "            deny publish all;", "            deny play all;"])


def render_config(prefix: Path | str, *, listen: str, stats_listen: str, allow: str,
                  module: Path | str = RTMP_MODULE) -> str:
    """The ingest's nginx.conf (prefix, RTMP ``listen``, loopback statistics ``stats_listen``)."""
    return TEMPLATE.read_text().format(module=module, prefix=prefix, listen=listen, stats_listen=stats_listen,
                                       application=APPLICATION, allow=_allow(allow))


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def ingest_service(settings: Settings) -> Service:
    """nginx-rtmp on ``master_host:rtmp_port``, its configuration written under FFWATT_HOME/stack/rtmp."""
    nginx = _nginx()
    prefix = settings.stack_dir / "rtmp"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(render_config(prefix, listen=f"{_host(settings.master_host)}:{settings.rtmp_port}",
                                  stats_listen=f"127.0.0.1:{settings.rtmp_stats_port}", allow=settings.rtmp_allow))
    return Service("rtmp-ingest", _command(nginx, prefix, conf), {},
                   url=f"rtmp://{_host(settings.master_host)}:{settings.rtmp_port}/{APPLICATION}",
                   listen=(settings.master_host, settings.rtmp_port))


def rtmp_exporter_service(settings: Settings, ffwatt: str) -> Service:
    """``ffwatt exporter rtmp`` beside the ingest, where the store scrapes it."""
    address = f"{_host(settings.master_host)}:{settings.rtmp_exporter_port}"
    return Service("rtmp-exporter", [ffwatt, "exporter", "rtmp", "--listen", address,
                                     "--stats-url", settings.rtmp_stats_url],
                   {"FFWATT_HOME": str(settings.home), "FFWATT_NODE": settings.node}, url=f"http://{address}/metrics",
                   listen=(settings.master_host, settings.rtmp_exporter_port))


@dataclass(frozen=True)
class PrivateIngest:
    url: str  # rtmp://127.0.0.1:PORT/live
    stats_url: str
    prefix: Path


@contextlib.contextmanager
def private_ingest(*, port: int | None = None, stats_port: int | None = None) -> Iterator[PrivateIngest]:
    """An ingest of this process's own on loopback (free ports unless given), for a run without the
    stack and for tests; stopped, and its files removed, on exit."""
    from ffwatt.fleet.prefect_server import free_port

    nginx = _nginx()
    port = port or free_port()
    stats_port = stats_port or free_port()
    prefix = Path(tempfile.mkdtemp(prefix="ffwatt-rtmp-"))
    (prefix / "logs").mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(render_config(prefix, listen=f"127.0.0.1:{port}", stats_listen=f"127.0.0.1:{stats_port}",
                                  allow="127.0.0.1"))
    service = Service("rtmp-ingest", _command(nginx, prefix, conf), {},
                      listen=("127.0.0.1", port))
    try:
        start_service(prefix / "run", service, listen_timeout_s=30)
        yield PrivateIngest(f"rtmp://127.0.0.1:{port}/{APPLICATION}", f"http://127.0.0.1:{stats_port}/stat", prefix)
    finally:
        stop_service(prefix / "run", service.name, timeout_s=5)
        shutil.rmtree(prefix, ignore_errors=True)


@contextlib.contextmanager
def ingest_for_run(settings: Settings, *, say: Callable[[str], None]) -> Iterator[str]:
    """The ingest a live campaign run on this machine uses: the configured one when it answers (or
    was set explicitly, so that preflight says it doesn't), else a private one for the run's length,
    announced through ``say`` and passed on in ``FFWATT_INGEST_URL``."""
    url = ingest_url(settings)
    if settings.ingest_url or unreachable(url) is None:
        yield url
        return
    with private_ingest() as ingest:
        say(f"no ingest answers at {url} (no `ffwatt stack up` here): this run uses its own nginx-rtmp at "
            f"{ingest.url}")
        previous = os.environ.get("FFWATT_INGEST_URL")
        os.environ["FFWATT_INGEST_URL"] = ingest.url
        try:
            yield ingest.url
        finally:
            if previous is None:
                os.environ.pop("FFWATT_INGEST_URL", None)
            else:
                os.environ["FFWATT_INGEST_URL"] = previous


