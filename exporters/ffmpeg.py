"""FFmpeg progress of the jobs running on this node.

Fed by the transcode task, which writes each job's latest ``-progress`` block to
the node's progress spool, and by live jobs, which write one per stream (the
``stream`` label: "" for a job that is one encode, "1", "2", ... for a live job's
transcoders). A finished job's series stay for ``retention_s`` (long
enough for at least two scrapes at the 1 s interval), then its file is removed,
so the label set doesn't grow forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters._collector import NAMESPACE
from ffwatt.hardware.progress import Progress, ProgressRecord, read_progress_records

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
