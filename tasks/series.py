"""series: each job's series written beside its row, and their energy checked against the row's.

With a metrics store (``FFWATT_STORE_URL``, or the stack's store for a campaign on the
pools) the series come from its export API once the row arrives; without one, the local
campaign reads its node's exporters in-process once a second while its jobs run
(:class:`exporters.embedded.EmbeddedSeries`). Either way the row says where its series
came from, or why it has none: a store that doesn't answer costs the job its series, never
its row.

Not a Prefect task, as record isn't (:func:`tasks.record.record_job`): a task run's cost on the
server would compete with the next encode. Each row is written as soon as its job ends, as ever,
then handed to one worker thread (:meth:`JobSeries.submit`) that waits for its window's end (and
the store's), writes its series and writes the row again with its series columns, while the next
job runs, or, on the master, while the dispatcher keeps judging batches and nodes' liveness.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ffwatt.errors import ResultsError, StoreUnavailable
from ffwatt.schema import JobRow, SeriesSource
from ffwatt.series import MARGIN_S, Series, cross_check, job_window, series_table, write_series
from ffwatt.settings import Settings
from tasks._logging import run_logger
from tasks._store import SeriesStore

if TYPE_CHECKING:
    from exporters.embedded import EmbeddedSeries

__all__ = ["JobSeries", "job_series"]


class JobSeries:
    """Puts a job's series beside its row: from ``store``, or from ``sampler`` (this node's
    exporters read in-process); with neither, rows say ``unavailable``."""

    def __init__(self, results_dir: Path, *, store: SeriesStore | None = None, sampler: EmbeddedSeries | None = None,
                 unavailable: str = "") -> None:
        self.results_dir = results_dir
        self.store = store
        self.sampler = sampler
        self.unavailable = unavailable
        self.source: SeriesSource = "store" if store else "local"
        self._later = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-series")  # in job order
        self._pending: list[Future[None]] = []

    def submit(self, row: JobRow, write: Callable[[JobRow], object]) -> JobRow:
        """:meth:`attach` ``row`` on a worker, in order, and ``write`` it again with its series columns;
        returns ``row`` at once. The caller has written it already, so nothing measured waits on a
        window's last seconds or on the store, and a crash meanwhile loses only series. A failure
        on the worker is raised here, at the next row, or by :meth:`close`; one the results directory
        gives (:class:`ResultsError`, a full disk) costs only the job's series, and is logged."""
        self._raise_failures()

        def attach_and_write() -> None:
            try:
                write(self.attach(row))
            except ResultsError as exc:  # a full disk: the row stays as first written, without its series
                run_logger().warning("job %s's series couldn't be written; its row stays as written without them: "
                                     "%s", row.job_id, exc)

        self._pending.append(self._later.submit(attach_and_write))
        return row

    def close(self) -> None:
        """Attach and write again every submitted row (waiting for their windows' ends), then raise the
        first failure, if any."""
        self._later.shutdown(wait=True)
        self._raise_failures()

    def _raise_failures(self) -> None:
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for future in done:
            future.result()

    def attach(self, row: JobRow) -> JobRow:
        """``row`` with its series columns, its series written under ``_series``."""
        window = job_window(row)
        if window is None:
            return row.model_copy(update={"series_missing": "the job has no encode window (it failed before "
                                                            "its encode ended)"})
        try:
            series = self._series(row, *window)
        except StoreUnavailable as exc:
            run_logger().warning("job %s has no series: %s", row.job_id, exc)
            return row.model_copy(update={"series_missing": str(exc)})
        columns = cross_check(row, series, self.source)
        if series:
            write_series(self.results_dir, row.campaign, series_table(
                series, run_id=row.run_id, job_id=row.job_id, node=row.node, source=self.source))
        return row.model_copy(update=columns.model_dump())

    def _series(self, row: JobRow, start: float, end: float) -> list[Series]:
        if self.store is not None:
            return self.store.wait_and_export(node=row.node, job_id=row.job_id, start=start, end=end)
        if self.sampler is None:
            raise StoreUnavailable(self.unavailable)
        self.sampler.collect_after(end)  # the window's last second
        series = self.sampler.window(row.job_id, start, end)
        self.sampler.forget_before(end - 2 * MARGIN_S)  # jobs run one after another: no later window needs it
        return series


@contextlib.contextmanager
def job_series(settings: Settings, *, local: bool) -> Iterator[JobSeries]:
    """Series for a campaign's rows: from ``FFWATT_STORE_URL`` when set, else a local campaign
    (``local``) samples its node itself while this lasts, and one on the pools reads the stack's store.
    On the way out, every submitted row is written first."""
    with contextlib.ExitStack() as stack:
        if settings.store_url or not local:
            store = stack.enter_context(SeriesStore(settings.store_url or settings.stack_store_url))
            series = JobSeries(settings.results_dir, store=store)
        else:
            from exporters.embedded import EmbeddedSeries

            try:
                sampler = EmbeddedSeries(settings).start()
            except Exception as exc:  # noqa: BLE001 - jobs are measured without it; their rows say why
                reason = f"this node's exporters couldn't be read in-process: {type(exc).__name__}: {exc}"
                run_logger().warning("no series for this campaign: %s", reason)
                series = JobSeries(settings.results_dir, unavailable=reason)
            else:
                stack.callback(sampler.stop)
                series = JobSeries(settings.results_dir, sampler=sampler)
        stack.callback(series.close)  # before the sampler stops: the pending rows' windows need it
        yield series
