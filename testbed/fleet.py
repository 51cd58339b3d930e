"""Several hosts on one machine: network namespaces joined by a bridge, created and
removed by the tests themselves. Traffic stays on 10.203.0.0/24 inside them."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pandas as pd

from ffwatt.fleet.prefect_server import BIN
from ffwatt.processes import incarnation
from ffwatt.results import read_results

FFWATT = str(BIN / "ffwatt")
PREFECT = str(BIN / "prefect")
T = TypeVar("T")

# Namespace and veth names start with this (at most 5 characters: a veth name is 15 at most). Two
# suites on one machine each set their own, or each would clean the other's hosts away.
PREFIX = os.environ.get("FFWATT_TEST_NETNS", "ffwt")
SUBNET = "10.203.0"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


@dataclass(frozen=True)
class Host:
    name: str  # the namespace
    address: str

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})

    def popen(self, *args: str, env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(self.cmd(*args), env={**os.environ, **env}, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def processes_with(self, text: str) -> list[int]:
        """Processes in this host whose command line contains ``text``."""
        found = []
        for pid in sh("ip", "netns", "pids", self.name, check=False).stdout.split():
            with contextlib.suppress(OSError):
                if text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
        return found

    def unplug(self) -> None:
        """Take this host off the network: its links down, so what it was sent gets no answer at all (no
        refusal, as from a machine powered off)."""
        links = sh(*self.cmd("ip", "-o", "link", "show"), check=False).stdout.splitlines()
        for name in {line.split(":")[1].strip().split("@")[0] for line in links} - {"lo"}:
            sh(*self.cmd("ip", "link", "set", "dev", name, "down"), check=False)

    def kill_all(self) -> None:
        """SIGKILL every process in this host: the node dies."""
        pids = sh("ip", "netns", "pids", self.name, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)


def wait_for(check: Callable[[], T], timeout_s: float, *, every_s: float = 0.5) -> T | None:
    """``check()``'s first truthy value within ``timeout_s``, else None."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    return None


def _cleanup(names: list[str]) -> None:
    for name in names:
        Host(name, "").kill_all()
    time.sleep(0.3)
    for name in names:
        sh("ip", "netns", "del", name, check=False)


@contextlib.contextmanager
def hosts(names: list[str]) -> Iterator[dict[str, Host]]:
    """Namespaces ``<PREFIX>-<name>`` on one bridge, 10.203.0.1, .2, ... in order."""
    switch = f"{PREFIX}-sw"
    all_ns = [switch] + [f"{PREFIX}-{n}" for n in names]
    _cleanup(all_ns)  # leftovers of an interrupted run
    try:
        sh("ip", "netns", "add", switch)
        sh("ip", "netns", "exec", switch, "ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "netns", "exec", switch, "ip", "link", "set", "br0", "up")
        made = {}
        for index, name in enumerate(names, start=1):
            ns, address = f"{PREFIX}-{name}", f"{SUBNET}.{index}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", f"{PREFIX}{index}a", "type", "veth", "peer", "name", f"{PREFIX}{index}b")
            sh("ip", "link", "set", f"{PREFIX}{index}a", "netns", ns)
            sh("ip", "link", "set", f"{PREFIX}{index}b", "netns", switch)
            sh("ip", "netns", "exec", switch, "ip", "link", "set", f"{PREFIX}{index}b", "master", "br0")
            sh("ip", "netns", "exec", switch, "ip", "link", "set", f"{PREFIX}{index}b", "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{address}/24", "dev", f"{PREFIX}{index}a")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", f"{PREFIX}{index}a", "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            made[name] = Host(ns, address)
        yield made
    finally:
        _cleanup(all_ns)


