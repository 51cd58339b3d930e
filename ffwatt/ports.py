"""Every port ffwatt serves or expects, in one table.

The settings take their defaults from here, the agent and the exporters read the
exporter ports from here, and docs/production.md's port table is checked against
it, so no two services are ever given the same port.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from ffwatt.errors import SettingsError

__all__ = ["PORTS", "Port", "conflicts", "parse_listen"]


@dataclass(frozen=True)
class Port:
    number: int
    service: str
    where: str  # master, node, or compose (only in infra/compose)
    setting: str  # how to change it


PORTS: dict[str, Port] = {
    "prefect-api": Port(4200, "Prefect server: API and UI", "master", "FFWATT_MASTER_PORT"),
    "prefect-api-tls": Port(4443, "TLS proxy in front of the Prefect API (nginx)", "master",
                            "FFWATT_MASTER_TLS_PORT"),
    "discovery": Port(9599, "Discovery (HTTP SD targets), node list, master /metrics, alert webhook", "master",
                      "FFWATT_DISCOVERY_PORT"),
    "exporter-cpu": Port(9510, "CPU energy exporter (RAPL or estimate)", "node", "FFWATT_CPU_EXPORTER_PORT"),
    "exporter-gpu": Port(9511, "GPU exporter (NVML)", "node", "FFWATT_GPU_EXPORTER_PORT"),
    "exporter-ffmpeg": Port(9506, "FFmpeg progress exporter", "node", "FFWATT_FFMPEG_EXPORTER_PORT"),
    "agent": Port(9513, "Agent: wake-up endpoint (POST /wake) the dispatcher calls after sending a batch", "node",
                  "FFWATT_AGENT_PORT"),
    "rtmp-ingest": Port(1935, "nginx-rtmp ingest: live streams published and pulled (RTMP)", "master",
                        "FFWATT_RTMP_PORT"),
    "rtmp-stats": Port(8935, "nginx-rtmp statistics page (XML), on the master's loopback only", "master",
                       "FFWATT_RTMP_STATS_PORT"),
    "rtmp-exporter": Port(9512, "RTMP exporter: the ingest's streams, publishers, players and bytes", "master",
                          "FFWATT_RTMP_EXPORTER_PORT"),
    "node-exporter": Port(9100, "Prometheus node_exporter (CPU, frequency, temperatures, memory, disks)", "node",
                          "FFWATT_NODE_EXPORTER_PORT"),
    "metrics-store": Port(8428, "VictoriaMetrics: scrapes every target at 1 s, query API for Grafana", "master",
                          "FFWATT_STORE_PORT"),
    "vmalert": Port(8880, "vmalert: evaluates infra/alerts/ against the store", "master", "FFWATT_VMALERT_PORT"),
    "alertmanager": Port(9093, "Alertmanager: groups alerts, sends them to the webhook", "master",
                         "FFWATT_ALERTMANAGER_PORT"),
    # Behind the monitoring gate (nginx) when FFWATT_MASTER_HOST isn't loopback: the store's admin API and
    # Alertmanager's silences answer on loopback only.
    "metrics-store-loopback": Port(18428, "VictoriaMetrics itself, on loopback, behind the gate when "
                                   "FFWATT_MASTER_HOST isn't loopback", "master", "FFWATT_STORE_LOOPBACK_PORT"),
    "alertmanager-loopback": Port(19093, "Alertmanager itself, on loopback, behind the gate when "
                                  "FFWATT_MASTER_HOST isn't loopback", "master", "FFWATT_ALERTMANAGER_LOOPBACK_PORT"),
    "grafana": Port(3000, "Grafana with infra/grafana/provisioning", "compose", "infra/compose/master.yaml"),
    "postgres": Port(5432, "PostgreSQL behind the Prefect server", "compose", "infra/compose/master.yaml"),
}

def parse_listen(listen: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (every interface) or ``HOST``; :class:`SettingsError` names what is
    wrong with anything else, before anything is started."""
    if not listen.strip():
        raise SettingsError(f"--listen is empty; give HOST:PORT, e.g. 127.0.0.1:{default_port} "
                            f"(or :{default_port} for every interface)")
    host, sep, port_text = listen.rpartition(":")
    if not sep:
        host, port_text = listen, str(default_port)
    host = host.strip("[]") or "0.0.0.0"
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise SettingsError(f"--listen {listen!r}: {port_text!r} is not a port (1-65535); give HOST:PORT, "
                            f"e.g. 127.0.0.1:{default_port}")
    try:
        socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SettingsError(f"--listen {listen!r}: unknown host {host!r} ({exc.strerror}); give an address "
                            "of this machine, e.g. 127.0.0.1") from exc
    return host, int(port_text)


def conflicts(ports: dict[str, Port] = PORTS) -> list[tuple[str, str, int]]:
    """Pairs of services given the same port number (the table's invariant: none)."""
    seen: dict[int, str] = {}
    found = []
    for name, port in ports.items():
        if port.number in seen:
            found.append((seen[port.number], name, port.number))
        seen.setdefault(port.number, name)
    return found
