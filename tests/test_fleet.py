"""A fleet on one machine: the master and two worker nodes in their own network
namespaces, talking only over 10.203.0.0/24, with the real stack, agents, Prefect
workers and FFmpeg. Covers a campaign split across both nodes, credentials, TLS,
the master restarting mid-campaign, and a node SIGKILLed mid-job."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from analysis.report import write_report
from ffwatt.fleet.services import service_status, stop_service
from ffwatt.results import read_run_summary
from testbed import fleet
from testbed.fleet import PREFECT, Fleet, campaign, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.skipif(fleet.available() is not None,
                                                     reason=str(fleet.available()))]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("TLS proxy needs nginx (make test installs nginx-light as root)")
    work = tmp_path_factory.mktemp("fleet")
    with fleet.hosts(["master", "w1", "w2"]) as hosts, fleet.postgres(hosts["master"]) as database_url:
        cluster = Fleet(hosts, work, database_url=database_url)
        try:
            cluster.stack_up()
            for name in ("w1", "w2"):
                cluster.start_agent(name)
            cluster.wait_nodes_online({"w1", "w2"})
            yield cluster
        finally:
            cluster.close()


def test_the_server_runs_on_postgresql(cluster: Fleet):
    """Several workers write at once: this fleet's server uses PostgreSQL (SQLite locks, prefect#10188)."""
    if cluster.database_url is None:
        pytest.skip("PostgreSQL is not installed")
    cluster.run_campaign(campaign("fleet-pg", size="320x240", duration_s=1, presets=["ultrafast"], crfs=[30, 40]))
    count = fleet.psql(cluster.master, "SELECT count(*) FROM flow_run WHERE name LIKE 'fleet-pg%'")
    assert int(count) >= 3  # the campaign and its two node batches


def test_requests_without_credentials_are_refused(cluster: Fleet):
    w1 = cluster.hosts["w1"]
    no_auth = w1.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(cluster.ca),
                     "-X", "POST", f"{cluster.https_api}/flows/filter", "-H", "content-type: application/json",
                     "-d", "{}")
    assert no_auth.stdout == "401"
    with_auth = w1.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(cluster.ca),
                       "-u", cluster.auth, "-X", "POST", f"{cluster.https_api}/flows/filter",
                       "-H", "content-type: application/json", "-d", "{}")
    assert with_auth.stdout == "200"


def test_tls_is_verified_and_a_wrong_ca_is_refused(cluster: Fleet, tmp_path: Path):
    from master.tls import generate_ca_and_server_cert

    other_ca = generate_ca_and_server_cert(tmp_path / "other", ["example.invalid"])
    env = {**cluster.client_env(), "PREFECT_API_SSL_CERT_FILE": str(other_ca)}
    refused = cluster.hosts["w2"].run(PREFECT, "work-pool", "ls", env=env, timeout=120)
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr
    accepted = cluster.hosts["w2"].run(PREFECT, "work-pool", "ls", env=cluster.client_env(), timeout=120)
    assert accepted.returncode == 0 and "ffwatt-cpu" in accepted.stdout


def test_exporter_targets_of_live_nodes_are_discoverable(cluster: Fleet):
    done = cluster.master.run("curl", "-sf", f"http://{cluster.master.address}:9599/targets")
    groups = json.loads(done.stdout)
    targets = {(g["labels"]["node"], g["labels"]["exporter"]): g["targets"][0] for g in groups}
    assert targets[("w1", "cpu")] == "10.203.0.2:9510" and targets[("w2", "ffmpeg")] == "10.203.0.3:9506"
    assert all(g["labels"]["pool"] == "cpu" for g in groups)
    scraped = cluster.master.run("curl", "-sf", "http://10.203.0.3:9510/metrics")
    assert "ffwatt_exporter_info" in scraped.stdout


def test_a_campaign_is_split_across_both_nodes(cluster: Fleet):
    spec = campaign("fleet-split", size="320x240", duration_s=3, presets=["ultrafast", "veryfast"],
                    crfs=[20, 26, 32, 38])
    cluster.run_campaign(spec, cli="ffwatt")  # `ffwatt campaign submit`, the light way in
    rows = cluster.rows("fleet-split")
    assert len(rows) == 8 and rows.job_id.is_unique and (rows.status == "ok").all()
    assert set(rows.node) == {"w1", "w2"}  # one batch per live node
    assert (rows.frames == 72).all() and (rows.attempts == 1).all()
    assert rows.energy_source.notna().all() and rows.idle_power_w.notna().all()
    # The run's summary describes the nodes that encoded, not the master.
    summary = read_run_summary(cluster.work / "results", "fleet-split", rows.run_id.iloc[0])
    assert set(summary.nodes) == {"w1", "w2"} and set(summary.idle_baselines) == {"w1", "w2"}
    assert all(facts.name == name for name, facts in summary.nodes.items())
    report = write_report(cluster.work / "results", rows.run_id.iloc[0], campaign="fleet-split")
    assert "<h3>w1</h3>" in report.read_text() and "<h3>w2</h3>" in report.read_text()


