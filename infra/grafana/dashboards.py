"""ffwatt's Grafana dashboards as code (Grafana's grafana-foundation-sdk), written as the JSON
that Grafana's provisioning loads from ``infra/grafana/provisioning/dashboards/``.

Regenerate after editing: ``make dashboards``. A test fails when the
committed JSON differs from what this module builds, and another runs every panel query
against a VictoriaMetrics that scraped a real campaign: each must return a series.

Every query uses only series that ffwatt's exporters (docs/metrics.md), the master's
``/metrics``, node_exporter or the store (``up``, vmalert's ``ALERTS``) emit. Measured and
estimated energy have different metric names and are never added together: each has its
own panel, and the results' ``estimated`` label is shown wherever a results figure is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from ffwatt.settings import REPO

__all__ = ["DASHBOARD_DIR", "DATASOURCE_UID", "build_dashboards", "render", "write"]

DASHBOARD_DIR = REPO / "infra" / "grafana" / "provisioning" / "dashboards"
DATASOURCE_UID = "victoriametrics"  # infra/grafana/provisioning/datasources/victoriametrics.yaml
_DS = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
_RATE = "$__rate_interval"


def _query(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).ref_id(ref).legend_format(legend or "__auto")
    if instant:
        query = query.instant().format("table")  # type: ignore[arg-type]
    return query


def _series(title: str, unit: str, *queries: prometheus.Dataquery, description: str = "",
            width: int = 12) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(_DS).span(width).height(8)
    if description:
        panel = panel.description(description)
    for query in queries:
        panel = panel.with_target(query)
    return panel


def _stat(title: str, unit: str, query: prometheus.Dataquery, *, description: str = "",
          width: int = 6) -> stat.Panel:
    panel = stat.Panel().title(title).unit(unit).datasource(_DS).span(width).height(4).with_target(query)
    return panel.description(description) if description else panel


def _table(title: str, *queries: prometheus.Dataquery, description: str = "", width: int = 24) -> table.Panel:
    panel = table.Panel().title(title).datasource(_DS).span(width).height(8)
    if description:
        panel = panel.description(description)
    for query in queries:
        panel = panel.with_target(query)
    return panel


def _variable(name: str, query: str, label: str = "") -> dashboard.QueryVariable:
    return (dashboard.QueryVariable(name).label(label or name).query(query).datasource(_DS)
            .multi(True).include_all(True).all_value(".*").refresh(2))  # type: ignore[arg-type]


def _dashboard(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (dashboard.Dashboard(title).uid(uid).description(description).tags(["ffwatt"])
            .refresh("5s").time("now-30m", "now").timezone("browser"))


def fleet_power() -> dashboard.Dashboard:
    where = 'node=~"$node", pool=~"$pool"'
    return (
        _dashboard("ffwatt-fleet-power", "ffwatt · fleet power",
                   "Watts per node, CPU and GPU, measured and estimated apart: they are never added together.")
        .with_variable(_variable("pool", 'label_values(up{job="ffwatt-nodes"}, pool)'))
        .with_variable(_variable("node", 'label_values(up{job="ffwatt-nodes", pool=~"$pool"}, node)'))
        .with_panel(_series(
            "CPU package power: measured (RAPL)", "watt",
            _query(f'sum by (node) (rate(ffwatt_rapl_energy_joules_total{{kind="package", {where}}}[{_RATE}]))',
                   "{{node}}"),
            description="Packages only: subzones are parts of their package and psys covers the platform."))
        .with_panel(_series(
            "CPU power: ESTIMATED (power model, no RAPL)", "watt",
            _query(f"sum by (node) (rate(ffwatt_cpu_estimated_energy_joules_total{{{where}}}[{_RATE}]))",
                   "{{node}} (estimated)"),
            description="Nodes whose RAPL can't be read: busy time times the model in ffwatt_cpu_power_model_info. "
                        "Not a measurement."))
        .with_panel(_series(
            "GPU power: measured (NVML energy counter)", "watt",
            _query(f"sum by (node, index) (rate(ffwatt_gpu_energy_joules_total{{{where}}}[{_RATE}]))",
                   "{{node}} GPU {{index}}"),
            description="From the energy counter, which misses nothing between samples, not the power gauge."))
        .with_panel(_series(
            "Measured CPU vs GPU per node", "watt",
            _query(f'sum by (node) (rate(ffwatt_rapl_energy_joules_total{{kind="package", {where}}}[{_RATE}]))',
                   "{{node}} CPU", "A"),
            _query(f"sum by (node) (rate(ffwatt_gpu_energy_joules_total{{{where}}}[{_RATE}]))", "{{node}} GPU", "B"),
            description="Measured sources only, side by side."))
        .with_panel(_series(
            "CPU utilisation", "percentunit",
            _query(f"ffwatt_cpu_utilization_ratio{{{where}}}", "{{node}}")))
        .with_panel(_series(
            "GPU power limit", "watt",
            _query(f"ffwatt_gpu_power_limit_watts{{{where}}}", "{{node}} GPU {{index}}")))
        .with_panel(_table(
            "Energy source per node",
            _query(f"ffwatt_rapl_readable{{{where}}}", "", "A", instant=True),
            _query(f"ffwatt_cpu_power_model_info{{{where}}}", "", "B", instant=True),
            description="ffwatt_rapl_readable 1: CPU energy is measured; 0: estimated, on the basis shown."))
    )


def live_jobs() -> dashboard.Dashboard:
    where = 'campaign=~"$campaign", encoder=~"$encoder", node=~"$node"'
    legend = "{{job_id}} {{stream}} {{encoder}} {{preset}} on {{node}}"  # stream: a live job's, one per stream
    return (
        _dashboard("ffwatt-live-jobs", "ffwatt · live jobs",
                   "Each running job's FFmpeg progress (each stream's, for a live job), from the ffmpeg "
                   "exporter of its node.")
        .with_variable(_variable("campaign", "label_values(ffwatt_ffmpeg_running, campaign)"))
        .with_variable(_variable("encoder", 'label_values(ffwatt_ffmpeg_running{campaign=~"$campaign"}, encoder)'))
        .with_variable(_variable(
            "node", 'label_values(ffwatt_ffmpeg_running{campaign=~"$campaign", encoder=~"$encoder"}, node)'))
        .with_panel(_series("Jobs running per node", "none",
                            _query(f"sum by (node) (ffwatt_ffmpeg_running{{{where}}})", "{{node}}"), width=24))
        .with_panel(_series("Encoding rate", "fps", _query(f"ffwatt_ffmpeg_fps{{{where}}}", legend)))
        .with_panel(_series("Speed (media time per wall time)", "x",
                            _query(f"ffwatt_ffmpeg_speed_ratio{{{where}}}", legend)))
        .with_panel(_series("Frames encoded", "none", _query(f"ffwatt_ffmpeg_frames_total{{{where}}}", legend)))
        .with_panel(_series("Dropped and duplicated frames", "none",
                            _query(f"ffwatt_ffmpeg_dropped_frames_total{{{where}}}", "dropped: " + legend, "A"),
                            _query(f"ffwatt_ffmpeg_duplicated_frames_total{{{where}}}", "duplicated: " + legend,
                                   "B")))
        .with_panel(_series("Output bitrate", "bps",
                            _query(f"ffwatt_ffmpeg_bitrate_bits_per_second{{{where}}}", legend)))
        .with_panel(_series("Output written", "bytes", _query(f"ffwatt_ffmpeg_output_bytes{{{where}}}", legend)))
    )


def campaign_efficiency() -> dashboard.Dashboard:
    where = 'campaign=~"$campaign", encoder=~"$encoder"'
    legend = "{{config}} on {{node}} (estimated={{estimated}})"
    return (
        _dashboard("ffwatt-campaign-efficiency", "ffwatt · campaign efficiency",
                   "Each campaign's latest run per configuration, from the master's /metrics "
                   "(the figures of the HTML report). estimated=true: the energy rests on an estimate.")
        .with_variable(_variable("campaign", "label_values(ffwatt_results_jobs, campaign)"))
        .with_variable(_variable("encoder", 'label_values(ffwatt_results_jobs{campaign=~"$campaign"}, encoder)'))
        .with_panel(_series("Joules per frame by configuration", "J",
                            _query(f"ffwatt_results_joules_per_frame{{{where}}}", legend)))
        .with_panel(_series("VMAF per joule by configuration", "none",
                            _query(f"ffwatt_results_vmaf_per_joule{{{where}}}", legend)))
        .with_panel(_series(
            "Joules per frame by encoder and preset", "J",
            _query(f"avg by (campaign, encoder, preset, estimated) (ffwatt_results_joules_per_frame{{{where}}})",
                   "{{encoder}} {{preset}} (estimated={{estimated}})"),
            description="Mean over configurations; measured and estimated stay apart (the estimated label)."))
        .with_panel(_series(
            "VMAF per joule by encoder and preset", "none",
            _query(f"avg by (campaign, encoder, preset, estimated) (ffwatt_results_vmaf_per_joule{{{where}}})",
                   "{{encoder}} {{preset}} (estimated={{estimated}})")))
        .with_panel(_table(
            "Configurations of the latest runs",
            _query(f"ffwatt_results_joules_per_frame{{{where}}}", "", "A", instant=True),
            _query(f"ffwatt_results_vmaf_per_joule{{{where}}}", "", "B", instant=True),
            _query(f"ffwatt_results_vmaf{{{where}}}", "", "C", instant=True),
            _query(f"ffwatt_results_encode_fps{{{where}}}", "", "D", instant=True),
            _query(f"ffwatt_results_jobs{{{where}}}", "", "E", instant=True)))
    )


def node_health() -> dashboard.Dashboard:
    where = 'node=~"$node"'
    return (
        _dashboard("ffwatt-node-health", "ffwatt · node health",
                   "Are the targets scraped, do the collectors work, can RAPL and NVML be read, how hot and fast.")
        .with_variable(_variable("node", "label_values(up, node)"))
        .with_panel(_stat("Targets up", "none", _query(f"sum(up{{{where}}})")))
        .with_panel(_stat("Targets down", "none", _query(f"sum(1 - up{{{where}}})")))
        .with_panel(_stat("Alerts pending or firing", "none",
                          _query("count(ALERTS) or vector(0)"),
                          description="From vmalert, written back into the store; Alertmanager has the details."))
        .with_panel(_stat("Nodes with estimated CPU energy", "none",
                          _query(f"count(ffwatt_rapl_readable{{{where}}} == 0) or vector(0)")))
        .with_panel(_series("Scrape targets (1 up, 0 down)", "none",
                            _query(f"up{{{where}}}", "{{node}} {{exporter}}"), width=24))
        .with_panel(_series(
            "Collector success", "none",
            _query(f"ffwatt_scrape_collector_success{{{where}}}", "{{node}} {{exporter}}/{{collector}}", "A"),
            _query(f"node_scrape_collector_success{{{where}}}", "{{node}} node_exporter/{{collector}}", "B")))
        .with_panel(_series(
            "Sampler: seconds since last good reading", "s",
            _query(f"ffwatt_sampler_last_success_age_seconds{{{where}}}", "{{node}} {{sampler}}")))
        .with_panel(_table(
            "RAPL and NVML",
            _query(f"ffwatt_rapl_unreadable_info{{{where}}}", "", "A", instant=True),
            _query(f"ffwatt_gpu_nvml_info{{{where}}}", "", "B", instant=True),
            description="Why RAPL can't be read (its node's CPU energy is then estimated); NVML's driver or why "
                        "it is unavailable."))
        .with_panel(_series(
            "Temperatures", "celsius",
            _query(f"ffwatt_gpu_temperature_celsius{{{where}}}", "{{node}} GPU {{index}}", "A"),
            _query(f"node_hwmon_temp_celsius{{{where}}}", "{{node}} {{chip}} {{sensor}}", "B"),
            _query(f"node_thermal_zone_temp{{{where}}}", "{{node}} {{type}} zone {{zone}}", "C")))
        .with_panel(_series(
            "Frequency", "hertz",
            _query(f"node_cpu_scaling_frequency_hertz{{{where}}}", "{{node}} CPU {{cpu}}", "A"),
            _query(f"ffwatt_gpu_sm_clock_hertz{{{where}}}", "{{node}} GPU {{index}} SM", "B")))
        .with_panel(_series(
            "CPU busy (node_exporter)", "percentunit",
            _query(f'1 - avg by (node) (rate(node_cpu_seconds_total{{mode="idle", {where}}}[{_RATE}]))', "{{node}}")))
        .with_panel(_series(
            "CPU pressure: time some task waited", "percentunit",
            _query(f"rate(node_pressure_cpu_waiting_seconds_total{{{where}}}[{_RATE}])", "{{node}}")))
        .with_panel(_series("Memory available", "bytes",
                            _query(f"node_memory_MemAvailable_bytes{{{where}}}", "{{node}}")))
        .with_panel(_series(
            "Network", "Bps",
            _query(f'sum by (node) (rate(node_network_receive_bytes_total{{device!="lo", {where}}}[{_RATE}]))',
                   "{{node}} in", "A"),
            _query(f'sum by (node) (rate(node_network_transmit_bytes_total{{device!="lo", {where}}}[{_RATE}]))',
                   "{{node}} out", "B")))
    )


def build_dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON, as Grafana loads it."""
    boards = (fleet_power(), live_jobs(), campaign_efficiency(), node_health())
    return {f"{board.build().uid}.json": json.loads(JSONEncoder(sort_keys=True).encode(board.build()))
            for board in boards}


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(directory: Path = DASHBOARD_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, board in build_dashboards().items():
        path = directory / name
        path.write_text(render(board))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(path.relative_to(REPO))
