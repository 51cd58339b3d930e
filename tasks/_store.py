"""Reading a job's series out of the metrics store (VictoriaMetrics).

Through ``/api/v1/export``, which returns raw samples as scraped, one JSON object per
series and line, and unlike ``/api/v1/query`` never hides the newest ones
(``-search.latencyOffset``): a job's window ends two seconds after its encode, so it is
always among the newest samples when its row arrives.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Self

import httpx
import numpy as np

from ffwatt.errors import StoreUnavailable
from ffwatt.series import JOB_SERIES, NODE_SERIES, SCRAPE_S, Series, labels_json

__all__ = ["INGEST_LAG_S", "SeriesStore", "job_selectors", "node_selector"]

# How long after a sample is taken the store can serve it: the next 1 s scrape, then
# VictoriaMetrics makes freshly ingested samples searchable within about a second.
INGEST_LAG_S = 2.5


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def node_selector(node: str) -> str:
    """The series selector of ``node``'s own series (its power, energy, utilization)."""
    return f"{{__name__=~{_quoted(NODE_SERIES)},node={_quoted(node)}}}"


def job_selectors(node: str, job_id: str) -> list[str]:
    """The series selectors of a job on ``node``: its node's series and its own FFmpeg's."""
    return [node_selector(node), f"{{__name__=~{_quoted(JOB_SERIES)},node={_quoted(node)},job_id={_quoted(job_id)}}}"]


class SeriesStore:
    """A metrics store's export API for jobs' series, through one HTTP client (its connections and
    TLS context made once, not per job); ``clock`` and ``sleep`` are the seams tests turn."""

    def __init__(self, url: str, *, client: httpx.Client | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url.rstrip("/")
        self._client = client or httpx.Client(timeout=30.0)
        self._clock, self._sleep = clock, sleep

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def answers(self, *, timeout_s: float = 2.0) -> str | None:
        """None when the store answers its health check, else why not."""
        try:
            self._client.get(f"{self.url}/health", timeout=timeout_s).raise_for_status()
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def export_window(self, *, node: str, job_id: str, start: float, end: float) -> list[Series]:
        """Every sample of job ``job_id``'s series on ``node`` between ``start`` and ``end`` (unix seconds)."""
        return self._export(job_selectors(node, job_id), start, end)

    def _export(self, selectors: list[str], start: float, end: float) -> list[Series]:
        params = {"match[]": selectors, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        found = []
        try:
            # Streamed, a series (one line) at a time: the whole answer is never held at once.
            with self._client.stream("GET", f"{self.url}/api/v1/export", params=params) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if line.strip():
                        found.extend(_series(json.loads(line)))
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"the metrics store at {self.url} didn't export the series "
                                   f"({type(exc).__name__}: {exc}); check it runs (ffwatt stack status) "
                                   "or FFWATT_STORE_URL") from exc
        return found

    def wait_and_export(self, *, node: str, job_id: str, start: float, end: float,
                        patience_s: float = 10.0) -> list[Series]:
        """:meth:`export_window` once the store can have the window's last samples; asked again, every
        half scrape, for up to ``patience_s`` more while its newest sample is still more than a scrape
        short of ``end`` (none at all: it doesn't scrape the node, and no wait would change that).

        From ``end`` on, a small probe (the node's last few seconds) asks every quarter scrape whether
        the store has that sample already, rather than allowing for the slowest ingest: a run's last
        window is part of its fixed cost. The full export is never asked later than without it.

        Raises :class:`StoreUnavailable` at once when the store doesn't answer, without waiting."""
        why = self.answers()
        if why is not None:
            raise StoreUnavailable(f"the metrics store at {self.url} is unreachable ({why}); the row keeps "
                                   "the node's direct readings. Check `ffwatt stack status` or FFWATT_STORE_URL")
        # Asked as soon as the sample a scrape before the window's end can be searchable: the last
        # job's wait is part of every campaign's fixed cost.
        ready_at = end - SCRAPE_S + INGEST_LAG_S
        if self._in_early(node, end, until=ready_at):
            ready_at = self._clock()
        deadline = ready_at + patience_s
        self._sleep(max(0.0, ready_at - self._clock()))
        while True:
            found = self.export_window(node=node, job_id=job_id, start=start, end=end)
            newest = _newest(found)
            # Nothing at all: the store doesn't scrape this node; waiting won't change that.
            if not found or newest >= end - SCRAPE_S or self._clock() >= deadline:
                return found
            self._sleep(SCRAPE_S / 2)

    def _in_early(self, node: str, end: float, *, until: float) -> bool:
        """Whether the store has node ``node``'s sample a scrape before ``end`` before ``until``."""
        self._sleep(max(0.0, end - self._clock()))
        while self._clock() < until:
            recent = self._export([node_selector(node)], end - 3 * SCRAPE_S, end)
            if not recent:  # nothing lately: not scraped, or far behind; the plain wait handles both
                return False
            if _newest(recent) >= end - SCRAPE_S:
                return True
            self._sleep(SCRAPE_S / 4)
        return False


def _newest(found: list[Series]) -> float:
    """The newest sample's time among ``found`` (unix seconds; 0 for none)."""
    return max((int(s.timestamps_ms[-1]) for s in found), default=0) / 1000


def _series(record: dict[str, Any]) -> list[Series]:
    """One exported line as a :class:`Series`; staleness markers (null or NaN) are not readings."""
    values = np.array(record["values"], dtype=np.float64)  # null -> NaN
    stamps = np.array(record["timestamps"], dtype=np.int64)
    readings = ~np.isnan(values)
    if not readings.any():
        return []
    return [Series(record["metric"]["__name__"], labels_json(record["metric"]), stamps[readings], values[readings])]
