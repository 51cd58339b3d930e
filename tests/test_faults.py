"""Faults a new user runs into, each driven through the real CLI so none can come back: other
people's processes and ports, stale pid files, concurrent runs, campaigns that can't run or that
ask workers to touch files, bad settings, an unreachable or refusing API, full disks, signals."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ffwatt.errors import CampaignError
from ffwatt.fleet.prefect_server import free_port
from ffwatt.results import list_runs, read_results, read_run_summary
from flows.nodelock import node_holder
from testbed.fleet import wait_for
from tests.conftest import BIN, ffwatt, ffwatt_cli, stop_process_group

FFWATT = ffwatt_cli()


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A command that checks, lists or refuses: run in this process."""
    return ffwatt(*args, env=env)


def cli_process(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """A command that runs a flow or serves: its own process, as a user starts it."""
    return subprocess.run([FFWATT, *args], env={**os.environ, "COLUMNS": "200", **env}, capture_output=True,
                          text=True, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The command failed with one error line (no traceback) at the end of its output; returns it."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), done.stderr
    return lines[-1]


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    return {"FFWATT_HOME": str(tmp_path / "home"), "FFWATT_RESULTS_DIR": str(tmp_path / "results")}


def campaign_file(tmp_path: Path, name: str = "faults", **changes: object) -> Path:
    spec: dict[str, object] = {
        "name": name,
        "inputs": [{"name": "pattern", "source": "testsrc2", "size": "320x240", "fps": 24, "duration_s": 1}],
        "matrix": {"encoders": [{"name": "libx264", "presets": ["ultrafast"]}],
                   "rate_control": [{"mode": "crf", "values": [30]}]},
        "quality": [], "idle_baseline_s": 0,
    }
    spec.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# --- never take over or kill what isn't ours -------------------------------------------------------

@pytest.mark.e2e
def test_stack_up_refuses_a_port_held_by_another_prefect_server(tmp_path: Path, home: dict[str, str]):
    port = free_port()
    other_home = tmp_path / "someone-else"
    other = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--port", str(port)],
                             env={**os.environ, "PREFECT_HOME": str(other_home), "PREFECT_UI_ENABLED": "false"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/api/health"],
                             capture_output=True).returncode != 0:
            assert time.monotonic() < deadline and other.poll() is None, "the other server didn't start"
            time.sleep(0.5)
        env = {**home, "FFWATT_MASTER_PORT": str(port), "FFWATT_DISCOVERY_PORT": str(free_port())}
        line = one_line_error(cli_process("stack", "up", env=env))
        # The holder is the other server's process group (its uvicorn may be a child of the pid started).
        assert f"can't start prefect-server: port {port} on 127.0.0.1 is held by pid" in line, line
        assert "prefect" in line and "server" in line
        status = cli("stack", "status", env=env)
        assert "running" not in status.stdout.split("nodes")[0]
        # Nothing was registered on the other server: no ffwatt pools.
        pools = subprocess.run(["curl", "-sf", "-X", "POST", f"http://127.0.0.1:{port}/api/work_pools/filter",
                                "-H", "content-type: application/json", "-d", "{}"], capture_output=True, text=True)
        assert "ffwatt-" not in pools.stdout
    finally:
        os.killpg(other.pid, signal.SIGTERM)
        other.wait(30)


def test_a_stale_pid_file_never_gets_another_process_killed(home: dict[str, str]):
    """The pid in the file now belongs to an unrelated process: not reported running, not signalled."""
    sleeper = subprocess.Popen(["setsid", "sleep", "600"])
    try:
        run_dir = Path(home["FFWATT_HOME"]) / "run"
        run_dir.mkdir(parents=True)
        (run_dir / "prefect-server.pid").write_text(str(sleeper.pid))  # the format older ffwatt wrote
        assert "running" not in cli("stack", "status", env=home).stdout
        assert cli("stack", "down", env=home).returncode == 0
        time.sleep(0.3)
        assert sleeper.poll() is None, "stack down killed a process that wasn't the stack's"
        (run_dir / "discovery.pid").write_text(json.dumps(
            {"pid": sleeper.pid, "start_ticks": 1, "cmdline": ["sleep", "600"], "url": ""}))  # pid reused
        cli("stack", "down", env=home)
        time.sleep(0.3)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


# --- runs that race, campaigns that can't run ------------------------------------------------------

def test_a_second_run_on_a_busy_node_is_refused_naming_the_holder(tmp_path: Path, home: dict[str, str]):
    """The same campaign run twice at once: both ok, each billed about twice the energy (20.9 J vs 9.5 J)."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom pathlib import Path\nfrom flows.nodelock import node_lock\n"
        "with node_lock(Path(sys.argv[1]), 'campaign other run r-1'):\n"
        "    print('held', flush=True)\n    sys.stdin.read()\n"), home["FFWATT_HOME"]],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        line = one_line_error(cli("campaign", "run", str(campaign_file(tmp_path)), env=home))
        assert line.startswith(f"error: this node is already measuring campaign other run r-1 (pid {holder.pid} on ")
        assert "run again with --wait to start when it has" in line
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # it lets go of the lock and ends
        holder.wait(30)
    from flows.nodelock import node_holder

    assert node_holder(Path(home["FFWATT_HOME"])) is None  # freed with its holder


@pytest.mark.e2e
def test_two_runs_at_once_measure_one_at_a_time(tmp_path: Path, home: dict[str, str],
                                               prefect_server: dict[str, str]):
    """Run twice at once (the second with --wait), a campaign's encodes never overlap, no window is billed
    for the other run's encodes, and the reference both need is made once."""
    spec = campaign_file(tmp_path, inputs=[{"name": "shared", "source": "testsrc2", "size": "1280x720",
                                            "fps": 30, "duration_s": 2}],
                         matrix={"encoders": [{"name": "libx264", "presets": ["veryfast"]}],
                                 "rate_control": [{"mode": "crf", "values": [24, 30, 36]}]})
    env = {**os.environ, **prefect_server, **home, "COLUMNS": "200"}
    logs = [tmp_path / "first.log", tmp_path / "second.log"]

    def start(log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen([FFWATT, "campaign", "run", str(spec), "--wait"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    # The second arrives while the first holds the node: the first is paused holding it until the second
    # says it waits, as a slow start of either would otherwise let them run one after the other untested.
    first = start(logs[0])
    runs = [first]
    try:
        assert wait_for(lambda: "campaign faults run" in (node_holder(Path(home["FFWATT_HOME"])) or ""), 300), \
            logs[0].read_text()[-3000:]
        os.killpg(first.pid, signal.SIGSTOP)
        try:
            runs.append(start(logs[1]))
            assert wait_for(lambda: "waiting for this node: it is measuring campaign faults run"
                            in logs[1].read_text(), 120), logs[1].read_text()[-3000:]
        finally:
            os.killpg(first.pid, signal.SIGCONT)
        for run in runs:
            run.wait(timeout=400)
    finally:
        for run in runs:
            if run.poll() is None:
                stop_process_group(run)
    assert [run.returncode for run in runs] == [0, 0], [log.read_text()[-3000:] for log in logs]
    rows = read_results(Path(home["FFWATT_RESULTS_DIR"]), campaign="faults")
    assert len(rows) == 6 and (rows.status == "ok").all() and rows.run_id.nunique() == 2
    windows = sorted(zip(rows.started_at, rows.ended_at))
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(windows))  # never two at once
    first, second = (rows[rows.run_id == run_id] for run_id in rows.run_id.unique())
    assert first.ended_at.max() <= second.started_at.min() or second.ended_at.max() <= first.started_at.min()
    references = Path(home["FFWATT_HOME"]) / "cache" / "references"
    assert len(list(references.glob("shared-*.mkv"))) == 1 and not list(references.glob(".*.partial"))


def test_extra_args_cannot_make_a_worker_write_a_file(tmp_path: Path, home: dict[str, str]):
    target = tmp_path / "written-by-ffmpeg.mkv"
    spec = campaign_file(tmp_path, matrix={"encoders": [{"name": "libx264", "extra_args": ["-f", "matroska",
                                                                                           str(target)]}],
                                           "rate_control": [{"mode": "crf", "values": [30]}]})
    line = one_line_error(cli("campaign", "validate", str(spec), env=home))
    assert "-f adds an output or changes the container" in line
    assert "problem" in line or "-f" in line
    for bad, why in ((["-vstats_file", str(target)], "names a file"), (["-i", "/etc/passwd"], "adds an input"),
                     (["-x264-params", "stats=/tmp/x.log"], "names a file"), ([str(target)], "is not an option"),
                     (["-vf", "movie=/etc/passwd"], "runs filters")):
        spec = campaign_file(tmp_path, matrix={"encoders": [{"name": "libx264", "extra_args": bad}],
                                               "rate_control": [{"mode": "crf", "values": [30]}]})
        done = cli("campaign", "validate", str(spec), env=home)
        assert done.returncode == 2 and why in done.stderr, (bad, done.stderr)
    assert not target.exists()


@pytest.mark.parametrize("extra_args", [
    ["-flags", "+pass1"], ["-flags:v", "+global_header+pass2"], ["-pass", "1"], ["-passlogfile", "x264"],
    ["-x264-params", "keyint=60:pass=1"], ["-x264opts", "pass=2"], ["-x265-params", "slow_firstpass=1"],
    ["-svtav1-params", "passes=2"], ["-aom-params", "passes=2"],
])
def test_two_pass_is_refused_in_every_spelling(tmp_path: Path, home: dict[str, str], extra_args: list[str]):
    """`-flags +pass1` was taken, and x264's pass logs landed in the working directory (a node's checkout)."""
    spec = campaign_file(tmp_path, matrix={"encoders": [{"name": "libx264", "extra_args": extra_args}],
                                           "rate_control": [{"mode": "crf", "values": [30]}]})
    line = one_line_error(cli("campaign", "validate", str(spec), env=home))
    assert "is two-pass encoding, which ffwatt doesn't do" in line and "refused" in line
    assert not list(Path.cwd().glob("ffmpeg2pass*")) and not list(tmp_path.glob("ffmpeg2pass*"))


@pytest.mark.parametrize(("inputs", "problem"), [
    ([{"name": "gone", "path": "/nonexistent/clip.mp4"}], "/nonexistent/clip.mp4 does not exist"),
    ([{"name": "dir", "path": "/tmp"}], "/tmp is a directory"),
    ([{"name": "text", "path": "notes.txt"}], "can't be read as media (Invalid data found when processing input)"),
    ([{"name": "audio", "path": "audio.m4a"}], "has no video stream (it has 1 audio stream(s))"),
])
def test_validate_refuses_inputs_that_cant_run(tmp_path: Path, home: dict[str, str], ffmpeg: str,
                                               inputs: list[dict[str, str]], problem: str):
    (tmp_path / "notes.txt").write_text("not a video")
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "sine", "-t", "1", str(tmp_path / "audio.m4a")],
                   check=True)
    spec = campaign_file(tmp_path, inputs=inputs)
    assert problem in one_line_error(cli("campaign", "validate", str(spec), env=home))
    # The same message at the start of a run, before anything is encoded.
    assert problem in one_line_error(cli_process("campaign", "run", str(spec), env=home))


def test_inputs_from_the_api_are_read_only_where_the_node_allows(tmp_path: Path, home: dict[str, str], ffmpeg: str,
                                                                  monkeypatch: pytest.MonkeyPatch):
    """A fleet campaign with an input `path: /etc/shadow` was sent to a worker, which tried to open it."""
    from ffwatt.settings import load_settings
    from ffwatt.validation import input_path_refusal, parse_campaign, preflight

    clips = tmp_path / "clips"
    clips.mkdir()
    clip = clips / "ok.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x90:rate=12", "-frames:v", "12",
                    "-pix_fmt", "yuv420p", str(clip)], check=True)
    (clips / "link.mp4").symlink_to("/etc/passwd")  # a link under an allowed directory that leads out of it
    for name, value in home.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FFWATT_INPUT_DIRS", f"{tmp_path / 'elsewhere'}:{clips}")
    settings = load_settings()

    def campaign(path: str):  # as it arrives through the API: absolute paths, no YAML beside it
        return parse_campaign({"name": "api", "inputs": [{"name": "clip", "path": path}],
                               "matrix": {"encoders": ["libx264"], "rate_control": [{"mode": "crf", "values": [30]}]},
                               "quality": []})

    for path in ("/etc/shadow", str(clips / "link.mp4"), f"{clips}/../../../etc/shadow"):
        spec = campaign(path).inputs[0]
        why = input_path_refusal(spec, settings)
        assert why is not None and why.startswith(f"input 'clip': {path} is not under a directory node "), path
        assert f"({tmp_path / 'elsewhere'}:{clips}); put the clip there, or add its directory to FFWATT_INPUT_DIRS" \
            in why
        # Refused before any check that opens it (which would say "can't be read as media").
        with pytest.raises(CampaignError, match="is not under a directory node"):
            preflight(campaign(path), settings, from_api=True)
    assert input_path_refusal(campaign(str(clip)).inputs[0], settings) is None
    preflight(campaign(str(clip)), settings, from_api=True)
    monkeypatch.delenv("FFWATT_INPUT_DIRS")
    default = input_path_refusal(campaign(str(clip)).inputs[0], load_settings())
    assert default is not None and f"({Path(home['FFWATT_HOME']) / 'inputs'})" in default


