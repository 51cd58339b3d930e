"""Every error ffwatt raises on purpose.

    FfwattError                 anything ffwatt refuses or fails to do
    ├── CampaignError           a campaign file that can't be run as written
    │   ├── EncoderUnavailable  an encoder this node's FFmpeg lacks
    │   └── NodeBusy            this node is measuring another run (and the caller won't wait)
    ├── FFmpegError             FFmpeg missing, crashed, or exited non-zero
    │   ├── EncodeFailed        a job's encode failed (carries the command and stderr tail)
    │   └── QualityFailed       the quality pass failed for a job
    ├── EnergyReadError         an energy counter could not be read
    │   └── StaleSample         a sampler's latest good reading is too old to serve
    ├── ResultsError            the results dataset can't be read or written
    ├── StoreUnavailable        the metrics store didn't answer or refused a query (jobs' series)
    ├── SettingsError           an FFWATT_* value that can't be used
    ├── ApiError                the Prefect API can't be used (unreachable, credentials, TLS)
    │   └── ApiUnavailable      it didn't answer (master restarting, network)
    ├── ServiceError            a background service couldn't be started
    │   ├── PortTaken           its port is held by another process (named in the message)
    │   └── MonitoringError     a monitoring program (store, alerting, node_exporter) isn't installed
    ├── StackError              the master's stack couldn't be brought up
    └── AnalysisError           the results can't answer the question asked
        ├── NotComputable       too few points / no overlap (BD, CI, model fit)
        └── ExtrapolationError  a power-model prediction outside what was fitted

``ApiError`` carries the HTTP status the API answered (``status``) where there was one. The two
leaves of ``AnalysisError`` are also ``ValueError``, so plain-Python callers can catch them without
knowing ffwatt.

Errors from libraries underneath (OSError, pyarrow, pydantic, Prefect) are
translated at the boundary with ``raise ... from exc`` and carry what a user
needs to act: the file, the field, the fix.
"""

from __future__ import annotations

__all__ = [
    "AnalysisError",
    "ApiError",
    "ApiUnavailable",
    "CampaignError",
    "EncodeFailed",
    "EncoderUnavailable",
    "EnergyReadError",
    "ExtrapolationError",
    "FFmpegError",
    "FfwattError",
    "MonitoringError",
    "NodeBusy",
    "NotComputable",
    "PortTaken",
    "QualityFailed",
    "ResultsError",
    "ServiceError",
    "SettingsError",
    "StackError",
    "StaleSample",
    "StoreUnavailable",
]


class FfwattError(Exception):
    """Base of every error ffwatt raises on purpose."""


class CampaignError(FfwattError):
    """A campaign file that can't be run as written."""


class EncoderUnavailable(CampaignError):
    """The campaign asks for encoders this node's FFmpeg build doesn't have. The message suggests the
    nearest names the build has (a typo), not the build's whole list of a hundred-odd encoders."""

    def __init__(self, missing: list[str], available: list[str], ffmpeg: str) -> None:
        self.missing = missing
        self.available = available
        self.ffmpeg = ffmpeg
        guesses = []
        for name in missing:
            near = _nearest(name, available)
            guesses.append(f"{name} (did you mean {' or '.join(near)}?)" if near else name)
        super().__init__(
            f"encoder(s) {', '.join(guesses)} not available in {ffmpeg}; `{ffmpeg} -hide_banner -encoders` lists "
            f"the {len(available)} this build has. Fix the name in matrix.encoders, remove it, or point "
            "FFWATT_FFMPEG at a build that has it."
        )

    def __reduce__(self) -> tuple[object, tuple[list[str], list[str], str]]:  # survives pickling (Prefect)
        return (EncoderUnavailable, (self.missing, self.available, self.ffmpeg))


