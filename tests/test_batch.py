"""The node side of a distributed campaign, run in this process against the suite's real Prefect server."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ffwatt.fleet.protocol import ROW_ARTIFACT_PREFIX, row_artifact_key
from ffwatt.jobs import expand
from ffwatt.validation import parse_campaign

pytestmark = pytest.mark.e2e

JOBS = 6


def test_a_batch_the_master_ended_stops_between_jobs(ffwatt_env: Path, prefect_server: dict[str, str], ffmpeg: str,
                                                      monkeypatch: pytest.MonkeyPatch):
    """A node whose heartbeats were only late still runs the batch the master declared lost (and planned
    again elsewhere). Once per node timeout (three heartbeats, 3 s here) the batch reads its own flow run
    between jobs, and stops once the master has ended it. Each encode takes over a second (an
    FFWATT_FFMPEG wrapper sleeps first), so the batch checks before it could finish."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.batch import node_batch

    wrapper = ffwatt_env / "ffmpeg"
    wrapper.write_text(f"#!{sys.executable}\nimport os, sys, time\ntime.sleep(1)\n"
                       f"os.execv({ffmpeg!r}, [{ffmpeg!r}, *sys.argv[1:]])\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("FFWATT_FFMPEG", str(wrapper))
    monkeypatch.setenv("FFWATT_WORKER_HEARTBEAT_S", "1")
    campaign = parse_campaign({
        "name": "zombie", "idle_baseline_s": 0,
        "inputs": [{"name": "pattern", "source": "testsrc2", "size": "320x240", "fps": 30, "duration_s": 1}],
        "matrix": {"encoders": [{"name": "libx264", "presets": ["ultrafast"]}],
                   "rate_control": [{"mode": "crf", "values": list(range(20, 20 + JOBS))}]},
        "quality": []})
    jobs = expand(campaign)
    assert len(jobs) == JOBS
    api = prefect_server["PREFECT_API_URL"]
    first_row = row_artifact_key(jobs[0].job_id)
    ended: list[str] = []

    def end_the_batch_once_its_first_row_is_home() -> None:  # as the dispatcher does to a silent node's batch
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = httpx.post(f"{api}/artifacts/filter", json={"artifacts": {"key": {"any_": [first_row]}}}).json()
            if found:
                flow_run_id = found[0]["flow_run_id"]
                httpx.post(f"{api}/flow_runs/{flow_run_id}/set_state", json={
                    "state": {"type": "CRASHED", "message": "ffwatt: node went silent"}, "force": True,
                }).raise_for_status()
                ended.append(flow_run_id)
                return
            time.sleep(0.1)

    master = threading.Thread(target=end_the_batch_once_its_first_row_is_home, daemon=True)
    master.start()
    with temporary_settings(updates={PREFECT_API_URL: api}):
        node_batch(campaign, [job.job_id for job in jobs], "run-zombie", {}, return_state=True)
    master.join(10)
    assert ended, "the batch's first row never came home"
    rows = httpx.post(f"{api}/artifacts/filter", json={"artifacts": {
        "flow_run_id": {"any_": ended}, "key": {"like_": f"{ROW_ARTIFACT_PREFIX}%"}}}).json()
    sent = {row["key"] for row in rows}
    assert first_row in sent and len(sent) < JOBS, sorted(sent)
    # The jobs it did run were the first ones, in the order sent: the rest are the new batch's.
    assert sent == {row_artifact_key(job.job_id) for job in jobs[:len(sent)]}
    state = httpx.get(f"{api}/flow_runs/{ended[0]}").json()["state"]
    assert state["type"] == "CANCELLED", state  # not Completed: it wasn't
    assert state["message"].startswith(f"the master ended this batch (Crashed: ffwatt: node went silent); stopped "
                                       f"after {len(sent)} of {JOBS} jobs")


def test_a_batch_reads_file_inputs_only_where_its_node_allows(ffwatt_env: Path, prefect_server: dict[str, str],
                                                              monkeypatch: pytest.MonkeyPatch):
    """A fleet campaign with an input `path: /etc/shadow` made the worker try to open it (a way to learn which
    files exist there). The node refuses it by its settings; the job's row says why, and the others run."""
    import json

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ffwatt.fleet.protocol import decode_row
    from flows.batch import node_batch

    monkeypatch.setenv("FFWATT_INPUT_DIRS", str(ffwatt_env / "clips"))
    campaign = parse_campaign({
        "name": "paths", "idle_baseline_s": 0, "quality": [],
        "inputs": [{"name": "secret", "path": "/etc/shadow"},
                   {"name": "pattern", "source": "testsrc2", "size": "160x90", "fps": 24, "duration_s": 1}],
        "matrix": {"encoders": ["libx264"], "rate_control": [{"mode": "crf", "values": [30]}]}})
    jobs = expand(campaign)
    api = prefect_server["PREFECT_API_URL"]
    with temporary_settings(updates={PREFECT_API_URL: api}):
        state = node_batch(campaign, [job.job_id for job in jobs], "run-paths", {}, return_state=True)
    flow_run_id = str(state.state_details.flow_run_id)
    artifacts = httpx.post(f"{api}/artifacts/filter", json={"artifacts": {
        "flow_run_id": {"any_": [flow_run_id]}, "key": {"like_": f"{ROW_ARTIFACT_PREFIX}%"}}}).json()
    rows = {row.input_name: row for row in (decode_row(json.loads(a["data"])[0]) for a in artifacts)}
    assert set(rows) == {"secret", "pattern"} and rows["pattern"].status == "ok"
    assert rows["secret"].status == "failed"
    assert rows["secret"].error is not None and rows["secret"].error.startswith(
        f"generate-video: input 'secret': /etc/shadow is not under a directory node {rows['secret'].node} reads "
        f"campaign inputs from ({ffwatt_env / 'clips'})")
