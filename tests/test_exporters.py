"""Each exporter served over real HTTP, fed through its seam: a synthetic powercap
tree advanced by a thread, NVML readings recorded on an H200, a progress spool."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporters._collector import CollectorSet, Sampler
from exporters.ffmpeg import FFmpegCollector
from exporters.gpu import GpuCollector
from exporters.rapl import RaplCollector
from exporters.server import ExporterOptions, serve
from ffwatt.errors import StaleSample
from ffwatt.hardware.nvml import ReplayNvml
from ffwatt.hardware.progress import Progress, ProgressRecord, write_progress_record
from ffwatt.settings import Settings
from testbed.powercap import intel_two_sockets, make_zone, set_energy
from testbed.redfish import bmc
from tests.conftest import free_port, wait_http
from tests.procfs import make_procfs, set_busy

DATA = Path(__file__).parent / "data"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


class Served:
    def __init__(self, kind: str, settings: Settings, options: ExporterOptions) -> None:
        self.port = free_port()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=serve, args=(kind, f"127.0.0.1:{self.port}", settings, options,
                                                            self.stop), daemon=True)
        self.thread.start()
        wait_http(self.url, 15)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def scrape(self) -> dict[str, list]:
        text = httpx.get(self.url, timeout=5).text
        samples: dict[str, list] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append(sample)
        return samples

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def serve_exporter() -> Iterator:
    started: list[Served] = []

    def start(kind: str, settings: Settings, **options) -> Served:
        served = Served(kind, settings, ExporterOptions(**options))
        started.append(served)
        return served

    yield start
    for served in started:
        served.close()


def value(samples: dict, metric: str, /, **labels) -> float:
    matches = [s.value for s in samples.get(metric, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (metric, labels, samples.get(metric))
    return matches[0]


def test_cpu_counters_match_injected_energy_across_wraps(tmp_path: Path, serve_exporter):
    max_range = 2_000_000  # 2 J: wraps every few ticks at these rates
    zones = intel_two_sockets(tmp_path, max_range_uj=max_range)
    amd = make_zone(tmp_path, "intel-rapl:3", "package-3", max_range_uj=max_range)  # a third socket
    rates = {"package-0": 900_000, "package-1": 450_000, "package-0/dram": 100_000, "psys": 1_500_000,
             "package-3": 300_000}
    paths = {**{k: zones[k] for k in rates if k in zones}, "package-3": amd}
    injected = dict.fromkeys(rates, 0)
    stop, go = threading.Event(), threading.Event()

    def advance() -> None:  # the "hardware": counters moving at known rates, wrapping
        raw = dict.fromkeys(rates, 0)
        while not stop.is_set():
            for key, rate in rates.items():
                step = rate if go.is_set() else 1  # never still, like a real counter at idle
                raw[key] = (raw[key] + step) % (max_range + 1)
                injected[key] += step if go.is_set() else 0
                set_energy(paths[key], raw[key])
                if key == "package-0":
                    set_energy(zones["mmio-package-0"], raw[key])  # same package through MMIO
            time.sleep(0.02)

    ticker = threading.Thread(target=advance, daemon=True)
    ticker.start()
    # An idle synthetic procfs: this test is about wraps, not about judging still counters, and the
    # ticker thread can stall longer than real hardware ever does on a loaded machine.
    idle_proc = make_procfs(tmp_path / "proc")
    exporter = serve_exporter("cpu", Settings(powercap_root=tmp_path, proc_root=idle_proc), interval_s=0.01)
    go.set()
    time.sleep(1.5)
    stop.set()
    ticker.join()
    time.sleep(0.1)  # a last sample after the final write
    samples = exporter.scrape()
    assert value(samples, "ffwatt_rapl_readable") == 1
    assert injected["package-0"] > 10 * max_range  # many wraps happened
    for key, truth in injected.items():
        exported = value(samples, "ffwatt_rapl_energy_joules_total", zone=key)
        assert exported == pytest.approx(truth / 1e6, rel=0.005), key
    packages = [s for s in samples["ffwatt_rapl_energy_joules_total"] if s.labels["kind"] == "package"]
    assert sorted(s.labels["zone"] for s in packages) == ["package-0", "package-1", "package-3"]
    assert value(samples, "ffwatt_scrape_collector_success", collector="rapl") == 1


def test_cpu_unreadable_counters_give_reason_and_labelled_estimate(tmp_path: Path, serve_exporter):
    zones = intel_two_sockets(tmp_path)
    (zones["package-0"] / "energy_uj").unlink()
    (zones["package-0"] / "energy_uj").mkdir()
    exporter = serve_exporter("cpu", Settings(powercap_root=tmp_path, cpu_tdp_w=100), interval_s=0.05)
    time.sleep(0.3)
    samples = exporter.scrape()
    assert value(samples, "ffwatt_rapl_readable") == 0
    (reason,) = samples["ffwatt_rapl_unreadable_info"]
    assert "energy_uj" in reason.labels["reason"]
    assert value(samples, "ffwatt_cpu_estimated_energy_joules_total") > 0
    assert "FFWATT_CPU_TDP_W=100" in samples["ffwatt_cpu_power_model_info"][0].labels["basis"]
    assert "ffwatt_rapl_energy_joules_total" not in samples  # never mixed with measurements


def test_gpu_exporter_from_recorded_h200_readings(serve_exporter):
    exporter = serve_exporter("gpu", Settings(gpu=True), interval_s=0.05, replay=DATA / "nvml-h200-probe.json")
    first = exporter.scrape()
    time.sleep(0.6)
    second = exporter.scrape()
    labels = {"index": "0", "name": "NVIDIA H200", "uuid": "GPU-833a7a49-678a-9203-0dc1-b5b47a7c76c0"}
    assert value(second, "ffwatt_gpu_count") == 1
    assert value(second, "ffwatt_gpu_power_limit_watts", **labels) == 700
    assert value(second, "ffwatt_gpu_memory_total_bytes", **labels) == 150754820096
    assert value(second, "ffwatt_gpu_encoder_utilization_ratio", **labels) == 0
    assert 70 < value(second, "ffwatt_gpu_power_watts", **labels) < 710
    energy_1 = value(first, "ffwatt_gpu_energy_joules_total", **labels)
    energy_2 = value(second, "ffwatt_gpu_energy_joules_total", **labels)
    assert energy_1 >= 2161.852 and energy_2 > energy_1  # the recorded counter advanced
    assert value(second, "ffwatt_gpu_nvml_info", driver_version="580.159.04", reason="") == 1


def _collect(collectors: list) -> dict[str, list]:
    samples: dict[str, list] = {}
    for family in CollectorSet(collectors).collect():
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def test_gpu_exporter_without_a_driver_reports_zero_and_why():
    probe = json.loads((DATA / "nvml-h200-probe.json").read_text())
    no_driver = GpuCollector(nvml=ReplayNvml(probe, time.monotonic, driver_loaded=False)).start()
    samples = _collect([no_driver])
    assert value(samples, "ffwatt_gpu_count") == 0
    (info,) = samples["ffwatt_gpu_nvml_info"]
    assert "NVML unavailable" in info.labels["reason"] and "Driver Not Loaded" in info.labels["reason"]
    assert value(samples, "ffwatt_scrape_collector_success", collector="gpu") == 1
    turned_off = _collect([GpuCollector(enabled=False).start()])
    assert turned_off["ffwatt_gpu_nvml_info"][0].labels["reason"] == "GPU metering off (FFWATT_GPU=false)"


def test_cpu_counters_that_stand_still_while_the_cpu_works_give_the_estimate(tmp_path: Path, serve_exporter):
    intel_two_sockets(tmp_path / "powercap")  # counters at 0, never moving
    proc = make_procfs(tmp_path / "proc")
    exporter = serve_exporter("cpu", Settings(powercap_root=tmp_path / "powercap", proc_root=proc),
                              interval_s=0.05)
    assert value(exporter.scrape(), "ffwatt_rapl_readable") == 1
    set_busy(proc, busy_s=5.0, idle_s=1000.0)  # the machine works; the counters don't move
    time.sleep(0.8)
    samples = exporter.scrape()
    assert value(samples, "ffwatt_rapl_readable") == 0
    assert "did not advance" in samples["ffwatt_rapl_unreadable_info"][0].labels["reason"]
    assert "ffwatt_rapl_energy_joules_total" not in samples
    assert value(samples, "ffwatt_cpu_estimated_energy_joules_total") > 0


def test_a_sampler_that_stopped_fails_its_collector_instead_of_serving_old_values(tmp_path: Path):
    clock = [0.0]
    collector = RaplCollector(Settings(powercap_root=tmp_path), interval_s=1.0)
    collector.sampler = Sampler("rapl", 1.0, collector.sample, clock=lambda: clock[0])
    collector.sampler._sample_once()  # a good reading, but no thread keeps sampling
    clock[0] = 60.0
    samples = _collect([collector])
    assert value(samples, "ffwatt_scrape_collector_success", collector="rapl") == 0
    assert "ffwatt_rapl_readable" not in samples  # nothing stale served
    assert value(samples, "ffwatt_sampler_last_success_age_seconds", sampler="rapl") == 60.0
    assert value(samples, "ffwatt_sampler_errors_total", sampler="rapl") == 0


def test_sampler_errors_are_counted():
    def broken() -> None:
        raise OSError("sensor fell off")

    sampler = Sampler("broken", 0.02, broken).start()
    time.sleep(0.2)
    sampler.stop()
    assert sampler.errors >= 3 and sampler.age_s() is None
    with pytest.raises(StaleSample, match="never sampled"):
        sampler.check()


def test_ffmpeg_exporter_serves_jobs_and_forgets_finished_ones(tmp_path: Path, serve_exporter):
    settings = Settings(home=tmp_path)
    record = ProgressRecord(job_id="j1", campaign="c", encoder="libx264", preset="fast", node="n",
                            progress=Progress(frame=40, fps=20.0, bitrate_kbps=900.0, total_size_bytes=5000,
                                              speed=0.8, drop_frames=1),
                            updated_at=time.time())
    write_progress_record(settings.progress_dir, record)
    exporter = serve_exporter("ffmpeg", settings, retention_s=1.0)
    labels = {"job_id": "j1", "stream": "", "campaign": "c", "encoder": "libx264", "preset": "fast", "node": "n"}
    samples = exporter.scrape()
    assert value(samples, "ffwatt_ffmpeg_frames_total", **labels) == 40
    assert value(samples, "ffwatt_ffmpeg_bitrate_bits_per_second", **labels) == 900_000
    assert value(samples, "ffwatt_ffmpeg_running", **labels) == 1
    write_progress_record(settings.progress_dir, record.model_copy(update={"done": True,
                                                                          "updated_at": time.time()}))
    assert value(exporter.scrape(), "ffwatt_ffmpeg_running", **labels) == 0  # scraped twice after done
    assert value(exporter.scrape(), "ffwatt_ffmpeg_running", **labels) == 0
    time.sleep(1.2)
    assert "ffwatt_ffmpeg_running" not in exporter.scrape()
    assert not list(settings.progress_dir.glob("*.json"))


def test_a_failing_collector_does_not_blank_the_others():
    class Broken:
        name = "broken"

        def collect(self):
            raise OSError("sensor fell off")

    good = FFmpegCollector(Path("/nonexistent"))
    families = {f.name: f for f in CollectorSet([Broken(), good]).collect()}
    success = {s.labels["collector"]: s.value for s in families["ffwatt_scrape_collector_success"].samples}
    assert success == {"broken": 0.0, "ffmpeg": 1.0} and "ffwatt_ffmpeg_running" in families


def test_docs_list_exactly_what_the_exporters_emit(tmp_path: Path, serve_exporter, request: pytest.FixtureRequest):
    """docs/metrics.md names every metric each exporter emits, and nothing else."""
    emitted: set[str] = set()
    zones = intel_two_sockets(tmp_path / "rapl")
    set_energy(zones["package-0"], 1)
    broken = tmp_path / "broken"
    (intel_two_sockets(broken)["package-0"] / "energy_uj").unlink()
    settings = Settings(home=tmp_path)
    running = subprocess.Popen(["sleep", "60"])  # the job's "FFmpeg": its CPU time and memory are served
    request.addfinalizer(lambda: (running.kill(), running.wait()))
    write_progress_record(settings.progress_dir, ProgressRecord(
        job_id="j", campaign="c", encoder="e", preset="p", node="n",
        progress=Progress(frame=1, fps=1, bitrate_kbps=1, total_size_bytes=1, speed=1), updated_at=time.time(),
        pid=running.pid, pid_started_at=psutil.Process(running.pid).create_time()))
    idle_proc = make_procfs(tmp_path / "proc")  # an idle machine: still counters are believable
    with bmc(123.0) as server:
        wall = {"redfish_url": server.url, "redfish_user": server.user, "redfish_password": server.password}
        for kind, kwargs in (("cpu", {"powercap_root": tmp_path / "rapl", "proc_root": idle_proc, **wall}),
                             ("cpu", {"powercap_root": tmp_path / "x"}),
                             ("ffmpeg", {"home": tmp_path})):
            exporter = serve_exporter(kind, Settings(**kwargs), interval_s=0.05)
            time.sleep(0.15)
            emitted |= {re.sub(r"_(total|created)$", "", name) if name.endswith("_created") else name
                        for name in exporter.scrape()}
    gpu = serve_exporter("gpu", Settings(gpu=True), interval_s=0.05, replay=DATA / "nvml-h200-probe.json")
    emitted |= set(gpu.scrape())
    emitted = {name for name in emitted if not name.endswith("_created")}
    rows = re.findall(r"^\| `((?:ffwatt|container)_[a-z_]+)` \| ([a-z, ]+) \|", DOCS.read_text(), re.MULTILINE)
    # The master's: tests/test_monitoring.py; the RTMP exporter's (it needs an ingest): tests/test_live.py.
    documented = {name for name, where in rows if where not in ("master", "rtmp")}
    assert emitted == documented
    for name in emitted:  # Prometheus conventions
        assert not re.search(r"_(kilo|milli|micro)", name)


def test_an_exporter_run_by_hand_listens_on_its_port_setting(tmp_path: Path):
    """`ffwatt exporter cpu` with no --listen serves on FFWATT_CPU_EXPORTER_PORT, as the agent's do."""
    import os
    import subprocess

    from tests.conftest import ffwatt_cli, stop_process_group

    port = free_port()
    exporter = subprocess.Popen([ffwatt_cli(), "exporter", "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "FFWATT_CPU_EXPORTER_PORT": str(port),
                                     "FFWATT_HOME": str(tmp_path / "home")}, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", 30, exporter)
        assert 'ffwatt_exporter_info{exporter="cpu"' in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        stop_process_group(exporter)


def test_the_cpu_exporter_serves_the_bmc_s_wall_power_and_fails_that_collector_alone_when_refused(
        tmp_path: Path, serve_exporter):
    with bmc(123.0) as server:
        good = serve_exporter("cpu", Settings(powercap_root=tmp_path / "x", redfish_url=server.url,
                                              redfish_user=server.user, redfish_password=server.password),
                              interval_s=0.05)
        assert value(good.scrape(), "ffwatt_wall_power_watts") == 123.0
        refused = serve_exporter("cpu", Settings(powercap_root=tmp_path / "x", redfish_url=server.url,
                                                 redfish_user=server.user, redfish_password="wrong"),
                                 interval_s=0.05)
        samples = refused.scrape()
    assert "ffwatt_wall_power_watts" not in samples
    assert value(samples, "ffwatt_scrape_collector_success", collector="redfish") == 0.0
    assert value(samples, "ffwatt_scrape_collector_success", collector="rapl") == 1.0
