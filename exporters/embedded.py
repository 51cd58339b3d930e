"""The node's exporters read in-process, once a second: a campaign's series without a store.

:class:`EmbeddedSeries` builds the same collectors ``ffwatt exporter cpu|gpu|ffmpeg``
serve (from :data:`exporters.server.EXPORTERS`: RAPL or the CPU estimate, NVML through
its seam, the FFmpeg progress spool), collects them every ``interval_s`` as a scrape
would, and keeps the samples of a job's series (:func:`ffwatt.series.is_job_series`)
in memory until its row takes them. Same names, same labels, same background
samplers as the exporters, so a job's series read the same as the store's.

Collecting costs about 0.3 ms of CPU a second (``bench/metrics_export.py``
measures it): that much is inside every job's measured window.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import numpy as np

from exporters._collector import CollectorSet
from exporters.server import EXPORTERS, ExporterOptions, build_collectors
from ffwatt.series import Series, is_job_series, labels_json
from ffwatt.settings import Settings

__all__ = ["EmbeddedSeries"]

log = logging.getLogger("ffwatt.exporters.embedded")


class _Buffer:
    """One series' samples, oldest first, in flat arrays (16 bytes a sample)."""

    __slots__ = ("stamps", "values")

    def __init__(self) -> None:
        self.stamps = array("q")
        self.values = array("d")


class EmbeddedSeries:
    """Every exporter of this node, collected in-process every ``interval_s``; a context manager."""

    def __init__(self, settings: Settings, *, options: ExporterOptions | None = None, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._options = options or ExporterOptions()
        self.interval_s = interval_s
        self._clock = clock
        self._collectors: list[Any] = []
        self._set = CollectorSet([])
        self._buffers: dict[tuple[str, str], _Buffer] = {}
        self._job_ids: dict[tuple[str, str], str | None] = {}
        self._lock = threading.Condition()
        self._collecting = threading.Lock()  # the thread's collections and collect_after's, one at a time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedded-series", daemon=True)
        self.last_at = 0.0  # when the latest collection began (unix seconds)
        self.ticks = 0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def start(self) -> Self:
        self._collectors = [c for kind in EXPORTERS for c in build_collectors(kind, self._settings, self._options)]
        self._set = CollectorSet(self._collectors)
        self.collect()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for collector in self._collectors:
            collector.stop()
        self._collectors = []

    def _run(self) -> None:
        next_at = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.interval_s
            try:
                self.collect()
            except Exception:  # one bad collection must not end the campaign's series
                log.exception("collecting the node's series failed")

    def collect(self) -> None:
        """One collection, stamped (as a scrape is) with when it began."""
        with self._collecting:
            self._collect()

    def _collect(self) -> None:
        now = self._clock()
        stamp = int(now * 1000)
        # Every job's FFmpeg series are kept (each under its job_id): the window picks the job's own.
        samples = [(sample.name, sample.labels, sample.value)
                   for family in self._set.collect() for sample in family.samples
                   if is_job_series(sample.name, sample.labels, sample.labels.get("job_id", ""))]
        with self._lock:
            for name, labels, value in samples:
                key = (name, labels_json(labels))
                buffer = self._buffers.get(key)
                if buffer is None:
                    buffer = self._buffers[key] = _Buffer()
                    self._job_ids[key] = labels.get("job_id")
                buffer.stamps.append(stamp)
                buffer.values.append(float(value))
            self.last_at = now
            self.ticks += 1
            self._lock.notify_all()

    def collect_after(self, at: float) -> None:
        """Make sure a collection began after ``at`` (unix seconds): the thread's, if it gets there first,
        else one taken here as soon as ``at`` has passed. A run's last window then closes on time
        rather than up to an interval later, which the whole run would wait for."""
        delay = at - self._clock()
        if delay > 0:
            time.sleep(delay)
        with self._collecting:
            if self.last_at <= at:
                self._collect()

    def wait_past(self, at: float, *, timeout_s: float) -> bool:
        """Block until a collection began after ``at`` (unix seconds); False after ``timeout_s``."""
        with self._lock:
            return self._lock.wait_for(lambda: self.last_at > at, timeout=timeout_s)

    def window(self, job_id: str, start: float, end: float) -> list[Series]:
        """Job ``job_id``'s series between ``start`` and ``end`` (unix seconds, inclusive)."""
        lo_ms, hi_ms = int(start * 1000), int(end * 1000)
        found = []
        with self._lock:
            for (name, labels), buffer in self._buffers.items():
                if self._job_ids[(name, labels)] not in (None, job_id):
                    continue
                lo, hi = bisect_left(buffer.stamps, lo_ms), bisect_right(buffer.stamps, hi_ms)
                if hi > lo:
                    found.append(Series(name, labels, np.frombuffer(buffer.stamps[lo:hi], dtype=np.int64).copy(),
                                        np.frombuffer(buffer.values[lo:hi], dtype=np.float64).copy()))
        return found

    def forget_before(self, at: float) -> None:
        """Drop samples taken before ``at``: no later job's window reaches back that far."""
        cut_ms = int(at * 1000)
        with self._lock:
            for key in list(self._buffers):
                buffer = self._buffers[key]
                cut = bisect_left(buffer.stamps, cut_ms)
                if cut == len(buffer.stamps):
                    del self._buffers[key], self._job_ids[key]
                elif cut:
                    del buffer.stamps[:cut], buffer.values[:cut]
