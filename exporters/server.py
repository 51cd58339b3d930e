"""Serving collectors over HTTP, and the table of exporters ``ffwatt exporter`` can start."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily

from exporters._collector import NAMESPACE, CollectorSet
from exporters.ffmpeg import FFmpegCollector
from exporters.gpu import GpuCollector
from exporters.rapl import RaplCollector
from exporters.redfish import RedfishCollector
from exporters.rtmp import RtmpCollector
from ffwatt.errors import ServiceError
from ffwatt.fleet.services import port_holder
from ffwatt.hardware.nvml import ReplayNvml
from ffwatt.ports import parse_listen
from ffwatt.settings import Settings

__all__ = ["EXPORTERS", "Exporter", "ExporterOptions", "build_collectors", "serve"]

log = logging.getLogger("ffwatt.exporters")


@dataclass(frozen=True, kw_only=True)
class ExporterOptions:
    interval_s: float = 1.0
    replay: Path | None = None  # GPU: play back recorded NVML readings instead of a real GPU
    retention_s: float = 10.0
    stats_url: str | None = None  # RTMP: the ingest's statistics page (the master's, by default)


@dataclass(frozen=True)
class Exporter:
    """One kind of exporter: the setting that gives its port, and how to build its collectors."""

    port: Callable[[Settings], int]
    build: Callable[[Settings, ExporterOptions], list[Any]]


def _gpu(settings: Settings, options: ExporterOptions) -> list[Any]:
    nvml = None
    if options.replay is not None:
        import time

        start = time.monotonic()
        nvml = ReplayNvml(json.loads(options.replay.read_text()), lambda: time.monotonic() - start)
    return [GpuCollector(nvml=nvml, enabled=settings.gpu, interval_s=options.interval_s)]


def _rtmp(settings: Settings, options: ExporterOptions) -> list[Any]:
    return [RtmpCollector(options.stats_url or settings.rtmp_stats_url)]


# The agent starts the node's exporters (Settings.exporter_ports) on each node; the RTMP exporter is the
# master's (``ffwatt stack up`` starts it beside the ingest). Each port is its FFWATT_*_PORT setting.
EXPORTERS: dict[str, Exporter] = {
    # The node's power: its CPU (RAPL or the estimate) and, where its BMC is known, the plug (Redfish).
    "cpu": Exporter(lambda s: s.cpu_exporter_port, lambda s, o: [
        RaplCollector(s, interval_s=o.interval_s), *([RedfishCollector(s)] if s.redfish_url else [])]),
    "gpu": Exporter(lambda s: s.gpu_exporter_port, _gpu),
    "ffmpeg": Exporter(lambda s: s.ffmpeg_exporter_port,
                       lambda s, o: [FFmpegCollector(s.progress_dir, retention_s=o.retention_s)]),
    "rtmp": Exporter(lambda s: s.rtmp_exporter_port, _rtmp),
}


def build_collectors(kind: str, settings: Settings, options: ExporterOptions) -> list[Any]:
    return [collector.start() for collector in EXPORTERS[kind].build(settings, options)]


class _BuildInfo:
    def __init__(self, kind: str, node: str) -> None:
        self.kind, self.node = kind, node

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        info = GaugeMetricFamily(f"{NAMESPACE}_exporter_info", "Which ffwatt exporter this is, on which node.",
                                 labels=["exporter", "node"])
        info.add_metric([self.kind, self.node], 1.0)
        return [info]


def serve(kind: str, listen: str | None, settings: Settings, options: ExporterOptions,
          stop: threading.Event | None = None) -> None:
    """Serve ``kind``'s collectors on ``listen`` (every interface at the kind's port setting when None)
    until SIGTERM/SIGINT (or ``stop`` is set)."""
    port_setting = EXPORTERS[kind].port(settings)
    host, port = parse_listen(f":{port_setting}" if listen is None else listen, port_setting)
    collectors = build_collectors(kind, settings, options)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CollectorSet(collectors))
    registry.register(_BuildInfo(kind, settings.node))
    try:
        server, _ = start_http_server(port, host, registry)
    except OSError as exc:
        for collector in collectors:
            collector.stop()
        holder = port_holder(host, port)
        raise ServiceError(f"the {kind} exporter can't listen on {host}:{port}: "
                           f"{f'held by {holder}' if holder else exc.strerror}; "
                           "choose another with --listen HOST:PORT") from exc
    log.info("ffwatt %s exporter on http://%s:%d/metrics", kind, host, port)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.shutdown()
        for collector in collectors:
            collector.stop()
