"""A scaled-out master (FFWATT_API_PROCESSES > 1) that can't run here says why in one line and starts
nothing; what it runs end to end is tests/test_fleet_scale_out.py."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ffwatt


def test_several_api_processes_on_sqlite_are_refused_before_anything_starts(tmp_path: Path):
    home = tmp_path / "home"
    done = ffwatt("stack", "up", env={"FFWATT_HOME": str(home), "FFWATT_API_PROCESSES": "2",
                                      "PREFECT_SERVER_DATABASE_CONNECTION_URL": None,  # type: ignore[dict-item]
                                      "PREFECT_API_DATABASE_CONNECTION_URL": None})  # type: ignore[dict-item]
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "FFWATT_API_PROCESSES=2 needs PostgreSQL" in lines[0]
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://" in lines[0]
    assert not list((home / "run").glob("*.pid"))  # nothing was started
