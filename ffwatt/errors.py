"""Every error ffwatt raises on purpose.

    FfwattError                 anything ffwatt refuses or fails to do
    ├── CampaignError           a campaign file that can't be run as written
    │   └── EncoderUnavailable  an encoder this node's FFmpeg lacks
    ├── FFmpegError             FFmpeg missing, crashed, or exited non-zero
    │   ├── EncodeFailed        a job's encode failed (carries the command and stderr tail)
    │   └── LiveFailed          a live step failed: ingest, publisher, transcoder or a rendition
    ├── QualityFailed           the quality pass failed for a job
    ├── EnergyReadError         an energy counter could not be read
    ├── ResultsError            the results dataset can't be read or written
    ├── StoreUnavailable        the metrics store didn't answer or refused a query (jobs' series)
    ├── SettingsError           an FFWATT_* value that can't be used
    ├── ApiError                the Prefect API can't be used (unreachable, credentials, TLS)
    │   └── ApiUnavailable      it didn't answer (master restarting, network)
    ├── ServiceError            a background service couldn't be started
    │   ├── PortTaken           its port is held by another process (named in the message)
    │   └── MonitoringError     a monitoring program (store, alerting, node_exporter) isn't installed
    └── StackError              the master's stack couldn't be brought up

Errors from libraries underneath (OSError, pyarrow, pydantic, Prefect) are
translated at the boundary with ``raise ... from exc`` and carry what a user
needs to act: the file, the field, the fix.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "ApiUnavailable",
    "CampaignError",
    "EncodeFailed",
    "EncoderUnavailable",
    "EnergyReadError",
    "FFmpegError",
    "FfwattError",
    "LiveFailed",
    "MonitoringError",
    "PortTaken",
    "QualityFailed",
    "ResultsError",
    "ServiceError",
    "SettingsError",
    "StackError",
    "StoreUnavailable",
]


class FfwattError(Exception):
    """Base of every error ffwatt raises on purpose."""


class CampaignError(FfwattError):
    """A campaign file that can't be run as written."""


class EncoderUnavailable(CampaignError):
    """The campaign asks for encoders this node's FFmpeg build doesn't have."""

    def __init__(self, missing: list[str], available: list[str], ffmpeg: str) -> None:
        self.missing = missing
        self.available = available
        self.ffmpeg = ffmpeg
        super().__init__(
            f"encoder(s) {', '.join(missing)} not available in {ffmpeg}; "
            f"this build has: {', '.join(available)}. "
            "Remove them from matrix.encoders or point FFWATT_FFMPEG at a build that has them."
        )


class FFmpegError(FfwattError):
    """FFmpeg is missing, crashed, or exited non-zero."""


class EncodeFailed(FFmpegError):
    """A job's encode failed. ``attempt`` is the attempt that failed (1-based)."""

    def __init__(self, message: str, *, command: list[str], stderr_tail: str, attempt: int) -> None:
        self.command = command
        self.stderr_tail = stderr_tail
        self.attempt = attempt
        super().__init__(message)

    def __reduce__(self) -> tuple[object, tuple[str, list[str], str, int]]:  # survives pickling (Prefect)
        return (
            _rebuild_encode_failed,
            (str(self), self.command, self.stderr_tail, self.attempt),
        )


def _rebuild_encode_failed(message: str, command: list[str], stderr_tail: str, attempt: int) -> EncodeFailed:
    return EncodeFailed(message, command=command, stderr_tail=stderr_tail, attempt=attempt)


class LiveFailed(FFmpegError):
    """A live step failed: the ingest unreachable or gone, a publisher that died, a transcoder that
    failed, a rendition that never appeared. The message names the stream and the reason."""


class QualityFailed(FFmpegError):
    """The quality pass (PSNR/SSIM/VMAF) failed for a job."""


class EnergyReadError(FfwattError):
    """An energy counter exists but could not be read."""


class ResultsError(FfwattError):
    """The results dataset can't be read or written."""


class StoreUnavailable(FfwattError):
    """The metrics store didn't answer, or refused the query for a job's series."""


class SettingsError(FfwattError):
    """An ``FFWATT_*`` value that can't be used."""


class ApiError(FfwattError):
    """The Prefect API can't be used: unreachable, credentials refused, certificate not trusted."""


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