def test_validate_refuses_sizes_and_encoders_that_cant_run(tmp_path: Path, home: dict[str, str]):
    for size, problem in (("00x00", "out of range"), ("99998x99998", "out of range")):
        spec = campaign_file(tmp_path, inputs=[{"name": "p", "source": "testsrc2", "size": size}])
        assert problem in one_line_error(cli("campaign", "validate", str(spec), env=home))
    text = campaign_file(tmp_path).read_text().replace("size: 320x240", "size: 0x0")  # YAML: hexadecimal 0
    (tmp_path / "hex.yaml").write_text(text)
    assert "0 is a number to YAML, not a size" in one_line_error(
        cli("campaign", "validate", str(tmp_path / "hex.yaml"), env=home))
    nvenc = campaign_file(tmp_path, matrix={"encoders": [{"name": "h264_nvenc"}],
                                            "rate_control": [{"mode": "crf", "values": [30]}]})
    line = one_line_error(cli("campaign", "validate", str(nvenc), env=home))  # CUDA hidden: no device here
    assert "can't encode on this node: h264_nvenc" in line


def test_a_campaign_too_large_for_the_api_is_refused_in_one_line(tmp_path: Path, home: dict[str, str]):
    spec = campaign_file(tmp_path, description="x" * 600_000)
    line = one_line_error(cli("campaign", "validate", str(spec), env=home))
    assert "KiB as flow parameters, over the 400 KiB that fit a Prefect API request" in line


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_results_disk_is_found_before_the_first_job(tmp_path: Path, home: dict[str, str]):
    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "ffwatt-test", str(full)], check=True)
    try:
        with (full / "filler").open("wb") as filler, pytest.raises(OSError):
            filler.write(b"\0" * 200_000)  # fill it up
        spec = campaign_file(tmp_path)
        line = one_line_error(cli_process("campaign", "run", str(spec), env={**home, "FFWATT_RESULTS_DIR": str(full)}))
        assert f"the results directory (FFWATT_RESULTS_DIR) {full} can't be written" in line
        assert "MiB free" in line
        assert not (Path(home["FFWATT_HOME"]) / "cache").exists()  # nothing was encoded
    finally:
        subprocess.run(["umount", str(full)], check=True)


