"""The FFmpeg binary: which one, what it is, and which video encoders it has.

``FFWATT_FFMPEG`` selects a binary; otherwise the static build shipped in the
``imageio-ffmpeg`` wheel is used (it has libvmaf, which Debian's FFmpeg lacks).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

from pydantic import BaseModel

from ffwatt.errors import FFmpegError
from ffwatt.settings import Settings

__all__ = ["FFmpegBuild", "ffmpeg_path", "probe_build"]


class FFmpegBuild(BaseModel):
    """What an FFmpeg binary is: its path, version, configure line and video encoders."""

    path: str
    version: str
    configuration: str
    encoders: frozenset[str]
    has_libvmaf: bool


def ffmpeg_path(settings: Settings) -> str:
    """The FFmpeg binary this node uses."""
    if settings.ffmpeg:
        found = shutil.which(settings.ffmpeg) or settings.ffmpeg
        if not Path(found).is_file():
            raise FFmpegError(
                f"FFWATT_FFMPEG={settings.ffmpeg} is not an executable file; "
                "unset it to use the bundled FFmpeg, or give a full path"
            )
        return found
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - it's a dependency
        raise FFmpegError("imageio-ffmpeg is not installed; run `make test` or set FFWATT_FFMPEG") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


_ENCODER_LINE = re.compile(r"^\s*V[A-Z.]{5}\s+(\S+)\s", re.MULTILINE)


@functools.lru_cache(maxsize=8)
def probe_build(path: str) -> FFmpegBuild:
    """Ask ``path`` for its version, configuration and video encoders (cached per path)."""
    try:
        version_out = subprocess.run(
            [path, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        encoders_out = subprocess.run(
            [path, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        filters_out = subprocess.run(
            [path, "-hide_banner", "-filters"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise FFmpegError(f"can't run FFmpeg at {path}: {exc}") from exc
    first = version_out.splitlines()[0] if version_out else ""
    version = first.split(" version ", 1)[1].split(" ", 1)[0] if " version " in first else "unknown"
    configuration = next(
        (line.split(":", 1)[1].strip() for line in version_out.splitlines() if line.startswith("configuration:")),
        "",
    )
    encoders = frozenset(
        name for name in _ENCODER_LINE.findall(encoders_out) if name != "="
    )
    return FFmpegBuild(
        path=path,
        version=version,
        configuration=configuration,
        encoders=encoders,
        has_libvmaf=re.search(r"^\s*\S+\s+libvmaf\s", filters_out, re.MULTILINE) is not None,
    )