def _nearest(name: str, names: list[str], n: int = 2) -> list[str]:
    """The names most like ``name`` by difflib's ratio, a common start counting a little more
    (``libsvt-av1`` is meant to be ``libsvtav1``, ``h264nvenc`` ``h264_nvenc``)."""
    import difflib
    from itertools import takewhile

    def score(other: str) -> float:
        start = sum(1 for _ in takewhile(lambda pair: pair[0] == pair[1], zip(name, other)))
        return difflib.SequenceMatcher(None, name, other).ratio() + 0.05 * start

    return sorted(difflib.get_close_matches(name, names, n=10, cutoff=0.5), key=score, reverse=True)[:n]


class NodeBusy(CampaignError):
    """This node is measuring another run, and the caller asked not to wait for it. ``holder`` is who
    holds the node (as it described itself)."""

    def __init__(self, holder: str) -> None:
        self.holder = holder
        super().__init__(f"this node is already measuring {holder}: two runs at once would each be billed for the "
                         "other's encodes. Wait for it to end, or run again with --wait to start when it has")

    def __reduce__(self) -> tuple[object, tuple[str]]:  # survives pickling (Prefect)
        return (NodeBusy, (self.holder,))


class FFmpegError(FfwattError):
    """FFmpeg is missing, crashed, or exited non-zero."""


class EncodeFailed(FFmpegError):
    """A job's encode failed. ``attempt`` is the attempt that failed (1-based); ``max_rss_bytes`` what the
    FFmpeg that failed used at its peak (its row has it too), None when none ran."""

    def __init__(self, message: str, *, command: list[str], stderr_tail: str, attempt: int,
                 max_rss_bytes: int | None = None) -> None:
        self.command = command
        self.stderr_tail = stderr_tail
        self.attempt = attempt
        self.max_rss_bytes = max_rss_bytes
        super().__init__(message)

    def __reduce__(self) -> tuple[object, tuple[str, list[str], str, int, int | None]]:  # survives pickling
        return (
            _rebuild_encode_failed,
            (str(self), self.command, self.stderr_tail, self.attempt, self.max_rss_bytes),
        )


def _rebuild_encode_failed(message: str, command: list[str], stderr_tail: str, attempt: int,
                           max_rss_bytes: int | None = None) -> EncodeFailed:
    return EncodeFailed(message, command=command, stderr_tail=stderr_tail, attempt=attempt,
                        max_rss_bytes=max_rss_bytes)


class QualityFailed(FFmpegError):
    """The quality pass (PSNR/SSIM/VMAF) failed for a job."""


class EnergyReadError(FfwattError):
    """An energy counter exists but could not be read."""


class StaleSample(EnergyReadError):
    """A sampler's latest good reading is too old to serve (a collector fails rather than serve it)."""


class ResultsError(FfwattError):
    """The results dataset can't be read or written."""


class StoreUnavailable(FfwattError):
    """The metrics store didn't answer, or refused the query for a job's series."""


class SettingsError(FfwattError):
    """An ``FFWATT_*`` value that can't be used."""


class ApiError(FfwattError):
    """The Prefect API can't be used: unreachable, credentials refused, certificate not trusted, a
    request refused. ``status`` is the HTTP status it answered, when it answered."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)

    def __reduce__(self) -> tuple[object, tuple[type[ApiError], str, int | None]]:  # survives pickling
        return (_rebuild_api_error, (type(self), str(self), self.status))


def _rebuild_api_error(kind: type[ApiError], message: str, status: int | None) -> ApiError:
    return kind(message, status=status)


class ApiUnavailable(ApiError):
    """The Prefect API didn't answer (the master restarting, a network blip)."""


class ServiceError(FfwattError):
    """A background service couldn't be started."""


class PortTaken(ServiceError):
    """The port a service needs is held by another process."""


class MonitoringError(ServiceError):
    """A monitoring service can't be started: its program isn't installed."""


class StackError(FfwattError):
    """The master's stack couldn't be brought up."""


class AnalysisError(FfwattError):
    """The results can't answer the question asked."""


class NotComputable(AnalysisError, ValueError):
    """A figure can't be computed from these points; the message says why."""


class ExtrapolationError(AnalysisError, ValueError):
    """A prediction was asked for outside the range the model was fitted on."""
