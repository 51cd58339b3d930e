"""What ffwatt knows about each FFmpeg video encoder.

A profile says which work pool's hardware an encoder needs, what its presets
are called and how each rate-control mode is spelt on its command line. Campaign
validation, command building and the agent's pool matching all read this one
table, so an encoder is described once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["NODE_POOLS", "PIX_FMTS", "PROFILES", "EncoderProfile", "PixFmt", "Pool", "RateMode", "bit_depth",
           "encode_command", "profile_for"]

Pool = Literal["cpu", "nvidia", "qsv", "vaapi", "amf", "vulkan"]
NODE_POOLS: tuple[Pool, ...] = get_args(Pool)  # every pool a node can serve, each with its batch deployment
RateMode = Literal["crf", "qp", "cbr", "vbr"]
# Output pixel formats a campaign can ask for: 8-bit and 10-bit 4:2:0, what delivery uses.
PixFmt = Literal["yuv420p", "yuv420p10le"]
PIX_FMTS: tuple[PixFmt, ...] = get_args(PixFmt)
_EIGHT_BIT: tuple[PixFmt, ...] = ("yuv420p",)
_TEN_BIT: tuple[PixFmt, ...] = ("yuv420p", "yuv420p10le")


def bit_depth(pix_fmt: str) -> int:
    """Bits per sample of a planar YUV format FFmpeg names (``yuv420p`` 8, ``yuv420p10le`` 10)."""
    match = re.search(r"p(\d+)(?:le|be)$", pix_fmt)
    return int(match[1]) if match else 8


@dataclass(frozen=True, kw_only=True)
class EncoderProfile:
    """How to drive one encoder. ``presets`` of ``None`` accepts any preset string."""

    name: str
    codec: str
    pool: Pool
    presets: tuple[str, ...] | None
    default_preset: str | None
    preset_flag: str | None = "-preset"
    quality_range: tuple[int, int] = (0, 51)
    rate_modes: frozenset[str] = frozenset({"crf", "qp", "cbr", "vbr"})
    # Spelling of the constant-quality modes; "{v}" is the CRF/QP value.
    crf_args: tuple[str, ...] = ("-crf", "{v}")
    qp_args: tuple[str, ...] = ("-qp", "{v}")
    # Bitrate modes; "{k}" is the target in kbit/s. The default CBR keeps a VBV buffer
    # of two seconds' worth: within a few percent over clips of a few seconds, with
    # room for I-frames.
    cbr_args: tuple[str, ...] = ("-b:v", "{k}k", "-minrate", "{k}k", "-maxrate", "{k}k", "-bufsize", "{k2}k")
    vbr_args: tuple[str, ...] = ("-b:v", "{k}k", "-maxrate", "{k2}k", "-bufsize", "{k4}k")
    # Hardware encoders need a device and an upload filter before they see frames.
    input_args: tuple[str, ...] = ()
    upload_filter: str | None = None
    # Output pixel formats it takes (None: an encoder ffwatt doesn't know, left to FFmpeg), and how
    # FFmpeg's -pix_fmt spells one where the encoder wants its own layout (NVENC's 10-bit is p010le).
    pix_fmts: tuple[PixFmt, ...] | None = _EIGHT_BIT
    pix_fmt_names: tuple[tuple[str, str], ...] = ()

    def pix_fmt_args(self, pix_fmt: str | None) -> list[str]:
        """``-pix_fmt`` for ``pix_fmt``; none for None, or where an upload filter sets the format."""
        if pix_fmt is None or self.upload_filter:
            return []
        return ["-pix_fmt", dict(self.pix_fmt_names).get(pix_fmt, pix_fmt)]

    def preset_args(self, preset: str | None) -> list[str]:
        if preset is None or self.preset_flag is None:
            return []
        return [self.preset_flag, preset]

    def rate_modes_text(self) -> str:
        """The rate-control modes it takes and their ranges, for a refusal: ``qp 1..31 (-q:v), cbr, vbr``."""
        words = []
        for mode in (mode for mode in get_args(RateMode) if mode in self.rate_modes):
            if mode in ("crf", "qp"):
                flag = (self.crf_args if mode == "crf" else self.qp_args)[-2]
                low, high = self.quality_range
                words.append(f"{mode} {low}..{high}" + (f" ({flag})" if flag not in ("-crf", "-qp") else ""))
            else:
                words.append(f"{mode} (bitrates_kbps)")
        return ", ".join(words)

    def rate_args(self, mode: RateMode, value: int) -> list[str]:
        """Command-line flags for ``mode`` at ``value`` (a CRF/QP, or kbit/s)."""
        if mode == "crf":
            return [a.format(v=value) for a in self.crf_args]
        if mode == "qp":
            return [a.format(v=value) for a in self.qp_args]
        template = self.cbr_args if mode == "cbr" else self.vbr_args
        return [a.format(k=value, k2=2 * value, k4=4 * value) for a in template]


_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
                 "slow", "slower", "veryslow", "placebo")
_NVENC_PRESETS = ("p1", "p2", "p3", "p4", "p5", "p6", "p7")
_QSV_PRESETS = ("veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def _nvenc(name: str, codec: str) -> EncoderProfile:
    # NVENC encodes HEVC and AV1 in 10 bits; its H.264 is 8-bit on GPUs before Blackwell.
    return EncoderProfile(
        name=name, codec=codec, pool="nvidia", presets=_NVENC_PRESETS, default_preset="p4",
        pix_fmts=_TEN_BIT if codec in ("hevc", "av1") else _EIGHT_BIT, pix_fmt_names=(("yuv420p10le", "p010le"),),
        crf_args=("-rc", "vbr", "-cq", "{v}", "-b:v", "0"),
        qp_args=("-rc", "constqp", "-qp", "{v}"),
        cbr_args=("-rc", "cbr", *EncoderProfile.cbr_args),
        vbr_args=("-rc", "vbr", *EncoderProfile.vbr_args),
    )


def _qsv(name: str, codec: str) -> EncoderProfile:
    return EncoderProfile(
        name=name, codec=codec, pool="qsv", presets=_QSV_PRESETS, default_preset="medium",
        quality_range=(1, 51), rate_modes=frozenset({"crf", "cbr", "vbr"}),
        crf_args=("-global_quality", "{v}"),
        input_args=("-init_hw_device", "qsv=hw", "-filter_hw_device", "hw"),
        upload_filter="format=nv12,hwupload=extra_hw_frames=64",
    )


def _vaapi(name: str, codec: str) -> EncoderProfile:
    return EncoderProfile(
        name=name, codec=codec, pool="vaapi", presets=None, default_preset=None, preset_flag=None,
        rate_modes=frozenset({"qp", "cbr", "vbr"}),
        qp_args=("-rc_mode", "CQP", "-qp", "{v}"),
        cbr_args=("-rc_mode", "CBR", *EncoderProfile.cbr_args),
        vbr_args=("-rc_mode", "VBR", *EncoderProfile.vbr_args),
        input_args=("-vaapi_device", "/dev/dri/renderD128"),
        upload_filter="format=nv12,hwupload",
    )


def _qscale(name: str, codec: str) -> EncoderProfile:
    """FFmpeg's own MPEG-family encoders: no presets and no CRF (they ignore ``-crf`` and ``-qp``); a
    constant quantiser is the quality scale, ``-q:v`` 1 (best) to 31."""
    return EncoderProfile(name=name, codec=codec, pool="cpu", presets=(), default_preset=None, preset_flag=None,
                          quality_range=(1, 31), rate_modes=frozenset({"qp", "cbr", "vbr"}), qp_args=("-q:v", "{v}"))


PROFILES: dict[str, EncoderProfile] = {
    p.name: p
    for p in (
        EncoderProfile(name="libx264", codec="h264", pool="cpu", presets=_X26X_PRESETS,
                       default_preset="medium"),
        EncoderProfile(name="libx265", codec="hevc", pool="cpu", presets=_X26X_PRESETS,
                       default_preset="medium", pix_fmts=_TEN_BIT),
        EncoderProfile(name="libsvtav1", codec="av1", pool="cpu",
                       presets=tuple(str(i) for i in range(14)), default_preset="8", pix_fmts=_TEN_BIT,
                       quality_range=(1, 63),
                       # SVT-AV1 does CBR only with low-delay prediction, and takes no
                       # max rate outside CRF mode.
                       cbr_args=("-b:v", "{k}k", "-svtav1-params", "rc=2:pred-struct=1"),
                       vbr_args=("-b:v", "{k}k")),
        EncoderProfile(name="libvpx-vp9", codec="vp9", pool="cpu",
                       presets=tuple(str(i) for i in range(-8, 9)), default_preset="4",
                       preset_flag="-cpu-used", quality_range=(0, 63),
                       rate_modes=frozenset({"crf", "cbr", "vbr"}),
                       crf_args=("-crf", "{v}", "-b:v", "0")),
        EncoderProfile(name="libaom-av1", codec="av1", pool="cpu",
                       presets=tuple(str(i) for i in range(10)), default_preset="6", pix_fmts=_TEN_BIT,
                       preset_flag="-cpu-used", quality_range=(0, 63),
                       rate_modes=frozenset({"crf", "cbr", "vbr"}),
                       crf_args=("-crf", "{v}", "-b:v", "0")),
        _nvenc("h264_nvenc", "h264"), _nvenc("hevc_nvenc", "hevc"), _nvenc("av1_nvenc", "av1"),
        _qsv("h264_qsv", "h264"), _qsv("hevc_qsv", "hevc"), _qsv("av1_qsv", "av1"),
        _vaapi("h264_vaapi", "h264"), _vaapi("hevc_vaapi", "hevc"), _vaapi("av1_vaapi", "av1"),
        _qscale("mpeg4", "mpeg4"), _qscale("msmpeg4v2", "msmpeg4v2"), _qscale("msmpeg4", "msmpeg4v3"),
        _qscale("mpeg2video", "mpeg2video"), _qscale("mpeg1video", "mpeg1video"), _qscale("mjpeg", "mjpeg"),
        _qscale("flv", "flv1"),
    )
}


def profile_for(encoder: str) -> EncoderProfile:
    """The profile of ``encoder``; an encoder ffwatt doesn't know runs on CPUs with
    FFmpeg's generic flags (``-preset``, ``-crf``, ``-qp``, ``-b:v``), and a node checks with its
    FFmpeg that the encoder has the options a campaign uses (:func:`ffwatt.validation.check_encoder_options`)."""
    known = PROFILES.get(encoder)
    if known is not None:
        return known
    return EncoderProfile(name=encoder, codec="unknown", pool="cpu", presets=None,
                          default_preset=None, quality_range=(0, 255), pix_fmts=None)


def encode_command(encoder: str, *, preset: str | None, rate_control: RateMode, value: int, source: str,
                   output: str, scale_to: tuple[int, int] | None = None, threads: int | None = None,
                   pix_fmt: str | None = None, extra_args: Sequence[str] = ()) -> list[str]:
    """FFmpeg's arguments (after its global ones) that encode ``source``'s video into ``output``
    (Matroska): the one builder of the encode command, for a job and for the command ``ffwatt
    recommend`` prints. ``scale_to`` scales (bicubic) first; ``threads`` bounds the decoding too;
    ``pix_fmt`` converts to that output format (None: the source's own)."""
    profile = profile_for(encoder)
    filters = [f"scale={scale_to[0]}:{scale_to[1]}:flags=bicubic"] if scale_to else []
    if profile.upload_filter:
        filters.append(profile.upload_filter)
    # threads bounds the whole job (decoding the reference too), so `threads: 1` means one core.
    thread_args = ["-threads", str(threads)] if threads else []
    return [
        *profile.input_args,
        *thread_args,
        "-i", source,
        "-map", "0:v:0",
        *(["-vf", ",".join(filters)] if filters else []),
        "-c:v", encoder,
        *profile.preset_args(preset),
        *profile.rate_args(rate_control, value),
        *thread_args,
        *profile.pix_fmt_args(pix_fmt),
        *extra_args,
        "-an",
        "-f", "matroska",
        output,
    ]