def test_an_encoder_no_node_has_is_reported_unschedulable(cluster: Fleet):
    spec = campaign("fleet-unschedulable", size="320x240", duration_s=1, presets=["ultrafast"], crfs=[30])
    spec["matrix"]["encoders"].append({"name": "h264_nvenc", "presets": ["p1"]})
    out = cluster.run_campaign(spec, jobs_fail=True, cli="ffwatt")
    assert "1 of 2 jobs failed: 1 x unschedulable: no live node runs h264_nvenc" in " ".join(str(out).split())
    rows = cluster.rows("fleet-unschedulable").set_index("encoder")
    assert rows.loc["libx264", "status"] == "ok"
    assert rows.loc["h264_nvenc", "status"] == "failed"
    assert "unschedulable: no live node runs h264_nvenc (pool nvidia)" in rows.loc["h264_nvenc", "error"]
    summary = read_run_summary(cluster.work / "results", "fleet-unschedulable", rows.run_id.iloc[0])
    assert summary.failed == 1 and next(iter(summary.failures)).startswith("unschedulable: no live node runs h264")


def test_the_campaign_survives_the_master_restarting(cluster: Fleet):
    spec = campaign("fleet-restart", size="640x360", duration_s=4, presets=["ultrafast", "veryfast"],
                    crfs=[22, 30, 38])
    watcher = cluster.run_campaign(spec, wait=False)
    results = cluster.work / "results" / "campaign=fleet-restart"
    assert wait_for(lambda: list(results.rglob("job-*.parquet")), 240), "no row arrived"
    run_dir = cluster.work / "master" / "run"
    assert stop_service(run_dir, "prefect-server")  # the master's API goes away mid-campaign
    time.sleep(5)
    cluster.stack_up()  # and comes back
    assert service_status(run_dir, "prefect-server").running
    # The CLI watching the run may give up while the API is away; the campaign must not.
    summary = next(results.glob("run_id=*")) / "_run.json"  # "running" from the start: wait for the end
    finished = wait_for(lambda: summary.exists() and json.loads(summary.read_text())["state"] != "running", 600)
    watcher.terminate()
    assert finished, "the campaign never finished"
    rows = cluster.rows("fleet-restart")
    assert len(rows) == 6 and rows.job_id.is_unique and (rows.status == "ok").all(), rows.error.tolist()
    # No node was judged lost for heartbeats that couldn't reach the API: nothing ran twice.
    assert (rows.attempts == 1).all(), rows[["job_id", "node", "attempts"]]
    worker_log = (run_dir / "master-worker.log").read_text()
    assert "Prefect API answered only after" in worker_log or "Prefect API back after" in worker_log


def _serve_again(cluster: Fleet) -> None:
    """Both nodes served again as the module's fixture started them, whatever a test did to them."""
    for name in ("w1", "w2"):
        if name not in cluster.agents or cluster.agents[name].poll() is not None:
            cluster.start_agent(name)
    cluster.wait_nodes_online({"w1", "w2"})


def _encoding_on(cluster: Fleet, node: str, campaign_name: str) -> str | None:
    """The job ``node`` is encoding for this campaign (frames already out), from its progress spool."""
    spool = cluster.work / node / "progress"
    for path in spool.glob("*.json") if spool.exists() else []:
        with contextlib.suppress(ValueError, OSError):  # a record being replaced
            record = json.loads(path.read_text())
            if record["campaign"] == campaign_name and not record["done"] and record["progress"]["frame"] > 0:
                return str(record["job_id"])
    return None


