"""One settings object for a node, read from ``FFWATT_*`` environment variables.

Settings describe the machine a piece of code runs on (where FFmpeg is, where
results and caches live, how to reach the hardware), so each process builds its
own with :func:`load_settings` rather than receiving the master's copy.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ffwatt.errors import SettingsError
from ffwatt.ports import PORTS

__all__ = ["REPO", "Settings", "load_settings"]

# The checkout ffwatt runs from: deployments/ and infra/ templates are read from it, and every
# node of a fleet runs the same checkout at the same path (the deployments' pull step).
REPO = Path(__file__).resolve().parent.parent


def _port(name: str, description: str) -> Any:
    """A port setting, its default from the one port table (:data:`ffwatt.ports.PORTS`)."""
    return Field(default=PORTS[name].number, ge=1, le=65535, description=description)


class Settings(BaseSettings):
    """Node configuration. Every field can be set as ``FFWATT_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="FFWATT_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path.cwd() / ".ffwatt",
        description="State of this node: caches, kept outputs, logs, pid files.",
    )
    results_dir: Path = Field(
        default_factory=lambda: Path.cwd() / "results",
        description="Root of the Parquet results dataset.",
    )
    ffmpeg: str | None = Field(
        default=None,
        description="FFmpeg binary to use; the imageio-ffmpeg build when unset.",
    )
    node: str = Field(default_factory=socket.gethostname, description="Name of this node in results.")
    powercap_root: Path = Field(
        default=Path("/sys/class/powercap"), description="Root of the Linux powercap (RAPL) tree."
    )
    proc_root: Path = Field(default=Path("/proc"), description="Root of procfs.")
    sys_root: Path = Field(default=Path("/sys"), description="Root of sysfs: temperatures, frequencies and "
                                                             "throttle counters recorded with each job.")
    cpu_tdp_w: float | None = Field(
        default=None,
        gt=0,
        description="CPU package power (W) used for energy estimates when RAPL is unreadable.",
    )
    gpu: bool = Field(default=True, description="Meter NVIDIA GPUs through NVML when present.")
    price_per_kwh: float | None = Field(
        default=None, ge=0, description="Electricity price per kWh on this node, for the cost column."
    )
    co2_g_per_kwh: float | None = Field(
        default=None, ge=0, description="Grid carbon intensity (g CO2 per kWh) on this node, for co2_g."
    )
    master_host: str = Field(default="127.0.0.1", description="Address the master's services listen on.")
    master_port: int = _port("prefect-api", "Port of the Prefect API on the master.")
    master_tls_port: int = _port("prefect-api-tls", "Port of the TLS proxy in front of the API.")
    discovery_port: int = _port("discovery", "Port of the scrape-target discovery endpoint.")
    store_port: int = _port("metrics-store", "Port of the metrics store (VictoriaMetrics) on the master.")
    store_url: str | None = Field(
        default=None,
        description="Metrics store (VictoriaMetrics) that jobs' series are read from. Unset: a local campaign "
                    "reads its node's exporters itself, once a second; a campaign on the pools reads the stack's "
                    "store, http://FFWATT_MASTER_HOST:FFWATT_STORE_PORT.")
    store_retention: str = Field(
        default="30d", pattern=r"^[0-9]+[hdwy]?$",
        description="How long the store keeps samples: a number with h, d, w or y (months without).")
    vmalert_port: int = _port("vmalert", "Port of vmalert (alert rule evaluation) on the master.")
    alertmanager_port: int = _port("alertmanager", "Port of Alertmanager on the master.")
    store_loopback_port: int = _port("metrics-store-loopback", "Port of the store on the master's loopback, behind "
                                     "the gate, when FFWATT_MASTER_HOST isn't loopback.")
    alertmanager_loopback_port: int = _port("alertmanager-loopback", "Port of Alertmanager on the master's "
                                            "loopback, behind the gate, when FFWATT_MASTER_HOST isn't loopback.")
    alert_webhook_url: str | None = Field(
        default=None,
        description="Where Alertmanager posts alerts; the master's discovery service (which logs them to "
                    "FFWATT_HOME/stack/alerts.jsonl) when unset.")
    agent_port: int = _port("agent", "Port of an agent's wake-up endpoint (POST /wake).")
    worker_heartbeat_s: int = Field(
        default=10, ge=1, le=300,
        description="Seconds between a worker's heartbeats, at least; a larger fleet beats slower (see "
                    "FFWATT_FLEET_API_BUDGET_RPS). A node silent for three of its beats is offline.")
    worker_poll_s: float = Field(
        default=10.0, gt=0, le=300,
        description="Seconds between a node's polls for batches when no wake-up comes (each is an API read), at "
                    "least; a larger fleet polls slower.")
    fleet_api_budget_rps: float = Field(
        default=50.0, gt=0,
        description="API calls per second the fleet's heartbeats, polls and record reads may cost the master "
                    "together: its discovery service stretches the nodes' intervals with the fleet's size to stay "
                    "under it (Nomad's max_heartbeats_per_second). Raise it with the API's processes.")
    api_processes: int = Field(
        default=1, ge=1, le=64,
        description="API processes of the master's Prefect server. Above 1, `ffwatt stack up` runs Prefect's "
                    "scaled-out shape: that many API processes on the one port, one process for its loop services, "
                    "and Redis (on a unix socket only the stack's user reaches) for their messaging; it needs "
                    "PostgreSQL. Raise FFWATT_FLEET_API_BUDGET_RPS with it.")
    redis_url: str | None = Field(
        default=None, pattern=r"^(redis|rediss|unix)://\S+$",
        description="The Redis that the API machines of a master spread over several machines share, e.g. "
                    "redis://:password@10.0.0.5:6379/0: `ffwatt stack up` (and `--api-only` on the other API "
                    "machines) then runs the scaled-out shape on it and starts no Redis of its own.")
    api_peers: str = Field(
        default="", pattern=r"^([^\s,:]+:\d+(,[^\s,:]+:\d+)*)?$",
        description="The other API machines (host:port, comma-separated) that the master's TLS proxy spreads "
                    "requests over beside its own API: the ones `ffwatt stack up --api-only` started.")
    master_poll_s: float = Field(default=1.0, gt=0, le=60,
                                 description="Seconds between the master worker's polls for campaign runs.")
    cpu_exporter_port: int = _port("exporter-cpu", "Port of the CPU energy exporter an agent starts.")
    gpu_exporter_port: int = _port("exporter-gpu", "Port of the GPU exporter an agent starts.")
    ffmpeg_exporter_port: int = _port("exporter-ffmpeg", "Port of the FFmpeg progress exporter an agent starts.")
    node_exporter_port: int = _port("node-exporter", "Port of node_exporter on a worker node.")
    rtmp_port: int = _port("rtmp-ingest", "Port of the master's RTMP ingest (nginx-rtmp).")
    rtmp_stats_port: int = _port("rtmp-stats", "Port of the ingest's statistics page, on the master's loopback.")
    rtmp_exporter_port: int = _port("rtmp-exporter",
                                    "Port of the exporter that turns the ingest's statistics into metrics.")
    rtmp_allow: str = Field(
        default="127.0.0.1,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16",
        pattern=r"^(all|[0-9A-Fa-f.:/]+)(,[0-9A-Fa-f.:/]+)*$",
        description="Who may publish to and play from the ingest: comma-separated addresses or networks, or "
                    "all. The default is loopback and the private networks a fleet runs on.")
    ingest_url: str | None = Field(
        default=None, pattern=r"^rtmp://[^/\s]+/[A-Za-z0-9_-]+$",
        description="RTMP application live jobs publish to and pull from, e.g. rtmp://master:1935/live; when "
                    "unset, the live application on the host of PREFECT_API_URL (the master), else on "
                    "FFWATT_MASTER_HOST, at FFWATT_RTMP_PORT.")
    input_dirs: str = Field(
        default="",
        description="Directories (':'-separated) a campaign's file inputs may be read from when the campaign "
                    "arrives through the API (a fleet's batches, a deployment run on the master), so no one can "
                    "make a worker open /etc/shadow to learn what exists there; empty: FFWATT_HOME/inputs. A "
                    "campaign run with `ffwatt campaign run` reads its inputs wherever its YAML says.")
    redfish_url: str | None = Field(
        default=None, pattern=r"^https?://\S+$",
        description="The node's wall power: a Redfish chassis Power resource on its BMC, e.g. "
                    "https://bmc/redfish/v1/Chassis/1/Power (PowerControl[].PowerConsumedWatts); unset: none.")
    redfish_user: str = Field(default="", description="Redfish basic-auth user.")
    redfish_password: SecretStr = Field(default=SecretStr(""), description="Redfish basic-auth password.")
    redfish_verify_tls: bool = Field(default=True, description="Verify the BMC's TLS certificate (false: "
                                                               "self-signed BMCs, on a network you trust).")
    redfish_interval_s: float = Field(default=2.0, ge=0.5, le=60,
                                      description="Seconds between wall power readings during a job.")
    cgroup_root: Path | None = Field(
        default=None, description="cgroup v2 directory each job's cgroup is made in (delegated to this user); "
                                  "unset: this process's own cgroup. Where none can be made, rusage stands in.")
    progress_log_interval_s: float = Field(
        default=2.0, gt=0, description="How often a running encode logs its progress."
    )

    @property
    def master_api_url(self) -> str:
        """The master's Prefect API as the master itself reaches it (no TLS proxy)."""
        return f"http://{self.master_host}:{self.master_port}/api"

    @property
    def stack_store_url(self) -> str:
        """The stack's metrics store (``store_url`` may name another)."""
        return f"http://{self.master_host}:{self.store_port}"

    @property
    def rtmp_stats_url(self) -> str:
        """The ingest's statistics page, on the master's loopback."""
        return f"http://127.0.0.1:{self.rtmp_stats_port}/stat"

    @property
    def run_dir(self) -> Path:
        """Background services' pid files and logs (:mod:`ffwatt.fleet.services`)."""
        return self.home / "run"

    @property
    def stack_dir(self) -> Path:
        """The master's own state: API credentials (``auth``), TLS, service configurations, alerts."""
        return self.home / "stack"

    @property
    def tls_dir(self) -> Path:
        """The master's CA and server certificate (``ffwatt stack up --generate-cert``)."""
        return self.stack_dir / "tls"

    @property
    def auth_file(self) -> Path:
        """The master's API credentials (user:password, mode 600)."""
        return self.stack_dir / "auth"

    @property
    def idle_dir(self) -> Path:
        """This node's idle baselines: the latest, and each run's."""
        return self.home / "idle"

    @property
    def allowed_input_dirs(self) -> list[Path]:
        """Where file inputs of campaigns that arrive through the API may be (``input_dirs``)."""
        listed = [Path(part).expanduser() for part in self.input_dirs.split(":") if part.strip()]
        return listed or [self.home / "inputs"]

    @property
    def exporter_ports(self) -> dict[str, int]:
        """The ports of this node's exporters, by kind (``ffwatt exporter KIND``)."""
        return {"cpu": self.cpu_exporter_port, "gpu": self.gpu_exporter_port, "ffmpeg": self.ffmpeg_exporter_port}

    @property
    def cache_dir(self) -> Path:
        """Generated reference clips, shared by every campaign on this node."""
        return self.home / "cache"

    @property
    def progress_dir(self) -> Path:
        """Running jobs' progress, read by the FFmpeg exporter."""
        return self.home / "progress"

    @property
    def outputs_dir(self) -> Path:
        """Encoded outputs of campaigns that keep them."""
        return self.home / "outputs"


def load_settings(**overrides: object) -> Settings:
    """Build the settings of the current process from its environment; a bad ``FFWATT_*`` value
    raises :class:`SettingsError` naming the variable, the value and what is expected."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            variable = "FFWATT_" + "_".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{variable}={error.get('input')!r}: {error['msg']}")
        raise SettingsError("; ".join(problems) + "; fix or unset it") from exc
