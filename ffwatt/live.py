"""Live streaming's shared words: the ingest's RTMP application, its URL, and whether it answers.

The master serves the ingest (:mod:`master.ingest`), a live step publishes to and pulls from it
(:mod:`tasks.live`), and validation checks it answers before a live campaign runs.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from ffwatt.settings import Settings

__all__ = ["APPLICATION", "ingest_url", "split_ingest_url", "unreachable"]

APPLICATION = "live"  # the RTMP application of the ingest (infra/nginx/ffwatt-rtmp.conf)


def ingest_url(settings: Settings, environ: dict[str, str] | None = None) -> str:
    """The RTMP application live jobs use: ``FFWATT_INGEST_URL``; else the master's, whose host is
    the Prefect API's (a worker's PREFECT_API_URL names the master); else FFWATT_MASTER_HOST's."""
    if settings.ingest_url:
        return settings.ingest_url
    environ = dict(os.environ) if environ is None else environ
    host = urlsplit(environ.get("PREFECT_API_URL", "")).hostname or settings.master_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"rtmp://{host}:{settings.rtmp_port}/{APPLICATION}"


def split_ingest_url(url: str) -> tuple[str, int]:
    """(host, port) of an ``rtmp://`` URL; 1935 when it names none."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 1935


def unreachable(url: str, timeout_s: float = 3.0) -> str | None:
    """Why nothing answers at the ingest's address, or None when a TCP connection opens."""
    host, port = split_ingest_url(url)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
