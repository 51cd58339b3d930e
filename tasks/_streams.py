"""The FFmpeg commands of a live step, and the arithmetic that turns what its players saw into
speeds, bitrates and latencies (where the ingest is: :mod:`ffwatt.live`).

A live step runs, per stream, four kinds of FFmpeg against the RTMP ingest:

    publisher        the contribution clip, -re (real time), copied to   <key>
    transcoder       pulls <key>, split + one encode per rung, publishes  <key>-r0, <key>-r1, ...
    source player    pulls <key>                      } each prints one line per packet (framecrc:
    rendition player pulls <key>-rK, one per rung     } timestamp, size) as it arrives

Every player sits on the node that runs the step, so one clock times them all. The step's
runner (:mod:`tasks.live`) starts them; the functions here say what to run and what the
lines mean, and are tested without a network.
"""

from __future__ import annotations

import bisect
import contextlib
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ffwatt.campaign import Rung
from ffwatt.encoders import profile_for
from ffwatt.jobs import Job, LiveStep
from ffwatt.processes import group_members

__all__ = [
    "FrameLog",
    "StreamNames",
    "connected_to",
    "contribution_args",
    "first_frame_delay_s",
    "latencies_ms",
    "player_args",
    "publisher_args",
    "rung_bitrate_kbps",
    "steady_speed",
    "stream_names",
    "transcoder_args",
]

# Players and transcoders start reading at once: FFmpeg's default probing would hold back the first
# five seconds of a live source (and count them in its speed).
_LOW_PROBE = ("-probesize", "32", "-analyzeduration", "0")
# Seconds after a transcoder's first output before its speed counts: the publisher's first
# half-second arrives at once (-readrate_initial_burst), and the encoder fills its lookahead.
WARMUP_S = 1.0


@dataclass(frozen=True)
class StreamNames:
    """One stream's names on the ingest: the source, and a rendition per rung."""

    source: str
    renditions: tuple[str, ...]


def stream_names(job: Job, token: str) -> list[StreamNames]:
    """Names for each stream of a live step; ``token`` makes them this execution's own, so two runs
    (or a retry) never publish to the same name."""
    assert job.live is not None
    prefix = f"ffwatt-{job.job_id[:12]}-{token}"
    return [StreamNames(f"{prefix}-s{i}", tuple(f"{prefix}-s{i}-r{k}" for k in range(len(job.live.ladder))))
            for i in range(1, job.live.streams + 1)]


def contribution_args(reference: str, fps: float, output: Path) -> list[str]:
    """The clip a publisher pushes: what a camera or contribution encoder would send, H.264 in FLV at
    high quality with a one-second GOP (RTMP carries no FFV1). Made once per reference and cached."""
    gop = max(1, round(fps))
    return ["-i", reference, "-map", "0:v:0", "-c:v", "libx264", "-preset", "veryfast", "-crf", "16",
            "-g", str(gop), "-pix_fmt", "yuv420p", "-an", "-f", "flv", str(output)]


def publisher_args(contribution: str, url: str) -> list[str]:
    """Push the contribution to the ingest at its own frame rate (``-re``), without re-encoding."""
    return ["-re", "-i", contribution, "-map", "0:v:0", "-c", "copy", "-f", "flv", url]


def _timeout_us(seconds: float) -> str:
    return str(int(seconds * 1_000_000))


def transcoder_args(job: Job, step: LiveStep, source_size: tuple[int, int], fps: float, source_url: str,
                    rendition_urls: Sequence[str], *, timeout_s: float) -> list[str]:
    """Pull the source, decode it once, split it and encode every rung, publishing each to its name;
    ``timeout_s`` without a byte from the ingest ends it.

    Every rung gets the same keyframe times (``-force_key_frames`` every ``gop_s``), as an ABR
    player switching rungs needs, and constant bitrate through the encoder's CBR flags."""
    profile = profile_for(job.encoder)
    threads = ["-threads", str(job.threads)] if job.threads else []
    chains = []
    labels = [f"r{k}" for k in range(len(step.ladder))]
    for label, rung in zip(labels, step.ladder):
        width, height = (int(side) for side in rung.size.split("x"))
        filters = [] if (width, height) == source_size else [f"scale={width}:{height}:flags=bicubic"]
        if profile.upload_filter:
            filters.append(profile.upload_filter)
        chains.append(f"[s{label}]{','.join(filters) or 'null'}[{label}]")
    graph = f"[0:v]split={len(labels)}{''.join(f'[s{label}]' for label in labels)};" + ";".join(chains)
    gop = max(1, round(step.gop_s * fps))
    args = [*profile.input_args, *threads, "-rw_timeout", _timeout_us(timeout_s), *_LOW_PROBE,
            "-i", source_url, "-filter_complex", graph]
    for label, rung, url in zip(labels, step.ladder, rendition_urls, strict=True):
        args += ["-map", f"[{label}]", "-c:v", job.encoder, *profile.preset_args(job.preset),
                 *profile.rate_args("cbr", rung.bitrate_kbps), "-g", str(gop),
                 "-force_key_frames", f"expr:gte(t,n_forced*{step.gop_s:g})", *threads, *job.extra_args,
                 "-an", "-f", "flv", url]
    return args