# --- one clear line, not a traceback ---------------------------------------------------------------

@pytest.mark.parametrize(("listen", "problem"), [
    ("notaport", "unknown host 'notaport'"),
    (":99999", "'99999' is not a port"),
    ("no-such-host.invalid:9510", "unknown host 'no-such-host.invalid'"),
    ("", "--listen is empty"),
])
def test_exporter_listen_mistakes_are_one_line(home: dict[str, str], listen: str, problem: str):
    assert problem in one_line_error(cli("exporter", "cpu", "--listen", listen, env=home))


def test_an_exporter_port_taken_names_the_holder(home: dict[str, str]):
    port = free_port()
    holder = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        line = one_line_error(cli("exporter", "ffmpeg", "--listen", f"127.0.0.1:{port}", env=home))
        assert f"can't listen on 127.0.0.1:{port}: held by pid {holder.pid}" in line and "http.server" in line
    finally:
        holder.kill()
        holder.wait()


def test_a_bad_setting_is_one_line(tmp_path: Path, home: dict[str, str]):
    line = one_line_error(cli("campaign", "validate", str(campaign_file(tmp_path)),
                              env={**home, "FFWATT_CPU_TDP_W": "abc"}))
    assert "FFWATT_CPU_TDP_W='abc': Input should be a valid number" in line and "fix or unset it" in line