def available() -> str | None:
    """Why namespaces can't be used here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if sh("ip", "netns", "list", check=False).returncode != 0:
        return "iproute2's `ip netns` is unavailable"
    return None


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else None


def psql(host: Host, query: str) -> str:
    done = host.run("runuser", "-u", "postgres", "--", _pg_bin("psql") or "psql", "-h", "127.0.0.1",
                    "-p", "5432", "-d", "prefect", "-tAc", query)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@contextlib.contextmanager
def postgres(host: Host | None, port: int = 5432, data_dirs: list[Path] | None = None, *,
             shared: bool = False) -> Iterator[str | None]:
    """A throwaway PostgreSQL cluster on ``host``'s loopback (this machine's when None); yields
    Prefect's database URL (None where Debian's postgresql isn't installed). ``data_dirs`` receives
    its directory (``db/postmaster.pid`` names its postmaster). ``shared``: on ``host``'s address too,
    open to the test's other hosts, and the URL names that address."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        yield None
        return

    def there(*args: str) -> list[str]:
        return host.cmd(*args) if host is not None else list(args)

    data = Path(tempfile.mkdtemp(prefix="ffwatt-pg-"))
    if data_dirs is not None:
        data_dirs.append(data)
    os.chmod(data, 0o700)
    sh("chown", "postgres:postgres", str(data))
    as_pg = ["runuser", "-u", "postgres", "--"]
    sh(*there(*as_pg, initdb, "-D", str(data / "db"), "--auth=trust", "-U", "postgres"))
    address = host.address if shared and host is not None else "127.0.0.1"
    if address != "127.0.0.1":
        with (data / "db" / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 trust\n")
    sh(*there(*as_pg, pg_ctl, "-D", str(data / "db"), "-l", str(data / "log"), "-w", "-o",
              f"-c listen_addresses={','.join(dict.fromkeys(['127.0.0.1', address]))} -c port={port} "
              f"-c unix_socket_directories={data} -c max_connections=200", "start"))
    try:
        sh(*there(*as_pg, _pg_bin("createdb") or "createdb", "-h", "127.0.0.1", "-p", str(port), "prefect"))
        yield f"postgresql+asyncpg://postgres@{address}:{port}/prefect"
    finally:
        sh(*there(*as_pg, pg_ctl, "-D", str(data / "db"), "-m", "immediate", "stop"), check=False)
        sh("rm", "-rf", str(data), check=False)


def campaign(name: str, *, size: str, duration_s: float, presets: list[str], crfs: list[int]) -> dict:
    return {"name": name, "inputs": [{"name": "pattern", "source": "testsrc2", "size": size, "fps": 24,
                                      "duration_s": duration_s}],
            "matrix": {"encoders": [{"name": "libx264", "presets": presets}],
                       "rate_control": [{"mode": "crf", "values": crfs}]},
            "quality": [], "idle_baseline_s": 1}


class Fleet:
    """A master and agents on namespaced hosts, driven through the real CLI."""

    def __init__(self, hosts: dict[str, Host], work: Path, *, database_url: str | None = None) -> None:
        self.hosts, self.work, self.database_url = hosts, work, database_url
        self.master = hosts["master"]
        self.master_env = {"FFWATT_HOME": str(work / "master"), "FFWATT_NODE": "master",
                           "FFWATT_MASTER_HOST": self.master.address,
                           "FFWATT_RESULTS_DIR": str(work / "results")}
        if database_url:
            self.master_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
        self.ca = work / "master" / "stack" / "tls" / "ca.pem"
        self.agents: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def auth(self) -> str:
        return (self.work / "master" / "stack" / "auth").read_text().strip()

    @property
    def https_api(self) -> str:
        return f"https://{self.master.address}:4443/api"

    def client_env(self) -> dict[str, str]:
        return {**self.master_env, "PREFECT_API_URL": self.https_api, "PREFECT_API_AUTH_STRING": self.auth,
                "PREFECT_API_SSL_CERT_FILE": str(self.ca)}

    def stack_up(self) -> None:
        done = self.master.run(FFWATT, "stack", "up", "--generate-cert", env=self.master_env)
        assert done.returncode == 0, done.stdout + done.stderr

    def start_agent(self, name: str, **env: str) -> None:
        host = self.hosts[name]
        # Heartbeats every 2 s: a killed node is seen in 6 s, not the default 30.
        env = {"FFWATT_HOME": str(self.work / name), "FFWATT_NODE": name, "FFWATT_WORKER_HEARTBEAT_S": "2", **env}
        self.agents[name] = host.popen(FFWATT, "agent", "start", "--master", self.https_api,
                                       "--address", host.address, "--auth-string", self.auth,
                                       "--ca", str(self.ca), env=env, log=str(self.work / f"{name}.log"))

    def stop_agent(self, name: str) -> None:
        """SIGTERM the agent this fleet started on ``name``: it stops what it started and deregisters."""
        agent = self.agents.pop(name, None)
        if agent is None:
            return
        agent.terminate()
        try:
            agent.wait(60)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()

    def kill_agent(self, name: str) -> None:
        """SIGKILL the agent process alone, as the OOM killer or `kill -9` would: what it started in
        sessions of their own (its exporters) lives on."""
        agent = self.agents[name]
        agent.kill()  # `ip netns exec` execs the agent: this pid is the agent itself
        agent.wait()

    def close(self) -> None:
        """Stop the agents this fleet started and the master's stack, then print every log (pytest shows
        them when a test failed)."""
        for agent in self.agents.values():
            if agent.poll() is None:
                agent.terminate()
        for agent in self.agents.values():
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
        self.master.run(FFWATT, "stack", "down", env=self.master_env)
        for log in sorted(self.work.glob("*.log")) + sorted((self.work / "master" / "run").glob("*.log")):
            print(f"--- {log}\n{log.read_text()[-3000:]}")

    def nodes(self) -> dict[str, dict]:
        done = self.master.run("curl", "-sf", "-u", self.auth, f"http://{self.master.address}:9599/nodes")
        return {n["node"]: n for n in json.loads(done.stdout or "[]")}

    def wait_nodes_online(self, names: set[str], timeout_s: float = 120) -> None:
        """Until each node is online, served by the agent this fleet started last on it: an agent just
        restarted must not pass for online on its predecessor's record and heartbeats."""
        def serving(name: str, record: dict) -> bool:
            agent = self.agents.get(name)
            return agent is None or record.get("incarnation") == incarnation(agent.pid)

        def online() -> bool:
            nodes = self.nodes()
            return all(nodes.get(n, {}).get("online") and nodes[n]["pools"] and serving(n, nodes[n]) for n in names)

        assert wait_for(online, timeout_s, every_s=1), f"nodes {names} not online: {self.nodes()}"

    def run_campaign(self, spec: dict, *, wait: bool = True, jobs_fail: bool = False, cli: str = "prefect"
                     ) -> subprocess.Popen[bytes] | str:
        """Run ``spec`` through `prefect deployment run` (or `ffwatt campaign submit`); the flow run
        (and the CLI) fail when a job does, so ``jobs_fail`` says which outcome to expect."""
        if cli == "ffwatt":
            file = self.work / f"{spec['name']}.yaml"
            file.write_text(json.dumps(spec))  # JSON is YAML
            args: tuple[str, ...] = (FFWATT, "campaign", "submit", str(file))
        else:
            params = json.dumps({"campaign": spec, "dispatch": "pools"})
            args = (PREFECT, "deployment", "run", "campaign/quick", "--params", params, "--watch",
                    "--watch-interval", "1", "--watch-timeout", "600")
        if not wait:
            return self.master.popen(*args, env=self.client_env(), log=str(self.work / f"{spec['name']}.log"))
        done = self.master.run(*args, env=self.client_env(), timeout=700)
        assert (done.returncode != 0) == jobs_fail, done.stdout[-3000:] + done.stderr[-3000:]
        assert "Failed" in done.stdout if jobs_fail else "Completed" in done.stdout
        return done.stdout + done.stderr

    def rows(self, name: str) -> pd.DataFrame:
        return read_results(self.work / "results", campaign=name)

    def campaign_through(self, name: str, disrupt: Callable[[], None]) -> None:
        """A 6-job campaign with ``disrupt()`` done once its first row is home: it still ends with every
        job's row ok, each once, none retried."""
        watcher = self.run_campaign(campaign(name, size="320x240", duration_s=2, presets=["ultrafast", "veryfast"],
                                             crfs=[22, 30, 38]), wait=False, cli="ffwatt")
        assert isinstance(watcher, subprocess.Popen)
        results = self.work / "results" / f"campaign={name}"
        assert wait_for(lambda: list(results.rglob("job-*.parquet")), 300), f"no row of {name} arrived"
        disrupt()

        def finished() -> bool:
            found = list(results.glob("run_id=*/_run.json"))
            return bool(found) and json.loads(found[0].read_text())["state"] != "running"

        done = wait_for(finished, 600)
        watcher.terminate()
        watcher.wait(30)
        assert done, f"campaign {name} never finished"
        rows = self.rows(name)
        assert len(rows) == 6 and rows.job_id.is_unique and (rows.status == "ok").all(), rows.error.tolist()
        assert (rows.attempts == 1).all(), rows[["job_id", "attempts"]]


