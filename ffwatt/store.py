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

import httpx
import numpy as np

from ffwatt.errors import StoreUnavailable
from ffwatt.series import JOB_SERIES, NODE_SERIES, Series, labels_json

__all__ = ["INGEST_LAG_S", "export_window", "job_selectors", "store_answers", "wait_and_export"]

# How long after a sample is taken the store can serve it: the next 1 s scrape, then
# VictoriaMetrics makes freshly ingested samples searchable within about a second.
INGEST_LAG_S = 2.5


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def job_selectors(node: str, job_id: str) -> list[str]:
    """The series selectors of a job on ``node``: its node's series and its own FFmpeg's."""
    return [f"{{__name__=~{_quoted(NODE_SERIES)},node={_quoted(node)}}}",
            f"{{__name__=~{_quoted(JOB_SERIES)},node={_quoted(node)},job_id={_quoted(job_id)}}}"]


def store_answers(url: str, *, timeout_s: float = 2.0) -> str | None:
    """None when the store at ``url`` answers its health check, else why not."""
    try:
        httpx.get(f"{url}/health", timeout=timeout_s).raise_for_status()
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def export_window(url: str, *, node: str, job_id: str, start: float, end: float,
                  timeout_s: float = 30.0) -> list[Series]:
    """Every sample of job ``job_id``'s series on ``node`` between ``start`` and ``end`` (unix seconds)."""
    params = {"match[]": job_selectors(node, job_id), "start": f"{start:.3f}", "end": f"{end:.3f}"}
    try:
        response = httpx.get(f"{url}/api/v1/export", params=params, timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise StoreUnavailable(f"the metrics store at {url} didn't export the series ({type(exc).__name__}: "
                               f"{exc}); check it runs (ffwatt stack status) or FFWATT_STORE_URL") from exc
    found = []
    for line in response.text.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        # Prometheus' staleness markers come back as null: not a reading.
        pairs = [(t, float(v)) for t, v in zip(record["timestamps"], record["values"]) if v is not None]
        if pairs:
            stamps, values = zip(*pairs)
            found.append(Series(record["metric"]["__name__"], labels_json(record["metric"]),
                                np.asarray(stamps, dtype=np.int64), np.asarray(values, dtype=np.float64)))
    return found


def wait_and_export(url: str, *, node: str, job_id: str, start: float, end: float,
                    clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                    patience_s: float = 10.0) -> list[Series]:
    """:func:`export_window` once the store can have the window's last samples; asked again (for up to
    ``patience_s`` more) while its newest sample is still more than a scrape short of ``end``.

    Raises :class:`StoreUnavailable` at once when the store doesn't answer, without waiting."""
    why = store_answers(url)
    if why is not None:
        raise StoreUnavailable(f"the metrics store at {url} is unreachable ({why}); the row keeps the node's "
                               "direct readings. Check `ffwatt stack status` or FFWATT_STORE_URL")
    ready_at = end + INGEST_LAG_S
    deadline = ready_at + patience_s
    sleep(max(0.0, ready_at - clock()))
    while True:
        found = export_window(url, node=node, job_id=job_id, start=start, end=end)
        newest = max((int(s.timestamps_ms[-1]) for s in found), default=0) / 1000
        if newest >= end - 1.0 or clock() >= deadline:
            return found
        sleep(1.0)
