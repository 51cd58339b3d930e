"""The master as a person meets it: `ffwatt stack up` on ports that aren't the defaults, an agent
running as an ordinary user (not root), a campaign run through `prefect deployment run`, and the
Prefect UI in a real browser (Debian's Chromium through its own chromedriver): log in with the
stack's credentials, see the ffwatt deployments and the finished campaign's run and artifacts."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ffwatt.results import list_runs, read_results
from ffwatt.settings import REPO
from testbed.fleet import wait_for
from testbed.net import free_ports_env
from tests.conftest import BIN, ffwatt_cli

FFWATT = ffwatt_cli()
USER = "nobody"  # an ordinary user every Debian has


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "starting the agent as another user needs root"
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "needs Debian's chromium and chromium-driver (make test installs them as root)"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no user {USER!r} here"
    probe = subprocess.run(["runuser", "-u", USER, "--", "test", "-r", str(REPO / "pyproject.toml")])
    if probe.returncode != 0:
        return f"the checkout {REPO} isn't readable by an ordinary user here"
    return None


pytestmark = [pytest.mark.e2e, pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))]


@dataclass
class Master:
    env: dict[str, str]
    home: Path
    results: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.env['FFWATT_MASTER_PORT']}/api"

    @property
    def auth(self) -> str:
        return (self.home / "stack" / "auth").read_text().strip()


@pytest.fixture(scope="module")
def master() -> Iterator[Master]:
    work = Path(tempfile.mkdtemp(prefix="ffwatt-ui-"))
    work.chmod(0o755)
    ports = free_ports_env()  # the master's and its agent's
    env = {"FFWATT_HOME": str(work / "master"), "FFWATT_RESULTS_DIR": str(work / "results"), **ports}
    up = subprocess.run([FFWATT, "stack", "up"], env={**os.environ, **env}, capture_output=True, text=True,
                        timeout=300)
    master = Master(env, work / "master", work / "results")
    agent_home = work / "agent"
    agent_home.mkdir()
    shutil.chown(agent_home, USER)
    agent_env = {**os.environ, "HOME": str(agent_home), "PREFECT_HOME": str(agent_home / "prefect"),
                 "FFWATT_HOME": str(agent_home / "ffwatt"), "FFWATT_NODE": "ui-node", **ports}
    agent = None
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        with (work / "agent.log").open("wb") as log:
            agent = subprocess.Popen(["runuser", "-u", USER, "--", FFWATT, "agent", "start", "--master", master.api,
                                      "--auth-string", master.auth], env=agent_env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        discovery = f"http://127.0.0.1:{env['FFWATT_DISCOVERY_PORT']}/nodes"

        def online() -> bool:
            assert agent is not None and agent.poll() is None, (work / "agent.log").read_text()[-3000:]
            try:
                nodes = {n["node"]: n for n in httpx.get(discovery, timeout=5,
                                                         auth=tuple(master.auth.split(":", 1))).json()}
            except (httpx.HTTPError, ValueError):
                return False
            return bool(nodes.get("ui-node", {}).get("online") and nodes["ui-node"]["pools"])

        assert wait_for(online, 180, every_s=1), (work / "agent.log").read_text()[-3000:]
        yield master
    finally:
        if agent is not None and agent.poll() is None:
            os.killpg(agent.pid, signal.SIGTERM)  # the group runuser leads, which this test started
            try:
                agent.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(agent.pid, signal.SIGKILL)
                agent.wait(10)
        subprocess.run([FFWATT, "stack", "down"], env={**os.environ, **env}, capture_output=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def campaign_run(master: Master) -> str:
    spec = {"name": "ui", "inputs": [{"name": "p", "source": "testsrc2", "size": "320x240", "fps": 24,
                                      "duration_s": 1}],
            "matrix": {"encoders": ["libx264"], "rate_control": [{"mode": "crf", "values": [28, 36]}]},
            "quality": [], "idle_baseline_s": 1}
    done = subprocess.run([str(BIN / "prefect"), "deployment", "run", "campaign/quick", "--params",
                           json.dumps({"campaign": spec, "dispatch": "pools"}), "--watch", "--watch-timeout", "300"],
                          env={**os.environ, "PREFECT_API_URL": master.api, "PREFECT_API_AUTH_STRING": master.auth},
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = list_runs(master.results, "ui")
    return run.run_id


def test_an_agent_running_as_an_ordinary_user_runs_jobs(master: Master, campaign_run: str):
    rows = read_results(master.results, campaign="ui", run_id=campaign_run)
    assert len(rows) == 2 and (rows.status == "ok").all() and set(rows.node) == {"ui-node"}
    # As an ordinary user RAPL is root-only (or absent here): the estimate, saying so.
    assert rows.energy_source.str.contains("estimated").all()
    owners = {pwd.getpwuid(p.stat().st_uid).pw_name for p in (master.home.parent / "agent" / "ffwatt").rglob("*")}
    assert owners == {USER}  # the agent wrote only as that user


def test_the_prefect_ui_on_a_non_default_port(master: Master, campaign_run: str, tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service as ChromeService
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    options = Options()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1400,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=ChromeService(shutil.which("chromedriver")))
    ui = master.api.removesuffix("/api")

    def body_has(*texts: str) -> bool:
        body = browser.find_element(By.TAG_NAME, "body").text
        return all(text in body for text in texts)

    def alarmed() -> list[str]:
        body = browser.find_element(By.TAG_NAME, "body").text
        return [text for text in ("Authentication failed", "Oops", "Something went wrong", "Can't connect")
                if text in body]

    try:
        # The page `ffwatt campaign submit` prints, opened by someone not logged in yet: a login page that
        # asks, and says nothing went wrong before anything is typed (V1's said "Oops ... Authentication failed").
        from ffwatt.fleet.client import ApiClient

        browser.get(ApiClient(master.api).ui_page(f"/runs/flow-run/{campaign_run}"))
        login = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "input[type=password]"), 30)
        assert login, "the UI asked for no credentials"
        assert not wait_for(alarmed, 5, every_s=0.5), (alarmed(), browser.current_url)
        browser.save_screenshot(str(tmp_path / "login.png"))
        login[0].send_keys(master.auth, Keys.ENTER)
        assert wait_for(lambda: body_has("Completed"), 60), browser.page_source[:2000]  # back on the run's page
        assert alarmed() == []
        browser.get(f"{ui}/deployments")
        assert wait_for(lambda: body_has("quick", "campaign", "node-batch"), 60), browser.page_source[:2000]
        assert "Can't connect to Server API" not in browser.find_element(By.TAG_NAME, "body").text
        browser.get(f"{ui}/runs/flow-run/{campaign_run}")
        assert wait_for(lambda: body_has("ui", "Completed"), 60), browser.page_source[:2000]
        browser.get(f"{ui}/artifacts")
        assert wait_for(lambda: body_has("campaign-ui"), 60), browser.page_source[:2000]
        browser.save_screenshot(str(tmp_path / "artifacts.png"))
    finally:
        browser.quit()


def test_stack_status_warns_when_sqlite_serves_more_than_one_node(master: Master):
    def status() -> str:
        done = subprocess.run([FFWATT, "stack", "status"], env={**os.environ, **master.env, "COLUMNS": "200"},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "ui-node" in status() and "SQLite" not in status()
    env = {**os.environ, "PREFECT_API_URL": master.api, "PREFECT_API_AUTH_STRING": master.auth}
    # A second node, as its agent would show itself: its record, then its worker's heartbeat.
    beat = ("from ffwatt.fleet.nodes import NodeRecord, publish_node, worker_name\n"
            "from prefect.client.orchestration import get_client\n"
            "publish_node(NodeRecord(node='second', address='127.0.0.1', pools=['cpu'], encoders=['libx264'],"
            " exporters={}, started_at=0))\n"
            "with get_client(sync_client=True) as client:\n"
            "    client.send_worker_heartbeat('ffwatt-cpu', worker_name('second', 'cpu'), 10)\n")
    done = subprocess.run([str(BIN / "python"), "-c", beat], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = status()
    assert "runs on SQLite and serves 2 online nodes" in " ".join(text.split()) and "PostgreSQL" in text
