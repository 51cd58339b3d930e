"""The monitoring path with real parts: a VictoriaMetrics, vmalert and Alertmanager started as
``ffwatt stack up`` starts them (on free loopback ports, their own data), the real discovery
service on a real Prefect server, real exporters (the GPU one replaying an H200) and node_exporter,
and a real campaign whose FFmpeg jobs they scrape. Every Grafana panel query must find data
in that store; stopping an exporter must reach Alertmanager; nodes joining and leaving must be
picked up and dropped in time."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agent.node import node_exporter_service
from ffwatt.fleet.services import start_service, stop_service
from ffwatt.settings import REPO, Settings
from master.monitoring import ALERT_RULES, monitoring_status
from testbed.fleet import wait_for
from tests.conftest import ffwatt_cli, free_port, wait_http
from tests.monitoring import (
    DASHBOARDS,
    Publisher,
    Store,
    drawing_package,
    ffwatt_service,
    make_sysfs,
    monitoring,
    start_discovery,
)

pytestmark = pytest.mark.e2e

DOCS = REPO / "docs" / "metrics.md"
CAMPAIGN = {
    "name": "monitored",
    "inputs": [{"name": "pattern", "source": "testsrc2", "size": "640x360", "fps": 24, "duration_s": 5}],
    "matrix": {"encoders": [{"name": "libx264", "presets": ["veryfast", "medium"]}],
               "rate_control": [{"mode": "crf", "values": [28]}]},
    "quality": ["vmaf"], "idle_baseline_s": 1,
}


def documented(exporters: set[str] | None = None) -> set[str]:
    rows = re.findall(r"^\| `((?:ffwatt|container)_[a-z_]+)` \| ([a-z, ]+) \|", DOCS.read_text(), re.MULTILINE)
    return {name for name, where in rows if exporters is None or exporters & set(where.split(", "))}


@dataclass
class World:
    settings: Settings
    store: Store
    run_dir: Path
    work: Path
    publisher: Publisher
    env: dict[str, str]
    node_exporter: str = ""
    started_at: float = 0.0
    campaign_done_at: float = 0.0


@pytest.fixture(scope="module")
def world(prefect_server: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("monitoring")
    settings = Settings(home=work / "master", results_dir=work / "results", node="master",
                        master_host="127.0.0.1", store_port=free_port(), vmalert_port=free_port(),
                        alertmanager_port=free_port(), discovery_port=free_port())
    run_dir = work / "run"
    env = {**os.environ, **prefect_server}
    publisher = Publisher(env)
    names: list[str] = []
    with pytest.MonkeyPatch.context() as patch, drawing_package(work / "powercap", 45.0) as powercap:
        for key, value in prefect_server.items():
            patch.setenv(key, value)
        try:
            names.append("discovery")
            start_discovery(run_dir, settings, env)
            n1 = {**env, "FFWATT_NODE": "n1", "FFWATT_HOME": str(work / "n1")}
            ports = {kind: free_port() for kind in ("cpu", "gpu", "ffmpeg", "node", "n2-cpu")}
            for kind, args, kind_env in (
                    ("cpu", ["--powercap-root", str(powercap)], n1),
                    ("gpu", ["--replay", str(REPO / "tests/data/nvml-h200-probe.json")], {**n1, "FFWATT_GPU": "true"}),
                    ("ffmpeg", [], n1)):
                names.append(f"n1-{kind}")
                ffwatt_service(run_dir, f"n1-{kind}",
                               ["exporter", kind, "--listen", f"127.0.0.1:{ports[kind]}", *args], kind_env)
            names.append("node-exporter")
            start_service(run_dir, node_exporter_service("127.0.0.1", ports["node"], sysfs=make_sysfs(work / "sys")))
            names.append("n2-cpu")  # a node without RAPL: its CPU energy is the estimate
            ffwatt_service(run_dir, "n2-cpu", ["exporter", "cpu", "--listen", f"127.0.0.1:{ports['n2-cpu']}"],
                           {**env, "FFWATT_NODE": "n2", "FFWATT_HOME": str(work / "n2")})
            for kind in ("cpu", "gpu", "ffmpeg", "node", "n2-cpu"):
                wait_http(f"http://127.0.0.1:{ports[kind]}/metrics", 60)
            n1_targets = {k: f"127.0.0.1:{ports[k]}" for k in ("cpu", "gpu", "ffmpeg", "node")}
            publisher.add("n1", ["cpu", "nvidia"], n1_targets)
            publisher.add("n2", ["cpu"], {"cpu": f"127.0.0.1:{ports['n2-cpu']}"})
            beating = threading.Thread(target=publisher.run, daemon=True)
            beating.start()
            with monitoring(settings) as store:
                yield World(settings, store, run_dir, work, publisher, env, f"127.0.0.1:{ports['node']}",
                            started_at=time.time())
        finally:
            publisher.stop.set()
            for name in reversed(names):
                stop_service(run_dir, name)


@pytest.fixture(scope="module")
def campaign(world: World) -> World:
    """A real campaign on node n1, its exporters scraped while it runs, its results on the master."""
    spec = world.work / "campaign.yaml"
    spec.write_text(yaml.safe_dump(CAMPAIGN))
    assert wait_for(lambda: len([t for t in world.store.targets() if t["health"] == "up"]) == 6, 120), \
        world.store.targets()
    done = subprocess.run([ffwatt_cli(), "campaign", "run", str(spec)], capture_output=True, text=True, timeout=600,
                          env={**world.env, "FFWATT_NODE": "n1", "FFWATT_HOME": str(world.work / "n1"),
                               "FFWATT_RESULTS_DIR": str(world.settings.results_dir),
                               "FFWATT_POWERCAP_ROOT": str(world.work / "powercap")})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # In range queries too, as Grafana's time series panels ask: their last step lags an instant query's.
    assert wait_for(lambda: world.store.query_range('ffwatt_results_jobs{campaign="monitored"}', world.started_at,
                                                    time.time()), 30)
    world.campaign_done_at = time.time()
    return world


def _variables(board: dict) -> list[tuple[str, str]]:
    return [(v["name"], v["query"]) for v in board.get("templating", {}).get("list", [])]


def _substitute(expr: str, values: dict[str, str]) -> str:
    # Grafana's built-ins at a 5 s step and a 1 s scrape interval: $__rate_interval is
    # max($__interval + scrape interval, 4 x scrape interval).
    expr = expr.replace("$__rate_interval", "6s").replace("$__interval", "5s")
    for name, value in sorted(values.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in expr, f"an unresolved variable in {expr}"
    return expr


def test_every_panel_query_of_every_dashboard_returns_a_series(campaign: World):
    store, start, end = campaign.store, campaign.started_at, time.time()
    boards = sorted(DASHBOARDS.glob("*.json"))
    assert len(boards) >= 4
    empty = []
    for path in boards:
        board = json.loads(path.read_text())
        values: dict[str, str] = {}
        for name, query in _variables(board):
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert match, f"{path.name}: variable {name}: only label_values(selector, label) is used"
            options = store.label_values(match[2], _substitute(match[1], values), start, end)
            assert options, f"{path.name}: variable {name} has no values ({query})"
            values[name] = ".*"  # what Grafana sends for the default selection, All (allValue)
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = _substitute(target["expr"], values)
                found = store.query(expr) if target.get("instant") else store.query_range(expr, start, end)
                if not found:
                    empty.append(f"{path.name} / {panel['title']} / {target['refId']}: {expr}")
    assert empty == []


def test_dashboards_and_alerts_name_only_metrics_that_are_emitted(world: World):
    node_exporter = {f.name for f in text_string_to_metric_families(
        httpx.get(f"http://{world.node_exporter}/metrics", timeout=10).text)}
    node_exporter |= {f"{name}_total" for name in node_exporter}  # the parser drops counters' suffix
    known = documented() | node_exporter | {"up", "ALERTS"}
    texts = [p.read_text() for p in DASHBOARDS.glob("*.json")]
    exprs = [t["expr"] for text in texts for panel in json.loads(text)["panels"] for t in panel["targets"]]
    exprs += [v["query"] for text in texts for v in json.loads(text)["templating"]["list"]]
    exprs += [rule["expr"] for path in ALERT_RULES.glob("*.yml")
              for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\b((?:ffwatt|node)_[a-zA-Z_]+|up|ALERTS)\b", expr)}
    used -= {"node_exporter"}  # a legend word, not a metric
    assert used - known == set()


def test_the_master_metrics_are_documented(campaign: World):
    text = httpx.get(f"http://127.0.0.1:{campaign.settings.discovery_port}/metrics", timeout=10).text
    emitted = set()
    for family in text_string_to_metric_families(text):
        emitted.add(family.name)
        for sample in family.samples:
            emitted.add(sample.name)
    master = documented({"master"})
    assert master and master <= emitted
    assert {name for name in emitted if name.startswith("ffwatt_")} - documented() == set()
    (jpf,) = [s for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "ffwatt_results_joules_per_frame" and s.labels["preset"] == "medium"]
    assert jpf.labels["estimated"] == "false" and jpf.labels["node"] == "n1" and jpf.value > 0
    assert jpf.labels["config"] == "pattern libx264 medium crf 28 640x360"


def test_a_joining_node_is_scraped_within_10s_and_a_leaving_one_dropped_within_30s(world: World):
    port = free_port()
    ffwatt_service(world.run_dir, "n3-ffmpeg", ["exporter", "ffmpeg", "--listen", f"127.0.0.1:{port}"],
                   {**world.env, "FFWATT_NODE": "n3", "FFWATT_HOME": str(world.work / "n3")})
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", 60)

        def n3_targets() -> list[dict]:
            return [t for t in world.store.targets() if t["labels"].get("node") == "n3"]

        joined = time.monotonic()
        world.publisher.add("n3", ["cpu"], {"ffmpeg": f"127.0.0.1:{port}"})
        assert wait_for(lambda: any(t["health"] == "up" for t in n3_targets()), 10, every_s=0.2)
        scraped_after = time.monotonic() - joined
        (target,) = n3_targets()
        assert target["labels"]["exporter"] == "ffmpeg" and target["labels"]["pool"] == "cpu"
        left = time.monotonic()
        del world.publisher.records["n3"]  # its agent is gone: no more heartbeats, no goodbye
        assert wait_for(lambda: not n3_targets(), 30, every_s=0.5)
        dropped_after = time.monotonic() - left
        print(f"\nnode n3: scraped {scraped_after:.1f} s after joining, dropped {dropped_after:.1f} s after leaving")
    finally:
        stop_service(world.run_dir, "n3-ffmpeg")


def test_a_stopped_exporter_fires_target_down_in_alertmanager(world: World):
    alertmanager = f"http://127.0.0.1:{world.settings.alertmanager_port}"

    def n2_down() -> list[dict]:
        alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5,
                           params={"filter": 'alertname="FfwattTargetDown"'}).json()
        return [a for a in alerts if a["labels"].get("node") == "n2" and a["status"]["state"] == "active"]

    assert not n2_down()
    stopped = time.monotonic()
    stop_service(world.run_dir, "n2-cpu")
    assert wait_for(n2_down, 60, every_s=0.5), "FfwattTargetDown for n2 never reached Alertmanager"
    fired_after = time.monotonic() - stopped
    (alert,) = n2_down()
    assert alert["labels"]["exporter"] == "cpu" and "cpu on n2" in alert["annotations"]["summary"]
    status = monitoring_status(world.settings)
    assert any(line.startswith("FfwattTargetDown n2") for line in status.firing), status
    assert any(line.startswith("n2/cpu") for line in status.targets_down), status
    sink = world.settings.stack_dir / "alerts.jsonl"

    def delivered() -> bool:
        return sink.exists() and any(a["labels"]["alertname"] == "FfwattTargetDown"
                                     for line in sink.read_text().splitlines() for a in json.loads(line)["alerts"])

    assert wait_for(delivered, 30), "the webhook receiver never got the alert"
    print(f"\nFfwattTargetDown in Alertmanager {fired_after:.1f} s after the exporter stopped")


def test_every_rule_file_passes_vmalert_dry_run(tmp_path: Path):
    rules = sorted(ALERT_RULES.glob("*.yml"))
    assert rules
    for path in rules:
        done = subprocess.run(["/usr/bin/vmalert", "-dryRun", f"-rule={path}"], capture_output=True, text=True,
                              cwd=tmp_path, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yml"  # and the check would catch a broken one
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: up ==\n")
    done = subprocess.run(["/usr/bin/vmalert", "-dryRun", f"-rule={broken}"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert done.returncode != 0
