"""Wall power: what the whole node draws at the plug, as its BMC reports it over Redfish.

``FFWATT_REDFISH_URL`` names a chassis Power resource (``/redfish/v1/Chassis/<id>/Power``); a
reading is the sum of its ``PowerControl[].PowerConsumedWatts`` (one entry, the chassis, on the
BMCs we know), read with basic auth (``FFWATT_REDFISH_USER``/``_PASSWORD``) and the BMC's
certificate verified unless ``FFWATT_REDFISH_VERIFY_TLS=false``.

- :class:`WallMeter` samples it every ``FFWATT_REDFISH_INTERVAL_S`` from just before a job's
  encode to just after, and integrates the line through the readings over the encode's window
  (``started_at`` to ``ended_at``; the first reading held back to its start, the last forward to
  its end) into the row's ``wall_energy_j``. It is kept apart from ``energy_j``
  (CPU + GPU counters): the plug includes fans, disks, memory and the power supply's losses. Any
  reading in the window that fails leaves ``wall_energy_j`` null with why: a BMC that stops
  answering mid-job makes a figure that covers part of the window, which is not the job's.
- :class:`RedfishCollector` serves the latest reading as ``ffwatt_wall_power_watts``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable

import httpx
from prometheus_client.core import GaugeMetricFamily, Metric

from exporters._collector import NAMESPACE, Sampler
from ffwatt.settings import Settings

__all__ = ["RedfishCollector", "RedfishError", "WallMeter", "WallReading", "read_wall_power"]

SOURCE = "redfish"


class RedfishError(Exception):
    """A reading the BMC didn't give, and why, in one line."""


def redfish_client(settings: Settings) -> httpx.Client:
    user, password = settings.redfish_user, settings.redfish_password.get_secret_value()
    # A reading that takes longer than the interval is late for the next one: give up and say so.
    return httpx.Client(auth=(user, password) if user or password else None, verify=settings.redfish_verify_tls,
                        timeout=min(5.0, max(1.0, settings.redfish_interval_s)))


def read_wall_power(client: httpx.Client, url: str) -> float:
    """The node's power now (W), or :class:`RedfishError` saying why not."""
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise RedfishError(f"the BMC at {url} did not answer: {type(exc).__name__}: {exc}") from exc
    if response.status_code in (401, 403):
        raise RedfishError(f"the BMC at {url} refused the credentials ({response.status_code}); check "
                           "FFWATT_REDFISH_USER and FFWATT_REDFISH_PASSWORD")
    if response.status_code != 200:
        raise RedfishError(f"the BMC at {url} answered {response.status_code}")
    try:
        controls = response.json().get("PowerControl")
        watts = [c["PowerConsumedWatts"] for c in controls if isinstance(c.get("PowerConsumedWatts"), int | float)]
    except (ValueError, AttributeError, TypeError) as exc:
        raise RedfishError(f"{url} is not a Redfish Power resource: {exc}") from exc
    if not watts:
        raise RedfishError(f"{url} has no PowerControl[].PowerConsumedWatts reading")
    return float(sum(watts))


class WallReading:
    """A window's wall energy (J) and source, or None and why."""

    def __init__(self, energy_j: float | None, missing: str | None, samples: int) -> None:
        self.energy_j, self.missing, self.samples = energy_j, missing, samples
        self.source = SOURCE if energy_j is not None else None


class WallMeter:
    """Samples wall power between :meth:`start` and :meth:`stop`, on a thread of its own so a slow BMC
    never holds up the job; :meth:`stop` waits for at most one reading's timeout."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        """``clock``: wall-clock seconds, as the encode's started_at and ended_at are."""
        assert settings.redfish_url is not None
        self._url = settings.redfish_url
        self._interval_s = settings.redfish_interval_s
        self._client = redfish_client(settings)
        self._clock = clock
        self._samples: list[tuple[float, float]] = []
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wall-power", daemon=True)
        self._t0 = self._t1 = 0.0

    def start(self) -> None:
        self._t0 = self._clock()
        self._thread.start()

    def _read(self) -> bool:
        try:
            watts = read_wall_power(self._client, self._url)
        except RedfishError as exc:
            self._error = f"{exc} ({self._clock() - self._t0:.1f} s into the window)"
            return False
        self._samples.append((self._clock(), watts))
        return True

    def _run(self) -> None:
        while self._read() and not self._stop.wait(self._interval_s):
            pass
        if self._error is None:
            self._read()  # one at the window's end

    def stop(self, window: tuple[float, float] | None = None) -> WallReading:
        """Stop sampling; the energy over ``window`` (start and end on this meter's clock: the job's own
        encode window, so the figure spans what ``wall_s`` does), by default from :meth:`start` to now."""
        self._t1 = self._clock()
        self._stop.set()
        self._thread.join((self._client.timeout.read or 5.0) + 1.0)
        self._client.close()
        if self._thread.is_alive():
            self._error = self._error or f"the BMC at {self._url} did not answer by the window's end"
        if self._error is not None:
            return WallReading(None, self._error, len(self._samples))
        if not self._samples:
            return WallReading(None, f"no reading from {self._url} in the window", 0)
        start, end = window or (self._t0, self._t1)
        return WallReading(_integrate(self._samples, start, end), None, len(self._samples))


def _integrate(points: list[tuple[float, float]], start: float, end: float) -> float:
    """The integral over [start, end] of the line through ``points`` (time, watts), held level before
    the first and after the last: joules."""
    def watts(t: float) -> float:
        if t <= points[0][0]:
            return points[0][1]
        for (t0, w0), (t1, w1) in itertools.pairwise(points):
            if t <= t1:
                return w0 + (w1 - w0) * (t - t0) / (t1 - t0) if t1 > t0 else w1
        return points[-1][1]

    knots = [start, *(t for t, _ in points if start < t < end), end]
    return sum((b - a) * (watts(a) + watts(b)) / 2 for a, b in itertools.pairwise(knots))


class RedfishCollector:
    """``ffwatt_wall_power_watts``: the latest reading, taken every ``FFWATT_REDFISH_INTERVAL_S`` in the
    background (a BMC can take a second to answer: never on a scrape)."""

    name = "redfish"

    def __init__(self, settings: Settings) -> None:
        assert settings.redfish_url is not None
        self._url = settings.redfish_url
        self._client = redfish_client(settings)
        self._watts: float | None = None
        self.sampler = Sampler("redfish", settings.redfish_interval_s, self._sample)

    def _sample(self) -> None:
        self._watts = read_wall_power(self._client, self._url)

    def start(self) -> RedfishCollector:
        self.sampler.start()
        return self

    def stop(self) -> None:
        self.sampler.stop()
        self._client.close()

    def collect(self) -> Iterable[Metric]:
        self.sampler.check()  # a stale reading is an error, not a value
        gauge = GaugeMetricFamily(f"{NAMESPACE}_wall_power_watts",
                                  "The node's power at the plug, as its BMC reports it over Redfish.")
        if self._watts is not None:
            gauge.add_metric([], self._watts)
        yield gauge
