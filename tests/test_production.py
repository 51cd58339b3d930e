"""What can be checked of the production files without a container engine or systemd running:
one port table, compose files consistent with it and with the stack's own configs, systemd
units that systemd accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ffwatt.ports import PORTS, Port, conflicts
from ffwatt.settings import REPO
from master.monitoring import COMPOSE_CONFIG, LATENCY_OFFSET, SD_CHECK_INTERVAL, compose_configs

COMPOSE = REPO / "infra" / "compose"
SYSTEMD = REPO / "infra" / "systemd"


def test_docs_have_one_port_table_and_it_is_the_code_s():
    text = (REPO / "docs" / "production.md").read_text()
    rows = re.findall(r"^\| (\d+) \| `([a-z-]+)` \| (.+?) \| (master|node|compose) \| `(.+?)` \|$", text, re.MULTILINE)
    assert {name: Port(int(number), service, where, setting) for number, name, service, where, setting in rows} \
        == PORTS
    assert conflicts() == []


def test_the_port_table_refuses_two_services_on_one_port():
    twice = {"a": Port(8080, "a", "master", "-"), "b": Port(8080, "b", "master", "-")}
    assert conflicts(twice) == [("a", "b", 8080)]


def _compose(name: str) -> dict:
    return yaml.safe_load((COMPOSE / name).read_text())


@pytest.mark.parametrize("name", ["master.yaml", "worker.yaml"])
def test_compose_files_are_consistent(name: str):
    compose = _compose(name)
    numbers = {port.number for port in PORTS.values()}
    declared = set(compose.get("volumes") or {})
    for service_name, service in compose["services"].items():
        image = service["image"]
        assert (":" in image and not image.endswith(":latest")) or image == "ffwatt:latest", (service_name, image)
        if image == "ffwatt:latest":
            assert (COMPOSE / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        for mapping in service.get("ports", []):
            host, container = (int(p) for p in str(mapping).split(":"))
            assert host == container and host in numbers, (service_name, mapping)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(("./", "../")):
                assert (COMPOSE / source).exists(), (service_name, volume)
            elif not source.startswith(("/", "${")):
                assert source in declared, (service_name, volume)
    published = [str(m).split(":")[0] for s in compose["services"].values() for m in s.get("ports", [])]
    assert len(published) == len(set(published)), "two services publish one port"


def test_the_compose_store_runs_as_the_stack_s_does():
    master = _compose("master.yaml")["services"]
    store = master["victoriametrics"]["command"]
    assert f"-promscrape.httpSDCheckInterval={SD_CHECK_INTERVAL}" in store
    assert f"-search.latencyOffset={LATENCY_OFFSET}" in store
    assert f"-httpListenAddr=:{PORTS['metrics-store'].number}" in store
    assert f"--web.listen-address=:{PORTS['alertmanager'].number}" in master["alertmanager"]["command"]
    assert f"0.0.0.0:{PORTS['discovery'].number}" in master["ffwatt-master"]["command"]
    assert master["grafana"]["environment"]["GRAFANA_STORE_URL"] == f"http://victoriametrics:{PORTS['metrics-store'].number}"
    for name, text in compose_configs().items():
        assert (COMPOSE_CONFIG / name).read_text() == text, f"run python -m master.monitoring ({name})"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_verify_and_the_agent_is_not_root(tmp_path: Path):
    units = sorted(SYSTEMD.glob("*.service"))
    assert {u.name for u in units} == {"ffwatt-master.service", "ffwatt-agent.service"}
    for unit in units:
        # As installed: /opt/ffwatt is the checkout, here this one (verify wants the binaries to exist).
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/ffwatt", str(REPO)))
    done = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / u.name) for u in units)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    agent = (SYSTEMD / "ffwatt-agent.service").read_text()
    assert re.search(r"^User=ffwatt$", agent, re.MULTILINE) and "User=root" not in agent
    broken = tmp_path / "broken.service"  # and verify does catch a broken unit
    broken.write_text("[Service]\nExecStart=relative/path\n")
    assert subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True).returncode != 0
