"""Exporters: long-running HTTP servers that publish what a node's hardware and FFmpeg do.

``ffwatt exporter cpu|gpu|ffmpeg|rtmp`` starts one (rtmp on the master); :data:`exporters.server.EXPORTERS`
is the one table of what exists.
"""

from exporters._collector import Collector, CollectorSet, Sampler
from exporters.ffmpeg import FFmpegCollector
from exporters.gpu import GpuCollector
from exporters.rapl import RaplCollector
from exporters.rtmp import RtmpCollector
from exporters.server import EXPORTERS, ExporterOptions, build_collectors, serve

__all__ = [
    "EXPORTERS",
    "Collector",
    "CollectorSet",
    "ExporterOptions",
    "FFmpegCollector",
    "GpuCollector",
    "RaplCollector",
    "RtmpCollector",
    "Sampler",
    "build_collectors",
    "serve",
]
