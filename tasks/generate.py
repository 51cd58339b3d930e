"""generate-video: the reference clip every job of an input encodes and is measured against.

The reference is stored losslessly (FFV1, or raw y4m) so that quality is measured
against the true source, and cached by what defines it (the input spec, the
format and the FFmpeg version) so repetitions and later campaigns reuse it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from ffwatt.campaign import FileInput, InputSpec, SyntheticInput
from ffwatt.errors import FFmpegError
from ffwatt.hardware.ffmpeg import ffmpeg_path, probe_build, run_ffmpeg
from ffwatt.results import write_atomic
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


_OUTPUT_VIDEO = re.compile(r"Output #0.*?Video: .*?, (\d+)x(\d+).*?, ([\d.]+) fps", re.DOTALL)


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
        payload["file"] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
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
    if media.is_file() and meta.is_file():
        return Reference.model_validate_json(meta.read_text())

    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(spec, SyntheticInput):
        source = ["-f", "lavfi", "-i", f"{spec.source}=size={spec.size}:rate={spec.fps}",
                  "-frames:v", str(spec.frames)]
    else:
        source = ["-i", str(spec.path), *(["-t", str(spec.duration_s)] if spec.duration_s else [])]
    tmp = media.with_name(f".{media.name}.partial")
    run = run_ffmpeg(ffmpeg, [*source, "-map", "0:v:0", "-pix_fmt", "yuv420p", *codec_args,
                              "-f", "yuv4mpegpipe" if extension == "y4m" else "matroska", str(tmp)],
                     timeout_s=3600)
    failure = run.failure()
    if failure or run.last_progress is None or run.last_progress.frame == 0:
        tmp.unlink(missing_ok=True)
        raise FFmpegError(f"generating reference {spec.name!r} failed: {failure or 'no frames'}\n"
                          f"{run.stderr_tail}")
    if isinstance(spec, SyntheticInput):
        width, height, fps = spec.width, spec.height, float(spec.fps)
    else:
        match = _OUTPUT_VIDEO.search(run.stderr_tail) or _OUTPUT_VIDEO.search(_verbose_probe(ffmpeg, tmp))
        if match is None:
            tmp.unlink(missing_ok=True)
            raise FFmpegError(f"can't read the size and frame rate of {spec.path}")
        width, height, fps = int(match[1]), int(match[2]), float(match[3])
    reference = Reference(name=spec.name, path=str(media), width=width, height=height, fps=fps,
                          frames=run.last_progress.frame)
    tmp.replace(media)
    write_atomic(meta, lambda path: path.write_text(reference.model_dump_json(indent=2)))
    run_logger().info("generated reference %s: %dx%d %.3g fps, %d frames -> %s",
                      spec.name, width, height, fps, reference.frames, media)
    return reference


def _verbose_probe(ffmpeg: str, path: Path) -> str:
    """FFmpeg's description of ``path``'s streams (there is no ffprobe in the bundled build)."""
    run = run_ffmpeg(ffmpeg, ["-i", str(path), "-frames:v", "1", "-f", "null", "-"], timeout_s=60)
    return run.stderr_tail


@task(name="generate-video", cache_policy=NO_CACHE)
def generate_video(spec: InputSpec, reference_format: str = "ffv1") -> Reference:
    """Prepare (or reuse) the lossless reference clip of one input."""
    return prepare_reference(spec, reference_format, load_settings())
