"""FFmpeg's ``-progress`` output: blocks of ``key=value`` lines ending in ``progress=``.

Parsed into :class:`Progress` snapshots; the transcode task logs them, and the
FFmpeg exporter publishes them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel

__all__ = [
    "Progress",
    "ProgressParser",
    "ProgressRecord",
    "parse_progress",
    "prune_progress_records",
    "read_progress_records",
    "write_progress_record",
]


class Progress(BaseModel):
    """One progress block. Fields FFmpeg reported as ``N/A`` are ``None``."""

    frame: int = 0
    fps: float | None = None
    bitrate_kbps: float | None = None
    total_size_bytes: int | None = None
    out_time_s: float | None = None
    dup_frames: int = 0
    drop_frames: int = 0
    speed: float | None = None
    done: bool = False


def _number(text: str, suffix: str = "") -> float | None:
    text = text.strip()
    if suffix and text.endswith(suffix):
        text = text[: -len(suffix)]
    try:
        return float(text)
    except ValueError:
        return None  # "N/A", or a value FFmpeg hasn't computed yet


class ProgressParser:
    """Feed lines one at a time; :meth:`feed` returns a snapshot at the end of each block."""

    def __init__(self) -> None:
        self._fields: dict[str, str] = {}

    def feed(self, line: str) -> Progress | None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        if key != "progress":
            self._fields[key] = value
            return None
        fields, self._fields = self._fields, {}
        out_time_us = _number(fields.get("out_time_us", ""))
        return Progress(
            frame=int(_number(fields.get("frame", "")) or 0),
            fps=_number(fields.get("fps", "")),
            bitrate_kbps=_number(fields.get("bitrate", ""), "kbits/s"),
            total_size_bytes=int(size) if (size := _number(fields.get("total_size", ""))) is not None else None,
            out_time_s=out_time_us / 1e6 if out_time_us is not None and out_time_us >= 0 else None,
            dup_frames=int(_number(fields.get("dup_frames", "")) or 0),
            drop_frames=int(_number(fields.get("drop_frames", "")) or 0),
            speed=_number(fields.get("speed", ""), "x"),
            done=value.strip() == "end",
        )


def parse_progress(lines: Iterable[str]) -> Iterator[Progress]:
    """Every snapshot in ``lines``."""
    parser = ProgressParser()
    for line in lines:
        snapshot = parser.feed(line)
        if snapshot is not None:
            yield snapshot


class ProgressRecord(BaseModel):
    """A running (or just finished) job's latest progress, as the FFmpeg exporter reads it.

    The transcode task writes one JSON file per job in the node's progress spool
    (``FFWATT_HOME/progress``), a live job one per stream (``stream`` names it); the exporter
    serves every file there.
    """

    job_id: str
    stream: str = ""  # a live job's stream ("1", "2", ...); "" for a job that is one encode
    campaign: str
    encoder: str
    preset: str
    node: str
    progress: Progress
    updated_at: float  # unix time
    done: bool = False
    # The encode while it runs, for its resource figures: FFmpeg's pid and start time (psutil's create_time: a
    # pid reused since is not it), and the job's cgroup v2 directory when it has one to itself.
    pid: int | None = None
    pid_started_at: float | None = None
    cgroup: str | None = None

    @property
    def key(self) -> str:
        """The record's name in the spool: one per job, or per stream of a live job."""
        return f"{self.job_id}-{self.stream}" if self.stream else self.job_id


def write_progress_record(spool: Path, record: ProgressRecord) -> None:
    """Replace the job's (or stream's) record atomically (rename), so readers never see half a file."""
    spool.mkdir(parents=True, exist_ok=True)
    target = spool / f"{record.key}.json"
    tmp = spool / f".{record.key}.json.tmp"
    tmp.write_text(record.model_dump_json())
    os.replace(tmp, target)


def prune_progress_records(spool: Path, *, older_than_s: float = 60.0) -> None:
    """Remove finished jobs' records older than ``older_than_s``: the FFmpeg exporter has shown them
    (it keeps a finished job for seconds), and without an exporter running nobody removes them."""
    cutoff = time.time() - older_than_s
    for path, record in read_progress_records(spool):
        if record.done and record.updated_at < cutoff:
            path.unlink(missing_ok=True)


def read_progress_records(
    spool: Path, cache: dict[Path, tuple[int, ProgressRecord]] | None = None
) -> list[tuple[Path, ProgressRecord]]:
    """Every record in the spool; a file that vanished or is unreadable is skipped.

    With ``cache`` (path -> (mtime_ns, record)), files unchanged since the last call
    aren't parsed again: a scrape then costs a directory listing and a stat per job.
    """
    records = []
    seen = set()
    for path in sorted(spool.glob("*.json")):
        try:
            mtime = path.stat().st_mtime_ns
            cached = cache.get(path) if cache is not None else None
            if cached is not None and cached[0] == mtime:
                record = cached[1]
            else:
                record = ProgressRecord.model_validate_json(path.read_text())
                if cache is not None:
                    cache[path] = (mtime, record)
        except (OSError, ValueError):
            continue
        seen.add(path)
        records.append((path, record))
    if cache is not None:
        for gone in set(cache) - seen:
            del cache[gone]
    return records
