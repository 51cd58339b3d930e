"""A master spread over two machines, as docs/fleet.md says to: PostgreSQL and a password-protected
Redis on the first, its API and services there too, a second machine with API processes only
(`ffwatt stack up --api-only`), the first's TLS proxy spreading requests over both. The second machine
powered off mid-campaign loses no job and runs none twice."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from testbed import fleet
from testbed.fleet import FFWATT, Fleet, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.skipif(fleet.available() is not None,
                                                     reason=str(fleet.available()))]


def _redis_server() -> str | None:
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    return found if Path(found).exists() else None


@pytest.fixture(scope="module")
def spread(tmp_path_factory: pytest.TempPathFactory):
    redis_server = _redis_server()
    if redis_server is None:
        pytest.skip("a master spread over machines needs redis-server (make test installs it as root)")
    work = tmp_path_factory.mktemp("spread")
    with fleet.hosts(["master", "api2", "w1"]) as hosts, fleet.postgres(hosts["master"], shared=True) as database_url:
        if database_url is None:
            pytest.skip("a master spread over machines needs PostgreSQL (make test installs it as root)")
        master, api2 = hosts["master"], hosts["api2"]
        # The one Redis both API machines reach over TCP, with a password, as an operator runs it.
        password = secrets.token_urlsafe(16)
        redis_dir = work / "redis"
        redis_dir.mkdir()
        redis = master.popen(redis_server, "--bind", master.address, "--port", "6379", "--requirepass", password,
                             "--save", "", "--appendonly", "no", "--dir", str(redis_dir),
                             env={}, log=str(work / "redis.log"))
        redis_url = f"redis://:{password}@{master.address}:6379/0"
        cluster = Fleet(hosts, work, database_url=database_url)
        cluster.master_env.update(FFWATT_REDIS_URL=redis_url, FFWATT_API_PEERS=f"{api2.address}:4200")
        api2_env = {"FFWATT_HOME": str(work / "api2"), "FFWATT_NODE": "api2", "FFWATT_MASTER_HOST": api2.address,
                    "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url, "FFWATT_REDIS_URL": redis_url,
                    "PREFECT_UI_API_URL": cluster.https_api}
        try:
            cluster.stack_up()
            auth = work / "api2" / "stack" / "auth"  # the operator copies the master's credentials
            auth.parent.mkdir(parents=True)
            shutil.copy(work / "master" / "stack" / "auth", auth)
            auth.chmod(0o600)
            done = api2.run(FFWATT, "stack", "up", "--api-only", env=api2_env)
            assert done.returncode == 0, done.stdout + done.stderr
            cluster.start_agent("w1")
            cluster.wait_nodes_online({"w1"})
            yield cluster, api2_env
        finally:
            api2.run(FFWATT, "stack", "down", env=api2_env)
            cluster.close()
            redis.terminate()
            redis.wait(30)


def _access_log(cluster: Fleet) -> str:
    """The master's TLS proxy's access log: each request with the API machine that answered it."""
    return (cluster.work / "master" / "stack" / "nginx" / "logs" / "access.log").read_text()


def test_an_api_machine_serves_the_master_s_fleet_behind_its_proxy(spread: tuple[Fleet, dict[str, str]]):
    cluster, env = spread
    api2 = cluster.hosts["api2"]
    status = api2.run(FFWATT, "stack", "status", env=env).stdout
    assert "prefect-server" in status and "master-worker" not in status and "prefect-services" not in status
    # Its API takes the master's credentials and shares its database: it sees the master's work pools.
    pools = api2.run("curl", "-sf", "-u", cluster.auth, "-X", "POST", "-H", "Content-Type: application/json",
                     "-d", "{}", f"http://{api2.address}:4200/api/work_pools/filter")
    assert pools.returncode == 0 and '"name":"ffwatt-master"' in pools.stdout.replace(" ", ""), pools.stdout[:500]
    # The proxy sends some of the fleet's calls to it.
    assert wait_for(lambda: f"{api2.address}:4200" in _access_log(cluster), 60), _access_log(cluster)[-2000:]


def test_an_api_machine_without_the_master_s_credentials_starts_nothing(spread: tuple[Fleet, dict[str, str]]):
    cluster, env = spread
    # It would make credentials of its own, and refuse every agent holding the master's.
    home = cluster.work / "api2-no-auth"
    refused = cluster.hosts["api2"].run(FFWATT, "stack", "up", "--api-only", env={**env, "FFWATT_HOME": str(home)})
    assert refused.returncode != 0
    assert "copy its FFWATT_HOME/stack/auth" in refused.stdout + refused.stderr
    assert not (home / "run" / "prefect-server.pid").exists() and not (home / "stack" / "auth").exists()


def test_the_second_api_machine_powered_off_mid_campaign_loses_no_job_and_runs_none_twice(
        spread: tuple[Fleet, dict[str, str]]):
    cluster, _ = spread
    api2 = cluster.hosts["api2"]
    before = len(_access_log(cluster))
    def power_off() -> None:  # off the network first: its requests in flight get no answer, new ones time out
        api2.unplug()
        api2.kill_all()

    cluster.campaign_through("spread-kill-api2", power_off)
    # The campaign ran on through the master's own API.
    assert f"{cluster.master.address}:4200" in _access_log(cluster)[before:]
