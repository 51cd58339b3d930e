"""FFmpeg progress of the jobs running on this node.

Fed by the transcode task, which writes each job's latest ``-progress`` block to
the node's progress spool, and by live jobs, which write one per stream (the
``stream`` label: "" for a job that is one encode, "1", "2", ... for a live job's
transcoders). A finished job's series stay for ``retention_s`` (long
enough for at least two scrapes at the 1 s interval), then its file is removed,
so the label set doesn't grow forever. While a job runs, its CPU time and working set are served
under cAdvisor's names (``container_cpu_usage_seconds_total``, ``container_memory_working_set_bytes``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters._collector import NAMESPACE
from exporters.cgroup import cgroup_usage, cgroup_working_set
from ffwatt.hardware.progress import Progress, ProgressRecord, read_progress_records
from ffwatt.processes import Identity, identity

__all__ = ["FFmpegCollector"]

_LABELS = ["job_id", "stream", "campaign", "encoder", "preset", "node"]


def _bits_per_second(p: Progress) -> float | None:
    return None if p.bitrate_kbps is None else p.bitrate_kbps * 1000


# (metric suffix, help, counter?, value)
_SERIES = (
    ("frames", "Frames encoded so far.", True, lambda p: float(p.frame)),
    ("fps", "Encoding rate reported by FFmpeg (frames/s).", False, lambda p: p.fps),
    ("speed_ratio", "FFmpeg speed: media time per wall time.", False, lambda p: p.speed),
    ("bitrate_bits_per_second", "Output bitrate so far.", False, _bits_per_second),
    ("output_bytes", "Output written so far.", False,
     lambda p: None if p.total_size_bytes is None else float(p.total_size_bytes)),
    ("dropped_frames", "Frames dropped.", True, lambda p: float(p.drop_frames)),
    ("duplicated_frames", "Frames duplicated.", True, lambda p: float(p.dup_frames)),
)


class FFmpegCollector:
    name = "ffmpeg"

    def __init__(self, spool: Path, *, retention_s: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self.spool = spool
        self.retention_s = retention_s
        self._clock = clock
        self._parsed: dict[Path, tuple[int, ProgressRecord]] = {}

    def start(self) -> FFmpegCollector:
        return self

    def stop(self) -> None:
        pass

    def collect(self) -> Iterable[Metric]:
        now = self._clock()
        records = []
        for path, record in read_progress_records(self.spool, self._parsed):
            if record.done and now - record.updated_at > self.retention_s:
                path.unlink(missing_ok=True)
                continue
            records.append(record)
        running = GaugeMetricFamily(f"{NAMESPACE}_ffmpeg_running", "1 while the job's FFmpeg runs, 0 once done.",
                                    labels=_LABELS)
        families = [
            (CounterMetricFamily if counter else GaugeMetricFamily)(
                f"{NAMESPACE}_ffmpeg_{suffix}", help_text, labels=_LABELS)
            for suffix, help_text, counter, _ in _SERIES
        ]
        for record in records:
            labels = [record.job_id, record.stream, record.campaign, record.encoder, record.preset, record.node]
            running.add_metric(labels, 0.0 if record.done else 1.0)
            for family, (_, _, _, value_of) in zip(families, _SERIES):
                value = value_of(record.progress)
                if value is not None:
                    family.add_metric(labels, value)
        yield running
        yield from families
        yield from _resource_families(records)


def _process_tree(record: ProgressRecord) -> list[psutil.Process] | None:
    """The record's FFmpeg and its descendants, while that FFmpeg (pid and start time) still runs."""
    if record.done or record.pid is None or record.pid_started_at is None:
        return None
    if not Identity(record.pid, record.pid_started_at, []).same_process(identity(record.pid)):
        return None  # gone, or its pid taken by another process since
    with contextlib.suppress(psutil.Error):
        process = psutil.Process(record.pid)
        return [process, *process.children(recursive=True)]
    return None


def _tree_usage(tree: list[psutil.Process]) -> tuple[float, float]:
    cpu_s = rss = 0.0
    for process in tree:
        with contextlib.suppress(psutil.Error), process.oneshot():
            times = process.cpu_times()
            cpu_s += times.user + times.system
            rss += process.memory_info().rss
    return cpu_s, rss


def _resource_families(records: list[ProgressRecord]) -> Iterable[Metric]:
    """A running job's CPU time and working set under cAdvisor's names, so container dashboards and
    rules read jobs too: its cgroup's figures where it has one to itself, else its FFmpeg process
    tree's (CPU time of live processes, resident memory). ``job_id`` names the job: a ``job`` label
    would be taken for the scrape job's."""
    cpu = CounterMetricFamily("container_cpu_usage_seconds_total",
                              "CPU time of a running job: its cgroup's, or its FFmpeg process tree's.",
                              labels=_LABELS)
    memory = GaugeMetricFamily("container_memory_working_set_bytes",
                               "Working set of a running job: its cgroup's memory less inactive file pages, "
                               "or its FFmpeg process tree's resident memory.", labels=_LABELS)
    for record in records:
        tree = _process_tree(record)
        if tree is None:
            continue
        cpu_s, rss = _tree_usage(tree)
        if record.cgroup is not None:
            cgroup_cpu_s, _ = cgroup_usage(Path(record.cgroup))
            cpu_s = cgroup_cpu_s if cgroup_cpu_s is not None else cpu_s
            working_set = cgroup_working_set(Path(record.cgroup))
            rss = float(working_set) if working_set is not None else rss
        labels = [record.job_id, record.stream, record.campaign, record.encoder, record.preset, record.node]
        cpu.add_metric(labels, cpu_s)
        memory.add_metric(labels, rss)
    yield cpu
    yield memory
