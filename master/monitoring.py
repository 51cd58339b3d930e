"""The master's metrics store and alerting, and a node's node_exporter, as background services.

- **VictoriaMetrics** (Debian ``victoria-metrics``) scrapes every target the discovery
  endpoint lists, every second, and the master's own ``/metrics`` (campaign results,
  batch heartbeats). Its data and retention are under ``FFWATT_HOME/monitoring``.
- **vmalert** (same package) evaluates ``infra/alerts/*.yml`` against it, writes the
  alerts' state back into it (``ALERTS``) and sends them to
- **Alertmanager** (Debian ``prometheus-alertmanager``), whose one receiver is a
  webhook: ``FFWATT_ALERT_WEBHOOK_URL``, or the discovery service's ``/alerts``,
  which appends them to ``FFWATT_HOME/stack/alerts.jsonl`` (sent with the stack's
  credentials, its password in ``FFWATT_HOME/monitoring/webhook-password``).
- **The gate** (nginx), when ``FFWATT_MASTER_HOST`` reaches past loopback: the store and
  Alertmanager then listen on loopback only, and the gate forwards the rest of the network to
  them, but not to the store's admin API (``delete_series``, snapshots) or Alertmanager's
  silences: those answer loopback callers only, whatever the master's address.
- **node_exporter** (Debian ``prometheus-node-exporter``) on each worker, with only the
  collectors whose readings ffwatt shows.

The configurations are built here, as data, both for ``ffwatt stack up`` and for the
committed compose files (``infra/compose/config/``; a test renders them again and compares).
"""

from __future__ import annotations

import ipaddress
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from ffwatt.errors import StackError
from ffwatt.fleet.services import Service, program
from ffwatt.ports import PORTS
from ffwatt.series import SCRAPE_S
from ffwatt.settings import REPO, Settings
from master.credentials import auth_string

__all__ = [
    "ALERT_RULES",
    "COMPOSE_CONFIG",
    "MONITORING_SERVICES",
    "MonitoringStatus",
    "alertmanager_config",
    "compose_configs",
    "gated",
    "monitoring_services",
    "monitoring_status",
    "scrape_config",
    "write_webhook_password",
]

SCRAPE_INTERVAL = f"{SCRAPE_S:g}s"
# http_sd is re-read this often (VictoriaMetrics' default, 1 min, would take a minute to see a new node).
SD_CHECK_INTERVAL = "2s"
# How long a sample stays hidden from /api/v1/query after it was scraped (default 30 s): at 1 s
# scrapes, dashboards and alerts would always lag half a minute.
LATENCY_OFFSET = "2s"
EVALUATION_INTERVAL = "5s"
ALERT_RULES = REPO / "infra" / "alerts"
MONITORING_SERVICES = ("metrics-store", "alertmanager", "monitoring-gate", "vmalert")  # in start order
GATE_TEMPLATE = REPO / "infra" / "nginx" / "ffwatt-monitoring.conf"
COMPOSE_CONFIG = REPO / "infra" / "compose" / "config"
# Compose: the user FFWATT_AUTH_STRING must name (the config is fixed), and the password Alertmanager's
# entrypoint writes from it, on its data volume: the one place it may write.
COMPOSE_WEBHOOK_USER = "ffwatt"
COMPOSE_WEBHOOK_PASSWORD = "/alertmanager/webhook-password"


def gated(settings: Settings) -> bool:
    """Whether the store and Alertmanager sit behind the gate: FFWATT_MASTER_HOST reaches past loopback
    (an address of another interface, every interface, or a name that may resolve to either)."""
    if settings.master_host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(settings.master_host.strip("[]")).is_loopback
    except ValueError:
        return True


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _store_own(settings: Settings) -> tuple[str, int]:
    """Where VictoriaMetrics itself listens: loopback behind the gate, else FFWATT_MASTER_HOST."""
    return ("127.0.0.1", settings.store_loopback_port) if gated(settings) else (settings.master_host,
                                                                              settings.store_port)


def _alertmanager_own(settings: Settings) -> tuple[str, int]:
    return ("127.0.0.1", settings.alertmanager_loopback_port) if gated(settings) else (settings.master_host,
                                                                                     settings.alertmanager_port)


def _alertmanager_url(settings: Settings) -> str:
    """Alertmanager as the master's own services reach it (vmalert, ``stack status``): past the gate."""
    return f"http://{_host_port(*_alertmanager_own(settings))}"


def _discovery(settings: Settings) -> str:
    return f"{settings.master_host}:{settings.discovery_port}"


