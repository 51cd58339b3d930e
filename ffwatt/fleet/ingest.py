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
from xml.etree import ElementTree

import httpx

from ffwatt.errors import StackError
from ffwatt.fleet.services import Service, start_service, stop_service
from ffwatt.live import APPLICATION, ingest_url, unreachable
from ffwatt.settings import REPO, Settings

__all__ = [
    "RTMP_MODULE",
    "IngestStats",
    "PrivateIngest",
    "StreamStats",
    "ingest_for_run",
    "ingest_service",
    "parse_stats",
    "private_ingest",
    "read_stats",
    "render_config",
    "rtmp_exporter_service",
    "stats_url",
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


def stats_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.rtmp_stats_port}/stat"


def ingest_service(settings: Settings) -> Service:
    """nginx-rtmp on ``master_host:rtmp_port``, its configuration written under FFWATT_HOME/stack/rtmp."""
    nginx = _nginx()
    prefix = settings.home / "stack" / "rtmp"
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
                                     "--stats-url", stats_url(settings)],
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


@dataclass(frozen=True)
class StreamStats:
    """One stream on the ingest, as its statistics page shows it."""

    application: str
    name: str
    publishing: bool
    players: int
    bytes_in: int
    bytes_out: int
    dropped: int  # packets nginx dropped for players too slow to take them
    uptime_s: float


@dataclass(frozen=True)
class IngestStats:
    accepted: int
    bytes_in: int
    bytes_out: int
    uptime_s: float
    streams: list[StreamStats]


def _int(element: ElementTree.Element | None, tag: str) -> int:
    text = element.findtext(tag) if element is not None else None
    try:
        return int(text or 0)
    except ValueError:
        return 0


def parse_stats(text: str) -> IngestStats:
    """nginx-rtmp's ``rtmp_stat all`` XML: the server's counters and every stream's."""
    root = ElementTree.fromstring(text)
    streams = []
    for application in root.iter("application"):
        name = application.findtext("name") or ""
        for stream in application.iter("stream"):
            clients = stream.findall("client")
            publishers = sum(client.find("publishing") is not None for client in clients)
            streams.append(StreamStats(
                application=name, name=stream.findtext("name") or "", publishing=stream.find("publishing") is not None,
                players=len(clients) - publishers, bytes_in=_int(stream, "bytes_in"),
                bytes_out=_int(stream, "bytes_out"), dropped=sum(_int(client, "dropped") for client in clients),
                uptime_s=_int(stream, "time") / 1000))
    return IngestStats(accepted=_int(root, "naccepted"), bytes_in=_int(root, "bytes_in"),
                       bytes_out=_int(root, "bytes_out"), uptime_s=float(_int(root, "uptime")), streams=streams)


def read_stats(url: str, *, timeout_s: float = 2.0, client: httpx.Client | None = None) -> IngestStats:
    """Read and parse the statistics page at ``url`` (through ``client`` when given: a reader that
    asks every second keeps one, as a new client costs more CPU than the page)."""
    response = (client or httpx).get(url, timeout=timeout_s)
    response.raise_for_status()
    return parse_stats(response.text)