@pytest.mark.e2e
def test_an_unreachable_or_refusing_api_is_one_line(tmp_path: Path, home: dict[str, str],
                                                   prefect_server: dict[str, str]):
    spec = str(campaign_file(tmp_path))
    unreachable = {**home, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}
    assert "can't reach the Prefect API at http://127.0.0.1:" in one_line_error(
        cli_process("campaign", "run", spec, env=unreachable))
    assert "can't reach the Prefect API" in one_line_error(cli_process(
        "agent", "start", "--master", unreachable["PREFECT_API_URL"], env=home))
    with _auth_server() as (url, _auth):
        refused = one_line_error(cli_process("campaign", "run", spec, env={
            **home, "PREFECT_API_URL": url, "PREFECT_API_AUTH_STRING": "ffwatt:wrong"}))
        assert f"the Prefect API at {url} refused the credentials given (401)" in refused
        assert "refused no credentials (401)" in one_line_error(
            cli_process("agent", "start", "--master", url, env={**home, "PREFECT_API_AUTH_STRING": ""}))


def _auth_server():  # a real server with credentials, as the stack runs it
    import contextlib

    from testbed.prefect_server import temporary_server

    @contextlib.contextmanager
    def started() -> Iterator[tuple[str, str]]:
        os.environ["PREFECT_SERVER_API_AUTH_STRING"] = "ffwatt:right"
        try:
            with temporary_server() as env:
                yield env["PREFECT_API_URL"], "ffwatt:right"
        finally:
            del os.environ["PREFECT_SERVER_API_AUTH_STRING"]

    return started()