def scrape_config(discovery: str, master_node: str, rtmp_exporter: str | None = None) -> dict[str, Any]:
    """Every node's targets from the discovery endpoint at ``discovery`` (host:port), and the master's
    own metrics there too, and its RTMP ingest's exporter at ``rtmp_exporter``. ``honor_labels``: an
    exporter's own ``node`` and ``exporter`` labels are the same as the target's, and the batch
    heartbeats' ``node`` is the batch's node, not the master."""
    jobs: list[dict[str, Any]] = [
        {"job_name": "ffwatt-nodes", "honor_labels": True,
         "http_sd_configs": [{"url": f"http://{discovery}/targets"}]},
        {"job_name": "ffwatt-master", "honor_labels": True,
         "static_configs": [{"targets": [discovery],
                             "labels": {"node": master_node, "exporter": "master", "pool": "master"}}]},
    ]
    if rtmp_exporter is not None:
        jobs.append({"job_name": "ffwatt-rtmp", "honor_labels": True,
                     "static_configs": [{"targets": [rtmp_exporter],
                                         "labels": {"node": master_node, "exporter": "rtmp", "pool": "master"}}]})
    return {"global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL}, "scrape_configs": jobs}


def alertmanager_config(webhook_url: str, user: str | None = None, password_file: str | None = None
                        ) -> dict[str, Any]:
    """One route, one webhook receiver; resolved alerts are sent too. ``user`` and ``password_file``:
    the stack's credentials, sent as basic auth (the discovery service's /alerts wants them; a webhook
    of someone else's never gets them)."""
    webhook: dict[str, Any] = {"url": webhook_url, "send_resolved": True}
    if user is not None:
        webhook["http_config"] = {"basic_auth": {"username": user, "password_file": password_file}}
    return {
        "route": {"receiver": "webhook", "group_by": ["alertname", "node"], "group_wait": "5s",
                  "group_interval": "1m", "repeat_interval": "4h"},
        "receivers": [{"name": "webhook", "webhook_configs": [webhook]}],
    }


def write_webhook_password(path: Path, credentials: str) -> tuple[str, Path]:
    """The user of ``credentials`` (user:password), and the file its password is written to, readable
    by this user only, as Alertmanager's ``password_file``."""
    user, _, password = credentials.partition(":")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(password)
    return user, path


def _yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def _write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_yaml(data))
    return path


def compose_configs() -> dict[str, str]:
    """What ``infra/compose/master.yaml`` mounts from ``infra/compose/config/``: the same configs as
    ``ffwatt stack up`` writes, with the compose services' names for hosts and the table's ports."""
    discovery = f"ffwatt-master:{PORTS['discovery'].number}"
    from master.ingest import render_config
    from master.tls import proxy_config

    nginx = proxy_config(prefix="/var/cache/nginx/ffwatt", listen=PORTS["prefect-api-tls"].number,
                         cert="/etc/ffwatt/tls/server.pem", key="/etc/ffwatt/tls/server-key.pem",
                         upstreams=[f"prefect-server:{PORTS['prefect-api'].number}"])

    rtmp = render_config("/tmp/ffwatt-rtmp", listen=str(PORTS["rtmp-ingest"].number),
                         stats_listen=str(PORTS["rtmp-stats"].number), allow="all")
    rtmp_exporter = f"rtmp-exporter:{PORTS['rtmp-exporter'].number}"
    return {"scrape.yml": _yaml(scrape_config(discovery, "master", rtmp_exporter)),
            # The compose file's Alertmanager writes this file from FFWATT_AUTH_STRING before it starts.
            "alertmanager.yml": _yaml(alertmanager_config(f"http://{discovery}/alerts", COMPOSE_WEBHOOK_USER,
                                                          COMPOSE_WEBHOOK_PASSWORD)),
            "nginx.conf": nginx, "rtmp.conf": rtmp}


def _store_service(settings: Settings, directory: Path) -> Service:
    config = _write_yaml(directory / "scrape.yml", scrape_config(
        _discovery(settings), settings.node, f"{settings.master_host}:{settings.rtmp_exporter_port}"))
    host, port = _store_own(settings)
    return Service("metrics-store", [
        program("victoria-metrics", "victoria-metrics"),
        f"-httpListenAddr={_host_port(host, port)}",
        f"-storageDataPath={directory / 'data'}",
        f"-retentionPeriod={settings.store_retention}",
        f"-promscrape.config={config}",
        f"-promscrape.httpSDCheckInterval={SD_CHECK_INTERVAL}",
        f"-search.latencyOffset={LATENCY_OFFSET}",
    ], {}, url=f"http://{_host_port(host, port)}", listen=(host, port))


