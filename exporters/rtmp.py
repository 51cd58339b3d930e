"""The RTMP ingest's streams, publishers, players and bytes, from nginx-rtmp's statistics page.

The page (``rtmp_stat all``, XML) is read on each scrape: it is local to the master and answers
in a millisecond. An ingest that doesn't answer is ``ffwatt_rtmp_up 0``, not a failed collector:
the exporter works, the ingest doesn't, and an alert can say so. Streams are labels, so a
stream's series go when it ends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from xml.etree import ElementTree

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters._collector import NAMESPACE

__all__ = ["IngestStats", "RtmpCollector", "StreamStats", "parse_stats", "read_stats"]

log = logging.getLogger("ffwatt.exporters.rtmp")
_STREAM = ["application", "stream"]


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


class RtmpCollector:
    name = "rtmp"

    def __init__(self, stats_url: str, *, timeout_s: float = 0.5) -> None:
        self.stats_url = stats_url
        self.timeout_s = timeout_s
        self._warned = False
        self._client: httpx.Client | None = None

    def start(self) -> RtmpCollector:
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def collect(self) -> Iterable[Metric]:
        prefix = f"{NAMESPACE}_rtmp"
        up = GaugeMetricFamily(f"{prefix}_up", "1 when the ingest's statistics page answered, 0 when not.")
        try:
            if self._client is None:  # one for the collector's life: a new one each second costs ~20 ms of CPU
                self._client = httpx.Client()
            stats = read_stats(self.stats_url, timeout_s=self.timeout_s, client=self._client)
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: not XML (ElementTree.ParseError)
            if not self._warned:
                log.warning("the ingest's statistics page %s can't be read: %s", self.stats_url, exc)
                self._warned = True
            up.add_metric([], 0.0)
            yield up
            return
        self._warned = False
        up.add_metric([], 1.0)
        yield up
        yield CounterMetricFamily(f"{prefix}_accepted_connections", "Connections the ingest accepted since it "
                                  "started.", value=float(stats.accepted))
        yield CounterMetricFamily(f"{prefix}_received_bytes", "Bytes the ingest received since it started.",
                                  value=float(stats.bytes_in))
        yield CounterMetricFamily(f"{prefix}_sent_bytes", "Bytes the ingest sent since it started.",
                                  value=float(stats.bytes_out))
        streams = GaugeMetricFamily(f"{prefix}_streams", "Streams the ingest knows: published, or awaited by "
                                    "players.", labels=["application"])
        publishers = GaugeMetricFamily(f"{prefix}_publishers", "Clients publishing a stream.", labels=["application"])
        players = GaugeMetricFamily(f"{prefix}_players", "Clients playing a stream (waiting for one too).",
                                    labels=["application"])
        for application in sorted({s.application for s in stats.streams}):
            mine = [s for s in stats.streams if s.application == application]
            streams.add_metric([application], float(len(mine)))
            publishers.add_metric([application], float(sum(s.publishing for s in mine)))
            players.add_metric([application], float(sum(s.players for s in mine)))
        yield from (streams, publishers, players)
        per_stream = (
            (GaugeMetricFamily, "stream_publishing", "1 while the stream has a publisher.",
             lambda s: float(s.publishing)),
            (GaugeMetricFamily, "stream_players", "Clients playing the stream.", lambda s: float(s.players)),
            (CounterMetricFamily, "stream_received_bytes", "Bytes received from the stream's publisher.",
             lambda s: float(s.bytes_in)),
            (CounterMetricFamily, "stream_sent_bytes", "Bytes sent to the stream's players.",
             lambda s: float(s.bytes_out)),
            (CounterMetricFamily, "stream_dropped_packets",
             "Packets the ingest dropped for players too slow to take them.", lambda s: float(s.dropped)),
        )
        for family_type, suffix, help_text, value_of in per_stream:
            family = family_type(f"{prefix}_{suffix}", help_text, labels=_STREAM)
            for stream in stats.streams:
                family.add_metric([stream.application, stream.name], value_of(stream))
            yield family
