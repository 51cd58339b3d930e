"""A master scaled out on Prefect's own terms (FFWATT_API_PROCESSES=2): two API processes on one port, a
process for the loop services, Redis on a unix socket, PostgreSQL; a node in its own network namespace.
Killing one API process, or restarting Redis, mid-campaign loses no job and runs none twice."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import time
from pathlib import Path

import psutil
import pytest

from ffwatt.fleet.services import service_status, stop_service
from testbed import fleet
from testbed.fleet import FFWATT, Fleet, campaign, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.skipif(fleet.available() is not None,
                                                     reason=str(fleet.available()))]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        pytest.skip("a scaled-out master needs redis-server (make test installs it as root)")
    work = tmp_path_factory.mktemp("scale-out")
    with fleet.hosts(["master", "w1"]) as hosts, fleet.postgres(hosts["master"]) as database_url:
        if database_url is None:
            pytest.skip("a scaled-out master needs PostgreSQL (make test installs it as root)")
        cluster = Fleet(hosts, work, database_url=database_url)
        cluster.master_env["FFWATT_API_PROCESSES"] = "2"
        try:
            cluster.stack_up()
            cluster.start_agent("w1")
            cluster.wait_nodes_online({"w1"})
            yield cluster
        finally:
            cluster.close()


def _api_processes(run_dir: Path) -> list[psutil.Process]:
    """The server's API processes: uvicorn's live children that serve (not multiprocessing's resource
    tracker, nor one killed and not yet reaped: a zombie has no command line to read)."""
    server = service_status(run_dir, "prefect-server")
    assert server.running and server.pid is not None
    serving = []
    for child in psutil.Process(server.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "--multiprocessing-fork" in child.cmdline():
                serving.append(child)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue  # it died between children() and cmdline()
    return serving


def test_the_stack_runs_two_api_processes_services_apart_and_redis_only_on_its_socket(cluster: Fleet):
    run_dir = cluster.work / "master" / "run"
    assert len(_api_processes(run_dir)) == 2
    assert service_status(run_dir, "prefect-services").running
    assert service_status(run_dir, "redis").running
    redis_dir = cluster.work / "master" / "stack" / "redis"
    assert stat.S_IMODE(redis_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((redis_dir / "redis.sock").stat().st_mode) == 0o600
    redis = psutil.Process(service_status(run_dir, "redis").pid or 0)
    assert not [c for c in redis.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]  # no TCP port
    status = cluster.master.run(FFWATT, "stack", "status", env=cluster.master_env)
    assert "prefect-services" in status.stdout and "redis" in status.stdout


def test_an_api_process_killed_mid_campaign_loses_no_job_and_runs_none_twice(cluster: Fleet):
    run_dir = cluster.work / "master" / "run"
    victims: list[psutil.Process] = []

    def kill_one() -> None:  # one of the two, mid-campaign: its requests in flight are lost
        victims.append(_api_processes(run_dir)[0])
        os.kill(victims[0].pid, signal.SIGKILL)

    cluster.campaign_through("scale-kill-api", kill_one)
    # uvicorn put a new process in its place.
    assert wait_for(lambda: len(_api_processes(run_dir)) == 2 and victims[0].pid not in
                    {p.pid for p in _api_processes(run_dir)}, 30)


def test_redis_restarted_mid_campaign_loses_no_job_and_runs_none_twice(cluster: Fleet):
    run_dir = cluster.work / "master" / "run"

    def restart_redis() -> None:
        before = service_status(run_dir, "redis").pid
        assert stop_service(run_dir, "redis")
        time.sleep(3)
        done = cluster.master.run(FFWATT, "stack", "up", env=cluster.master_env)  # starts what isn't running
        assert done.returncode == 0, done.stdout + done.stderr
        again = service_status(run_dir, "redis")
        assert again.running and again.pid != before

    cluster.campaign_through("scale-redis", restart_redis)
    # And the master still takes new work once Redis is back.
    cluster.run_campaign(campaign("scale-after-redis", size="320x240", duration_s=1, presets=["ultrafast"],
                                  crfs=[30]), cli="ffwatt")
    assert (cluster.rows("scale-after-redis").status == "ok").all()