def player_args(url: str, timeout_s: float, keep: Path | None = None) -> list[str]:
    """Pull ``url`` and print one framecrc line per video packet as it arrives (pts, size); with
    ``keep``, also store what was pulled as FLV there."""
    args = ["-rw_timeout", _timeout_us(timeout_s), *_LOW_PROBE, "-i", url,
            "-map", "0:v:0", "-c", "copy", "-flush_packets", "1", "-f", "framecrc", "pipe:1"]
    if keep is not None:
        args += ["-map", "0:v:0", "-c", "copy", "-f", "flv", str(keep)]
    return args


@dataclass
class FrameLog:
    """What a player saw: each video packet's presentation time (ms), size and arrival (monotonic s).

    Fed the player's stdout lines; framecrc's are ``stream, dts, pts, duration, size, crc[, flags]``
    in the stream's time base, which FLV fixes at 1/1000."""

    pts_ms: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    duration_ms: int | None = None

    def feed(self, line: str, arrived: float) -> None:
        if not line[:1].isdigit():
            return  # framecrc's #-headers, and the progress blocks sharing the pipe
        fields = [part.strip() for part in line.split(",")]
        if len(fields) < 6:
            return
        with contextlib.suppress(ValueError):
            pts, duration, size = int(fields[2]), int(fields[3]), int(fields[4])
            self.pts_ms.append(pts)
            self.sizes.append(size)
            self.arrivals.append(arrived)
            if duration > 0 and self.duration_ms is None:
                self.duration_ms = duration

    @property
    def frames(self) -> int:
        return len(self.pts_ms)

    @property
    def first_arrival(self) -> float | None:
        return min(self.arrivals) if self.arrivals else None


def rung_bitrate_kbps(log: FrameLog, fps: float) -> float | None:
    """Video payload over the rendition's duration (first to last frame, plus one frame)."""
    if log.frames < 2:
        return None
    span_s = (max(log.pts_ms) - min(log.pts_ms)) / 1000 + 1 / fps
    return sum(log.sizes) * 8 / span_s / 1000


def first_frame_delay_s(source: FrameLog, rendition: FrameLog) -> float | None:
    """From the first source frame at its player to the rendition's first frame at its player."""
    if source.first_arrival is None or rendition.first_arrival is None:
        return None
    return rendition.first_arrival - source.first_arrival


def latencies_ms(source: FrameLog, rendition: FrameLog, fps: float) -> list[float]:
    """For each rendition frame, when it arrived minus when the source frame with the same timestamp
    arrived, both counted from each stream's first frame (the transcoder and the muxers shift
    timestamps by constants: the first frame of each is the same picture). Frames with no source
    frame within half a frame's interval are left out."""
    if not source.frames or not rendition.frames:
        return []
    source_zero, rendition_zero = min(source.pts_ms), min(rendition.pts_ms)
    order = sorted(range(source.frames), key=lambda i: source.pts_ms[i])
    times = [source.pts_ms[i] - source_zero for i in order]
    half_frame_ms = 500 / fps
    found = []
    for pts, arrived in zip(rendition.pts_ms, rendition.arrivals):
        target = pts - rendition_zero
        at = bisect.bisect_left(times, target)
        nearest = min((i for i in (at - 1, at) if 0 <= i < len(times)), key=lambda i: abs(times[i] - target))
        if abs(times[nearest] - target) <= half_frame_ms:
            found.append((arrived - source.arrivals[order[nearest]]) * 1000)
    return found


def steady_speed(samples: Sequence[tuple[float, float]], *, until: float | None) -> float | None:
    """Media seconds per wall second of a transcoder while its source arrived in real time: the
    least-squares slope of (wall time, output media time) from :data:`WARMUP_S` after its first
    output to ``until`` (when the publisher finished). A transcoder that keeps up measures 1.0 (the
    source comes no faster), whatever its latency; one that falls behind, its own pace. None when
    the window holds fewer than three samples over a second."""
    started = next((t for t, media in samples if media > 0), None)
    if started is None:
        return None
    window = [(t, media) for t, media in samples
              if t >= started + WARMUP_S and (until is None or t <= until)]
    if len(window) < 3 or window[-1][0] - window[0][0] < 1.0:
        return None
    mean_t = statistics.fmean(t for t, _ in window)
    mean_m = statistics.fmean(m for _, m in window)
    spread = sum((t - mean_t) ** 2 for t, _ in window)
    return sum((t - mean_t) * (m - mean_m) for t, m in window) / spread


def connected_to(pid: int, port: int) -> bool:
    """Whether a process of ``pid``'s process group (an FFWATT_FFMPEG wrapper's FFmpeg too) has a TCP
    connection established to ``port`` (the ingest's): the first step of joining a stream, checked
    before the publishers start."""
    for member in group_members(pid):
        with contextlib.suppress(psutil.Error):
            if any(c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == port
                   for c in member.net_connections(kind="tcp")):
                return True
    return False


def ladder_labels(ladder: Sequence[Rung]) -> list[str]:
    return [rung.label for rung in ladder]
