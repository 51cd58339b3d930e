"""A job's resource figures: peak memory (wait4), CPU time and storage I/O from the job's own cgroup v2
where one can be made, rusage where not (labelled), and a running job's CPU time and working set on the
FFmpeg exporter under cAdvisor's names. Real FFmpeg; the cgroup figures are checked against the
kernel's other account of the same process (its rusage) and psutil's reading of it."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from exporters.cgroup import JobCgroup, own_cgroup_dir
from exporters.ffmpeg import FFmpegCollector
from ffwatt.hardware.ffmpeg import _dies_with_this_thread
from ffwatt.hardware.progress import Progress, ProgressRecord, write_progress_record
from ffwatt.jobs import expand
from ffwatt.settings import load_settings
from ffwatt.validation import parse_campaign
from tasks.generate import prepare_reference
from tasks.transcode import encode

CAMPAIGN = {
    "name": "resources",
    "inputs": [{"name": "clip", "source": "testsrc2", "size": "640x360", "fps": 25, "duration_s": 2}],
    "matrix": {"encoders": [{"name": "libx264", "presets": ["fast"]}],
               "rate_control": [{"mode": "crf", "values": [23]}]},
}


def _cgroup_writable() -> bool:
    root = own_cgroup_dir()
    if root is None:
        return False
    probe = JobCgroup(None, "probe").create()
    probe.remove()
    return probe.path is not None


def _encode(ffwatt_env: Path):
    settings = load_settings()
    (job,) = expand(parse_campaign(CAMPAIGN))
    reference = prepare_reference(job.input, "ffv1", settings)
    return encode(job, reference, "run-1", attempt=1, settings=settings)


def test_every_encode_has_its_peak_memory_cpu_time_and_io_and_says_where_from(ffwatt_env: Path):
    result = _encode(ffwatt_env)
    rusage_cpu_s = (result.cpu_user_s or 0) + (result.cpu_sys_s or 0)
    assert result.max_rss_bytes is not None and result.max_rss_bytes > 1 << 20  # FFmpeg with x264: MiBs at least
    assert result.cgroup_cpu_s is not None and result.cgroup_io_bytes is not None and result.cgroup_io_bytes >= 0
    if _cgroup_writable():
        assert result.resource_source in ("cgroup", "cgroup+rusage")
        # The cgroup's count and FFmpeg's own rusage are two accounts of the same CPU time.
        assert result.cgroup_cpu_s == pytest.approx(rusage_cpu_s, rel=0.1, abs=0.05)
    else:
        assert result.resource_source == "rusage" and result.cgroup_cpu_s == rusage_cpu_s
    mine = f"ffwatt-job-*-{os.getpid()}-*"  # this process's: other runs on the machine make their own
    assert list((own_cgroup_dir() or Path("/nonexistent")).glob(mine)) == []  # each job's is removed with it
    print(f"\nmax_rss {result.max_rss_bytes} B, cpu {result.cgroup_cpu_s:.3f} s ({result.resource_source}; rusage "
          f"{rusage_cpu_s:.3f} s), io {result.cgroup_io_bytes} B")


def test_without_a_cgroup_the_figures_are_rusage_labelled_and_said_once(
        ffwatt_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    monkeypatch.setenv("FFWATT_CGROUP_ROOT", str(ffwatt_env / "no-such-cgroup"))
    with caplog.at_level(logging.WARNING, logger="ffwatt.cgroup"):
        first, second = _encode(ffwatt_env), _encode(ffwatt_env)
    for result in (first, second):
        assert result.resource_source == "rusage"
        assert result.cgroup_cpu_s == (result.cpu_user_s or 0) + (result.cpu_sys_s or 0)
        assert result.max_rss_bytes is not None and result.max_rss_bytes > 0
    said = [r.getMessage() for r in caplog.records if "no-such-cgroup" in r.getMessage()]
    assert len(said) == 1 and "rusage" in said[0]


def _running_ffmpeg(ffmpeg: str, cgroup: Path | None = None) -> subprocess.Popen[bytes]:
    # Real time (-re): it runs for the test's scrapes, using some CPU and a few MiB.
    return subprocess.Popen([ffmpeg, "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25",
                             "-t", "20", "-c:v", "libx264", "-f", "null", "-"],
                            preexec_fn=_dies_with_this_thread(cgroup))  # noqa: PLW1509


def _record(process: subprocess.Popen[bytes], cgroup: Path | None, **changes) -> ProgressRecord:
    return ProgressRecord(job_id="j1", campaign="c", encoder="libx264", preset="", node="n", progress=Progress(frame=1),
                          updated_at=time.time(), pid=process.pid,
                          pid_started_at=psutil.Process(process.pid).create_time(),
                          cgroup=None if cgroup is None else str(cgroup)).model_copy(update=changes)


@pytest.mark.parametrize("in_cgroup", [False, True])
def test_the_ffmpeg_exporter_serves_a_running_job_s_cpu_and_working_set(tmp_path: Path, ffmpeg: str, in_cgroup: bool):
    cgroup = JobCgroup(None, "exporter-test").create() if in_cgroup else None
    if in_cgroup and (cgroup is None or cgroup.path is None):
        pytest.skip("no writable cgroup v2 here")
    path = cgroup.path if cgroup is not None else None
    process = _running_ffmpeg(ffmpeg, path)
    try:
        time.sleep(1.5)
        write_progress_record(tmp_path, _record(process, path))
        families = {f.name: f for f in FFmpegCollector(tmp_path).collect()}
        (cpu,) = families["container_cpu_usage_seconds"].samples
        (memory,) = families["container_memory_working_set_bytes"].samples
        expected = psutil.Process(process.pid)
        with expected.oneshot():
            times, rss = expected.cpu_times(), expected.memory_info().rss
        assert cpu.labels["job_id"] == "j1" and cpu.name == "container_cpu_usage_seconds_total"
        assert 0 < cpu.value <= times.user + times.system + 0.05
        assert cpu.value == pytest.approx(times.user + times.system, rel=0.2, abs=0.1)
        assert memory.value > 1 << 20 and (in_cgroup or memory.value == pytest.approx(rss, rel=0.2))
        # A record whose process is not the one running under that pid (a reused pid) is not served.
        write_progress_record(tmp_path, _record(process, path, pid_started_at=1.0))
        families = {f.name: f for f in FFmpegCollector(tmp_path).collect()}
        assert families["container_cpu_usage_seconds"].samples == []
    finally:
        process.kill()
        process.wait()
        if cgroup is not None:
            cgroup.remove()
