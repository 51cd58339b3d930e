"""A scaled-out master (FFWATT_API_PROCESSES > 1) that can't run here says why in one line and starts
nothing; what it runs end to end is tests/test_fleet_scale_out.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ffwatt.fleet.prefect_server import shown_url
from ffwatt.settings import Settings
from master.stack import tls_proxy_conf
from master.tls import generate_ca_and_server_cert
from tests.conftest import ffwatt

ON_SQLITE = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": None, "PREFECT_API_DATABASE_CONNECTION_URL": None}


def _refusal(home: Path, *args: str, env: dict[str, str | None]) -> str:
    """The one line ``ffwatt stack ARGS`` fails with, having started nothing."""
    done = ffwatt("stack", *args, env={"FFWATT_HOME": str(home), **env})  # type: ignore[dict-item]
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert not list((home / "run").glob("*.pid"))  # nothing was started
    return lines[0]


def test_several_api_processes_on_sqlite_are_refused_before_anything_starts(tmp_path: Path):
    line = _refusal(tmp_path / "home", "up", env={"FFWATT_API_PROCESSES": "2", **ON_SQLITE})
    assert "FFWATT_API_PROCESSES=2 needs PostgreSQL" in line
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://" in line


def test_an_api_machine_without_the_shared_redis_is_refused_before_anything_starts(tmp_path: Path):
    line = _refusal(tmp_path / "home", "up", "--api-only", env={})
    assert "set FFWATT_REDIS_URL" in line and "PREFECT_SERVER_DATABASE_CONNECTION_URL" in line


def test_a_shared_redis_on_sqlite_is_refused_before_anything_starts(tmp_path: Path):
    line = _refusal(tmp_path / "home", "up", env={"FFWATT_REDIS_URL": "redis://:s3cretpw@10.0.0.5:6379/0", **ON_SQLITE})
    assert "spread over machines (FFWATT_REDIS_URL) needs PostgreSQL" in line
    assert "s3cretpw" not in line


def test_a_password_is_masked_in_a_redis_url_shown():
    assert shown_url("redis://:s3cret@10.0.0.5:6379/0") == "redis://:***@10.0.0.5:6379/0"
    assert shown_url("redis://user:s3cret@host/0") == "redis://user:***@host/0"
    assert shown_url("unix:///run/redis.sock?db=0") == "unix:///run/redis.sock?db=0"


@pytest.mark.skipif(not Path(shutil.which("nginx") or "/usr/sbin/nginx").exists(), reason="nginx not installed")
def test_the_tls_proxy_spreads_the_api_over_its_peers_in_a_configuration_nginx_takes(tmp_path: Path):
    settings = Settings(home=tmp_path / "home", master_host="127.0.0.1", api_peers="10.0.0.6:4200,10.0.0.7:4300")
    generate_ca_and_server_cert(settings.tls_dir, ["127.0.0.1"])
    conf = tls_proxy_conf(settings)
    text = conf.read_text()
    for server in ("127.0.0.1:4200", "10.0.0.6:4200", "10.0.0.7:4300"):
        assert f"server {server} max_fails=1 fail_timeout=5s;" in text
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    checked = subprocess.run([nginx, "-t", "-p", str(conf.parent), "-c", str(conf)], capture_output=True,
                             text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