def _alertmanager_service(settings: Settings, directory: Path) -> Service:
    if settings.alert_webhook_url:
        config = _write_yaml(directory / "alertmanager.yml", alertmanager_config(settings.alert_webhook_url))
    else:
        user, password = write_webhook_password(directory / "webhook-password", auth_string(settings))
        config = _write_yaml(directory / "alertmanager.yml",
                             alertmanager_config(f"http://{_discovery(settings)}/alerts", user, str(password)))
    return Service("alertmanager", [
        program("prometheus-alertmanager", "prometheus-alertmanager"),
        f"--config.file={config}",
        f"--storage.path={directory / 'alertmanager'}",
        f"--web.listen-address={_host_port(*_alertmanager_own(settings))}",
        "--cluster.listen-address=",  # one Alertmanager: no gossip port (9094) to collide with anything
    ], {}, url=_alertmanager_url(settings), listen=_alertmanager_own(settings))


def _gate_service(settings: Settings, directory: Path) -> Service:
    """nginx on FFWATT_MASTER_HOST at the store's and Alertmanager's ports, forwarding to them on loopback,
    but their admin API and silences only for loopback callers (infra/nginx/ffwatt-monitoring.conf)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise StackError(f"FFWATT_MASTER_HOST={settings.master_host} puts the store and Alertmanager behind a gate "
                         "that needs nginx: apt-get install nginx-light (or listen on 127.0.0.1)")
    prefix = directory / "gate"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(GATE_TEMPLATE.read_text().format(
        prefix=prefix, store_listen=_host_port(settings.master_host, settings.store_port),
        store_upstream=_host_port(*_store_own(settings)),
        alertmanager_listen=_host_port(settings.master_host, settings.alertmanager_port),
        alertmanager_upstream=_host_port(*_alertmanager_own(settings))))
    return Service("monitoring-gate", [nginx, "-e", "stderr", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                   {}, url=f"http://{_host_port(settings.master_host, settings.store_port)}",
                   listen=(settings.master_host, settings.store_port))


def _vmalert_service(settings: Settings) -> Service:
    store = f"http://{_host_port(*_store_own(settings))}"  # the master's own: past the gate
    return Service("vmalert", [
        program("vmalert", "victoria-metrics"),
        f"-rule={ALERT_RULES}/*.yml",
        f"-datasource.url={store}",
        f"-remoteWrite.url={store}",  # ALERTS series in the store, for dashboards
        f"-remoteRead.url={store}",  # and restored from it after a restart
        f"-notifier.url={_alertmanager_url(settings)}",
        f"-evaluationInterval={EVALUATION_INTERVAL}",
        f"-httpListenAddr={settings.master_host}:{settings.vmalert_port}",
        f"-external.url=http://{settings.master_host}:{settings.vmalert_port}",
    ], {}, url=f"http://{settings.master_host}:{settings.vmalert_port}",
        listen=(settings.master_host, settings.vmalert_port))


def monitoring_services(settings: Settings) -> list[Service]:
    """The store, Alertmanager and vmalert, in start order, their configs written under
    ``FFWATT_HOME/monitoring``."""
    directory = settings.home / "monitoring"
    gate = [_gate_service(settings, directory)] if gated(settings) else []
    return [_store_service(settings, directory), _alertmanager_service(settings, directory), *gate,
            _vmalert_service(settings)]


@dataclass(frozen=True)
class MonitoringStatus:
    store_url: str
    targets_up: int
    targets_down: list[str]  # "node/exporter (instance): error"
    firing: list[str]  # "alertname node: summary"
    error: str = ""  # why the figures are missing


def monitoring_status(settings: Settings, *, timeout_s: float = 5) -> MonitoringStatus:
    """Targets up and down (from the store) and firing alerts (from Alertmanager)."""
    url = settings.stack_store_url
    try:
        targets = httpx.get(f"{url}/api/v1/targets", timeout=timeout_s).raise_for_status().json()
        alerts = httpx.get(f"{_alertmanager_url(settings)}/api/v2/alerts", timeout=timeout_s,
                           params={"active": "true", "silenced": "false", "inhibited": "false"}
                           ).raise_for_status().json()
    except httpx.HTTPError as exc:
        return MonitoringStatus(url, 0, [], [], error=f"{type(exc).__name__}: {exc}")
    active = targets["data"]["activeTargets"]
    down = [f"{t['labels'].get('node', '?')}/{t['labels'].get('exporter', '?')} ({t['scrapeUrl']}): "
            f"{t.get('lastError') or t['health']}" for t in active if t["health"] != "up"]
    firing = [f"{a['labels'].get('alertname')} {a['labels'].get('node', '')}: "
              f"{a.get('annotations', {}).get('summary', '')}".strip() for a in alerts]
    return MonitoringStatus(url, len(active) - len(down), down, firing)


if __name__ == "__main__":  # python -m master.monitoring: write infra/compose/config/
    COMPOSE_CONFIG.mkdir(parents=True, exist_ok=True)
    for name, text in compose_configs().items():
        (COMPOSE_CONFIG / name).write_text(text)
        print(COMPOSE_CONFIG.relative_to(REPO) / name)