@pytest.mark.parametrize(("down_s", "heartbeat_s"), [(7, 30), (60, 10)])
def test_an_agent_killed_mid_encode_and_started_again_loses_nothing(cluster: Fleet, down_s: int, heartbeat_s: int):
    """The agent alone SIGKILLed (its exporters live on) and started again. After 7 s, well inside its
    heartbeat timeout (90 s here, so the agent's own start-up on a busy machine stays inside it too), its
    new heartbeats keep the node online, so only the new agent can tell the master its batch died; after
    60 s, with the default 30 s timeout, the master has judged it lost by then. Either way its FFmpeg
    dies with it, and every job gets one row, ok."""
    name = f"fleet-agent-{down_s}"
    cluster.stop_agent("w1")
    cluster.start_agent("w1", FFWATT_WORKER_HEARTBEAT_S=str(heartbeat_s))
    try:
        cluster.wait_nodes_online({"w1"})
        # Encodes of 10 s or more, so an FFmpeg gone at once was killed, not done.
        spec = campaign(name, size="1280x720", duration_s=12, presets=["medium"], crfs=[22, 30, 38, 44])
        watcher = cluster.run_campaign(spec, wait=False)
        victim = wait_for(lambda: _encoding_on(cluster, "w1", name), 240, every_s=0.2)
        assert victim, "w1 never started a job"
        w1 = cluster.hosts["w1"]
        assert w1.processes_with(victim), "no FFmpeg encoding the job"
        started = time.monotonic()
        cluster.kill_agent("w1")
        assert wait_for(lambda: not w1.processes_with(victim), 3, every_s=0.1), "its FFmpeg outlived the agent"
        time.sleep(max(0.0, down_s - (time.monotonic() - started)))
        cluster.start_agent("w1", FFWATT_WORKER_HEARTBEAT_S=str(heartbeat_s))
        assert watcher.wait(600) == 0, (cluster.work / f"{name}.log").read_text()[-3000:]
        print(f"{name}: campaign done {time.monotonic() - started:.0f} s after the kill")
        rows = cluster.rows(name)
        assert len(rows) == 4 and rows.job_id.is_unique and (rows.status == "ok").all()
        killed = rows.set_index("job_id").loc[victim]
        assert killed.attempts == 2 and killed.node == "w2"
        assert (rows.set_index("job_id").drop(index=victim).attempts == 1).all()
    finally:
        cluster.stop_agent("w1")
        _serve_again(cluster)


def test_jobs_waiting_for_their_only_node_go_to_it_when_it_is_back(cluster: Fleet):
    """The only node serving the pool is lost mid-batch; its jobs wait with no batch open. Back 25 s
    after it was judged lost, it gets them: none ends unschedulable."""
    if cluster.database_url is None:
        pytest.skip("PostgreSQL is not installed (this test reads batch states from it)")
    name = "fleet-back"
    cluster.stop_agent("w2")
    try:
        assert wait_for(lambda: "w2" not in cluster.nodes(), 60), "w2 didn't deregister"
        spec = campaign(name, size="1280x720", duration_s=5, presets=["veryfast"], crfs=[22, 30, 38, 44])
        watcher = cluster.run_campaign(spec, wait=False)
        victim = wait_for(lambda: _encoding_on(cluster, "w1", name), 240, every_s=0.2)
        assert victim, "w1 never started a job"
        cluster.kill_agent("w1")
        crashed = wait_for(lambda: fleet.psql(cluster.master, "SELECT count(*) FROM flow_run WHERE "
                                              f"name = '{name}-w1' AND state_type = 'CRASHED'") == "1", 120)
        assert crashed, "the master never judged w1 lost"
        time.sleep(25)
        cluster.start_agent("w1")
        assert watcher.wait(600) == 0, (cluster.work / f"{name}.log").read_text()[-3000:]
        rows = cluster.rows(name)
        assert len(rows) == 4 and rows.job_id.is_unique and (rows.status == "ok").all(), rows.error.tolist()
        assert set(rows.node) == {"w1"} and rows.set_index("job_id").loc[victim].attempts == 2
    finally:
        _serve_again(cluster)


def test_a_node_killed_mid_job_loses_nothing(cluster: Fleet):
    spec = campaign("fleet-kill", size="1280x720", duration_s=5, presets=["veryfast", "medium"],
                    crfs=[22, 30, 38])
    watcher = cluster.run_campaign(spec, wait=False)
    spool = cluster.work / "w1" / "progress"

    def encoding_on_w1() -> str | None:
        for path in spool.glob("*.json") if spool.exists() else []:
            record = json.loads(path.read_text())
            if record["campaign"] == "fleet-kill" and not record["done"] and record["progress"]["frame"] > 0:
                return record["job_id"]
        return None

    victim = wait_for(encoding_on_w1, 240, every_s=0.2)
    assert victim, "w1 never started a job"
    cluster.hosts["w1"].kill_all()  # SIGKILL: agent, worker, flow run and FFmpeg, mid-encode
    started = time.monotonic()
    assert watcher.wait(600) == 0
    rows = cluster.rows("fleet-kill")
    assert len(rows) == 6 and rows.job_id.is_unique and (rows.status == "ok").all()
    killed = rows.set_index("job_id").loc[victim]
    assert killed.attempts == 2 and killed.node == "w2"
    assert time.monotonic() - started < 300
    # shown offline once its heartbeat stops
    assert wait_for(lambda: cluster.nodes()["w1"]["online"] is False, 60)
    log = (cluster.work / "fleet-kill.log").read_text()
    assert re.search(r"Completed", log)
