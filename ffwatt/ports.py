"""Every port ffwatt serves or expects, in one table.

The settings take their defaults from here, the agent and the exporters read the
exporter ports from here, and docs/production.md's port table is checked against
it, so no two services are ever given the same port.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EXPORTER_PORTS", "PORTS", "Port"]


@dataclass(frozen=True)
class Port:
    number: int
    service: str
    where: str  # master or node
    setting: str  # how to change it


PORTS: dict[str, Port] = {
    "prefect-api": Port(4200, "Prefect server: API and UI", "master", "FFWATT_MASTER_PORT"),
    "prefect-api-tls": Port(4443, "TLS proxy in front of the Prefect API (nginx)", "master",
                            "FFWATT_MASTER_TLS_PORT"),
    "discovery": Port(9599, "Scrape-target discovery (HTTP SD) and node list", "master", "FFWATT_DISCOVERY_PORT"),
    "exporter-cpu": Port(9510, "CPU energy exporter (RAPL or estimate)", "node", "ffwatt exporter cpu --listen"),
    "exporter-gpu": Port(9511, "GPU exporter (NVML)", "node", "ffwatt exporter gpu --listen"),
    "exporter-ffmpeg": Port(9506, "FFmpeg progress exporter", "node", "ffwatt exporter ffmpeg --listen"),
}

EXPORTER_PORTS: dict[str, int] = {
    name.removeprefix("exporter-"): port.number for name, port in PORTS.items() if name.startswith("exporter-")
}
