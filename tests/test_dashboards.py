"""The Grafana dashboards are built by code (infra/grafana/dashboards.py, `make dashboards`) and their
JSON is checked in: the two must not drift. That every panel's query returns a series from a real
store is tests/test_monitoring.py's."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from ffwatt.settings import REPO
from tests.monitoring import DASHBOARDS


def _generator() -> ModuleType:
    path = REPO / "infra" / "grafana" / "dashboards.py"
    spec = importlib.util.spec_from_file_location("ffwatt_dashboards", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_dashboards_are_what_the_code_builds():
    generator = _generator()
    assert generator.DASHBOARD_DIR == DASHBOARDS
    built = generator.build_dashboards()
    committed = {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}
    assert set(committed) == set(built), "run make dashboards"
    for name, board in built.items():
        assert committed[name] == generator.render(board), f"{name} differs from the code: run make dashboards"
