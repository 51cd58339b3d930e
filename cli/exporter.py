"""``ffwatt exporter cpu|gpu|ffmpeg|rtmp``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ffwatt.settings import load_settings

app = typer.Typer(help="Run a metrics exporter (Prometheus format) on this node.", no_args_is_help=True)

Listen = Annotated[str | None, typer.Option(
    "--listen", help="HOST:PORT to serve /metrics on [default: every interface, at the exporter's FFWATT_*_PORT]")]
Interval = Annotated[float, typer.Option("--interval", help="Seconds between background samples.")]


def _run(kind: str, listen: str | None, **options: object) -> None:
    from exporters.server import ExporterOptions, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(kind, listen, load_settings(), ExporterOptions(**options))  # type: ignore[arg-type]


@app.command()
def cpu(
    listen: Listen = None,
    interval: Interval = 1.0,
    powercap_root: Annotated[Path | None, typer.Option(help="Powercap tree (default /sys/class/powercap).")] = None,
    tdp_w: Annotated[float | None, typer.Option(help="CPU package power for the estimate.")] = None,
) -> None:
    """CPU energy from RAPL counters (or a labelled estimate where they can't be read); port
    FFWATT_CPU_EXPORTER_PORT."""
    import os

    if powercap_root is not None:
        os.environ["FFWATT_POWERCAP_ROOT"] = str(powercap_root)
    if tdp_w is not None:
        os.environ["FFWATT_CPU_TDP_W"] = str(tdp_w)
    _run("cpu", listen, interval_s=interval)


@app.command()
def gpu(
    listen: Listen = None,
    interval: Interval = 1.0,
    replay: Annotated[Path | None, typer.Option(help="Play back recorded NVML readings (JSON probe file).")] = None,
) -> None:
    """NVIDIA GPU energy, power, utilisation (encoder/decoder too) through NVML; port
    FFWATT_GPU_EXPORTER_PORT."""
    _run("gpu", listen, interval_s=interval, replay=replay)


@app.command()
def ffmpeg(
    listen: Listen = None,
    retention: Annotated[float, typer.Option(help="Seconds a finished job's series stay.")] = 10.0,
) -> None:
    """Progress of the FFmpeg jobs running on this node; port FFWATT_FFMPEG_EXPORTER_PORT."""
    _run("ffmpeg", listen, retention_s=retention)


@app.command()
def rtmp(
    listen: Listen = None,
    stats_url: Annotated[str | None, typer.Option(
        help="The ingest's statistics page (default: this master's, on loopback).")] = None,
) -> None:
    """Streams, publishers, players and bytes of the master's RTMP ingest (nginx-rtmp); port
    FFWATT_RTMP_EXPORTER_PORT."""
    _run("rtmp", listen, stats_url=stats_url)
