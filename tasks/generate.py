"""generate-video: the reference clip every job of an input encodes and is measured against.

The reference is stored losslessly (FFV1, or raw y4m) so that quality is measured
against the true source, at the source's own depth (4:2:0, 10 bits for a source deeper
than 8, else 8: a 10-bit master isn't rounded before it is encoded and scored), and cached
by what defines it (the input spec, the format and the FFmpeg version) so repetitions and
later campaigns reuse it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from ffwatt.campaign import FileInput, InputSpec, SyntheticInput
from ffwatt.encoders import bit_depth
from ffwatt.errors import FFmpegError
from ffwatt.files import made_once
from ffwatt.hardware.ffmpeg import ffmpeg_path, probe_build, probe_media, run_ffmpeg
from ffwatt.settings import Settings, load_settings
from tasks._logging import run_logger

__all__ = ["Reference", "generate_video", "prepare_reference"]


class Reference(BaseModel):
    """A prepared reference clip and the facts every job needs about it."""

    name: str
    path: str
    width: int
    height: int
    fps: float
    frames: int
    pix_fmt: str = "yuv420p"


def _codec_args(reference_format: str) -> tuple[list[str], str]:
    if reference_format == "y4m":
        return ["-f", "yuv4mpegpipe"], "y4m"
    # Intra-only FFV1 with slices decodes fast and in parallel, so reading the
    # reference adds little to the measured encode.
    return ["-c:v", "ffv1", "-level", "3", "-g", "1", "-slices", "4", "-slicecrc", "0"], "mkv"


def _cache_key(spec: SyntheticInput | FileInput, reference_format: str, ffmpeg_version: str) -> str:
    payload = {"spec": spec.model_dump(mode="json"), "format": reference_format, "ffmpeg": ffmpeg_version}
    if isinstance(spec, FileInput):
        stat = spec.path.stat()
        # "depth": since references of files keep a 10-bit source's depth, not those made 8-bit before.
        payload["file"] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "depth": "own"}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def prepare_reference(spec: InputSpec, reference_format: str, settings: Settings) -> Reference:
    """Return the cached reference for ``spec``, generating it first if needed."""
    ffmpeg = ffmpeg_path(settings)
    if isinstance(spec, FileInput) and not spec.path.is_file():
        raise FFmpegError(f"input {spec.name!r}: file {spec.path} does not exist")
    key = _cache_key(spec, reference_format, probe_build(ffmpeg).version)
    codec_args, extension = _codec_args(reference_format)
    directory = settings.cache_dir / "references"
    media = directory / f"{spec.name}-{key}.{extension}"
    meta = directory / f"{spec.name}-{key}.json"

    def generate(tmp: Path) -> Reference:
        reference = _generate(spec, ffmpeg, codec_args, extension, media, tmp)
        run_logger().info("generated reference %s: %dx%d %.3g fps, %d frames -> %s",
                          spec.name, reference.width, reference.height, reference.fps, reference.frames, media)
        return reference

    # One process generates a given reference; another run needing it at the same time waits,
    # then finds the clip made.
    return made_once(media, meta, Reference, generate)


def _generate(spec: InputSpec, ffmpeg: str, codec_args: list[str], extension: str, media: Path,
              tmp: Path) -> Reference:
    pix_fmt = "yuv420p"
    if isinstance(spec, SyntheticInput):
        source = ["-f", "lavfi", "-i", f"{spec.source}=size={spec.size}:rate={spec.fps}",
                  "-frames:v", str(spec.frames)]
    else:
        source = ["-i", str(spec.path), *(["-t", str(spec.duration_s)] if spec.duration_s else [])]
        probed = probe_media(ffmpeg, spec.path).video
        if probed is not None and probed.pix_fmt and bit_depth(probed.pix_fmt) > 8:
            pix_fmt = "yuv420p10le"
    run = run_ffmpeg(ffmpeg, [*source, "-map", "0:v:0", "-pix_fmt", pix_fmt, *codec_args,
                              "-f", "yuv4mpegpipe" if extension == "y4m" else "matroska", str(tmp)],
                     timeout_s=3600)
    failure = run.failure()
    if failure or run.last_progress is None or run.last_progress.frame == 0:
        raise FFmpegError(f"generating reference {spec.name!r} failed: {failure or 'no frames'}\n"
                          f"{run.stderr_tail}")
    if isinstance(spec, SyntheticInput):
        width, height, fps = spec.width, spec.height, float(spec.fps)
    else:
        media_info = probe_media(ffmpeg, tmp)
        if media_info.video is None:
            raise FFmpegError(f"can't read the size and frame rate of {spec.path}")
        width, height, fps = media_info.video.width, media_info.video.height, media_info.video.fps
    reference = Reference(name=spec.name, path=str(media), width=width, height=height, fps=fps,
                          frames=run.last_progress.frame, pix_fmt=pix_fmt)
    return reference


@task(name="generate-video", cache_policy=NO_CACHE)
def generate_video(spec: InputSpec, reference_format: str = "ffv1") -> Reference:
    """Prepare (or reuse) the lossless reference clip of one input."""
    return prepare_reference(spec, reference_format, load_settings())