def test_ffmpeg_text_is_logged_verbatim():
    """Prefect's console turned FFmpeg's 0:v:0 into an emoji."""
    code = ("import logging, io\n"
            "from ffwatt.fleet.prefect_console import VerbatimConsoleHandler\n"
            "stream = io.StringIO()\n"
            "handler = VerbatimConsoleHandler(stream=stream)\n"
            "logging.getLogger('t').addHandler(handler)\n"
            "logging.getLogger('t').warning(\"Failed to set value '0:v:0' for option 'map'\")\n"
            "print(stream.getvalue())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "'0:v:0'" in done.stdout
    from ffwatt.fleet.prefect_server import PREFECT_ENV

    assert PREFECT_ENV["PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS"].endswith("VerbatimConsoleHandler")


# --- runs that tell the truth afterwards -----------------------------------------------------------

def _long_campaign(tmp_path: Path) -> Path:
    return campaign_file(tmp_path, name="long", inputs=[
        {"name": "p", "source": "testsrc2", "size": "1280x720", "fps": 30, "duration_s": 2}],
        matrix={"encoders": [{"name": "libx264", "presets": ["medium"]}],
                "rate_control": [{"mode": "crf", "values": [20, 24, 28, 32, 36, 40]}]})


def _job_rows(results: Path, campaign: str) -> list[Path]:
    """The run's job files on disk, its control encode's (``job-control-*``, written first) left out."""
    return [path for path in results.glob(f"campaign={campaign}/run_id=*/job-*.parquet")
            if not path.name.startswith("job-control-")]


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_says_so_and_resumes_into_the_same_run(tmp_path: Path, home: dict[str, str],
                                                                 prefect_server: dict[str, str], signum: int):
    spec = _long_campaign(tmp_path)
    results = Path(home["FFWATT_RESULTS_DIR"])
    env = {**os.environ, **prefect_server, **home, "COLUMNS": "200"}
    run = subprocess.Popen([FFWATT, "campaign", "run", str(spec)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not _job_rows(results, "long"):
        assert time.monotonic() < deadline and run.poll() is None, run.communicate()
        time.sleep(0.2)
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    (info,) = list_runs(results, "long")
    assert info.state == "interrupted" and info.summary is not None and info.summary.missing > 0
    assert f"--resume {info.run_id}" in stderr.splitlines()[-1]
    shown = cli("results", "show", "--campaign", "long", env={**prefect_server, **home})
    assert f"(interrupted: {info.summary.ok + info.summary.failed} of 6 jobs have rows" in shown.stdout
    assert "interrupted" in cli("results", "runs", env=home).stdout
    # Leftovers of the interrupted encode are gone.
    assert not list((Path(home["FFWATT_HOME"]) / "tmp").glob("*"))

    resumed = cli_process("campaign", "run", str(spec), "--resume", info.run_id, env={**prefect_server, **home})
    assert resumed.returncode == 0, resumed.stderr
    summary = read_run_summary(results, "long", info.run_id)
    assert summary is not None and (summary.state, summary.ok, summary.jobs) == ("complete", 6, 6)
    rows = read_results(results, campaign="long")
    assert len(rows) == 6 and rows.job_id.is_unique and rows.run_id.nunique() == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_that_lands_in_a_finalizer_still_interrupts_the_run():
    """CI's SIGTERM landed in logging's _releaseLock, where Python drops what a handler raises: the
    campaign ran on to the end and exited 0."""
    from flows.campaign import _interrupts

    class Finalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)  # the handler runs here, and what it raises is dropped

    before = signal.getsignal(signal.SIGTERM)
    with _interrupts() as interrupted:
        Finalized()
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            interrupted.check()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_run_cut_short_is_counted_from_the_rows_on_disk(tmp_path: Path, home: dict[str, str]):
    """A run whose summary was last written when it started said "crashed, ok 0, missing 6" with a row on disk."""
    from datetime import UTC, datetime

    from ffwatt.results import RunSummary, write_job_row, write_run_summary
    from ffwatt.schema import JobRow

    results = Path(home["FFWATT_RESULTS_DIR"])
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid whose process has exited: the run's process died
    write_run_summary(results, RunSummary(campaign="full", run_id="r1", state="running", host=socket.gethostname(),
                                          pid=gone.pid, started_at=datetime.now(UTC), jobs=6))
    write_job_row(results, JobRow(campaign="full", run_id="r1", job_id="j1", config_id="c1", repetition=1, node="n",
                                  input_name="p", encoder="libx264", rate_control="crf", crf=30, status="ok",
                                  attempts=1))
    done = cli("results", "runs", "-o", "json", env=home)
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)
    assert (run["state"], run["jobs"], run["ok"], run["failed"], run["missing"]) == ("crashed", 6, 1, 0, 5)
    shown = cli("results", "show", env=home)
    assert "(crashed: 1 of 6 jobs have rows; `ffwatt campaign run FILE --resume r1` runs the rest)" in shown.stdout


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_disk_that_fills_after_the_first_row_fails_those_jobs_and_the_run_resumes(
        tmp_path: Path, home: dict[str, str], prefect_server: dict[str, str]):
    """Disk full after the first row aborted the flow with a Prefect traceback and "unexpected OSError" (5 jobs
    never ran), and `results runs` said "crashed, ok 0, missing 6" with one row on disk."""
    import threading

    full = tmp_path / "results"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "ffwatt-test", str(full)], check=True)
    try:
        spec = campaign_file(tmp_path, name="full", matrix={
            "encoders": [{"name": "libx264", "presets": ["ultrafast"]}],
            "rate_control": [{"mode": "crf", "values": [20, 24, 28, 32, 36, 40]}]})

        def fill_once_the_first_row_lands() -> None:
            deadline = time.monotonic() + 300
            while not _job_rows(full, "full") and time.monotonic() < deadline:
                time.sleep(0.01)
            with (full / "filler").open("wb") as filler, contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()

        filling = threading.Thread(target=fill_once_the_first_row_lands, daemon=True)
        filling.start()
        env = {**prefect_server, **home, "FFWATT_RESULTS_DIR": str(full)}
        done = cli_process("campaign", "run", str(spec), env=env)
        filling.join(10)
        assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-3000:]
        assert "Traceback" not in done.stderr and "unexpected" not in done.stderr
        (info,) = list_runs(full, "full")
        first = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert first == [f"error: 5 of 6 jobs failed (5 of them have no row, as it couldn't be written: free space, "
                         f"then `ffwatt campaign run {spec} --resume {info.run_id}` runs them again):"], done.stderr
        assert "5 x record: can't write the job's row in " in done.stderr and "No space left on device" in done.stderr
        assert "(complete: 1 of 6 jobs have rows" in done.stdout  # the table of what is on disk
        assert len(read_results(full, campaign="full")) == 1
        runs = json.loads(cli("results", "runs", "-o", "json", env=env).stdout)
        assert [(r["ok"], r["missing"]) for r in runs] == [(1, 5)], runs

        (full / "filler").unlink()
        resumed = cli_process("campaign", "run", str(spec), "--resume", info.run_id, env=env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        rows = read_results(full, campaign="full")
        assert len(rows) == 6 and (rows.status == "ok").all() and rows.run_id.nunique() == 1
        summary = read_run_summary(full, "full", info.run_id)
        assert summary is not None and (summary.state, summary.ok) == ("complete", 6)
    finally:
        subprocess.run(["umount", str(full)], check=True)


@pytest.mark.e2e
def test_a_killed_runs_leftovers_are_cleaned_by_the_next_run(tmp_path: Path, home: dict[str, str],
                                                            prefect_server: dict[str, str]):
    spec = _long_campaign(tmp_path)
    env = {**os.environ, **prefect_server, **home, "COLUMNS": "200"}
    run = subprocess.Popen([FFWATT, "campaign", "run", str(spec)], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    scratch = Path(home["FFWATT_HOME"]) / "tmp"
    deadline = time.monotonic() + 240
    while not list(scratch.glob("*/long/*/*.mkv")):
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGKILL)  # the whole run, FFmpeg included, mid-encode
    run.wait()
    (info,) = list_runs(Path(home["FFWATT_RESULTS_DIR"]), "long")
    assert info.state == "crashed"  # still marked running, its process gone
    assert list(scratch.glob("*"))  # what it left
    short = campaign_file(tmp_path, name="next")
    assert cli_process("campaign", "run", str(short), env={**prefect_server, **home}).returncode == 0
    assert not list(scratch.glob("*"))


@pytest.mark.e2e
def test_report_on_an_all_failed_run_and_on_an_unknown_run(tmp_path: Path, home: dict[str, str],
                                                          prefect_server: dict[str, str]):
    spec = campaign_file(tmp_path, matrix={"encoders": [{"name": "libx264", "extra_args": ["-profile:v", "nope"]}],
                                           "rate_control": [{"mode": "crf", "values": [30]}]})
    done = cli_process("campaign", "run", str(spec), env={**prefect_server, **home})
    assert done.returncode == 1 and "1 of 1 jobs failed" in done.stderr
    report = cli("report", "latest", env=home)
    assert report.returncode == 0, report.stderr
    text = Path(report.stdout.strip()).read_text()
    assert "This run has no energy figures" in text and "were measured (none estimated)" not in text
    unknown = one_line_error(cli("report", "no-such-run", env=home))
    assert "`ffwatt results runs` lists the runs there" in unknown


@pytest.mark.e2e
def test_the_runs_list_reads_like_a_table(tmp_path: Path, home: dict[str, str], prefect_server: dict[str, str]):
    assert cli_process("campaign", "run", str(campaign_file(tmp_path)), env={**prefect_server, **home}).returncode == 0
    listed = json.loads(cli("results", "runs", "--output", "json", env=home).stdout)
    assert [(r["campaign"], r["state"], r["jobs"], r["ok"], r["failed"], r["missing"]) for r in listed] == [
        ("faults", "complete", 1, 1, 0, 0)]
