"""What a campaign's ``extra_args`` may hold: encoder options, and nothing else.

Campaigns arrive through the Prefect API too, and workers run their FFmpeg
commands, so ``extra_args`` must not add inputs or outputs, name files or
protocols, swap the encoder, or run filters (which can read and write files:
``movie=``, ``sendcmd=``). :func:`check_extra_args` refuses anything else with the
argument and the reason; what remains are options such as ``-tune film``,
``-profile:v high``, ``-g 60`` or ``-x264-params keyint=60:bframes=3``.

Two-pass encoding is refused in every spelling (``-pass 1``, ``-flags +pass1``, ``pass=1``,
``passes=2`` or ``stats=`` in an encoder's parameters): a job is one measured encode, and a first
pass writes its statistics to a log in FFmpeg's working directory (on a node, its checkout).
"""

from __future__ import annotations

import re

__all__ = ["check_extra_args"]

# Options that take no value (output options an encode may reasonably carry).
_FLAGS = frozenset({"an", "sn", "dn", "shortest", "bitexact", "copyts", "start_at_zero", "noautorotate",
                    "autorotate", "nostdin", "hide_banner", "nostats", "stats", "y"})

_WHY = {
    "output": "adds an output or changes the container, and the output is ffwatt's",
    "input": "adds an input; a job encodes its reference clip only",
    "encoder": "chooses the encoder; that is matrix.encoders[].name",
    "filter": "runs filters, which can read and write files (movie=, sendcmd=); scaling is matrix.resolutions",
    "file": "names a file FFmpeg would read or write",
    "device": "chooses a hardware device; the encoder's pool profile does",
    "twopass": "is two-pass encoding, which ffwatt doesn't do: a job is one measured encode (and a first pass "
               "would write its log into the working directory); use matrix.rate_control's vbr or cbr",
}
_REFUSED: dict[str, str] = {
    **dict.fromkeys(("f", "map", "map_metadata", "map_chapters", "map_channel", "streamid"), "output"),
    **dict.fromkeys(("i", "stream_loop", "itsoffset", "re", "readrate"), "input"),
    **dict.fromkeys(("c", "codec", "vcodec", "acodec", "scodec", "dcodec", "tag"), "encoder"),
    **dict.fromkeys(("vf", "af", "filter", "filter_complex", "lavfi", "filter_script", "filter_complex_script",
                     "filter_threads"), "filter"),
    **dict.fromkeys(("vstats", "vstats_file", "vstats_version", "report", "attach", "dump_attachment",
                     "sdp_file", "progress", "stats_enc_pre", "stats_enc_post", "stats_mux_pre",
                     "stats_enc_pre_fmt", "stats_enc_post_fmt", "stats_mux_pre_fmt", "fpre", "vpre", "apre",
                     "spre", "pre", "dump", "hex", "benchmark_all", "protocol_whitelist", "protocol_blacklist"),
                    "file"),
    **dict.fromkeys(("init_hw_device", "filter_hw_device", "hwaccel", "hwaccel_device", "hwaccel_output_format",
                     "vaapi_device", "qsv_device"), "device"),
    **dict.fromkeys(("pass", "passlogfile"), "twopass"),
}
# Encoder parameter strings (key=value:key=value) and the keys in them that name files.
_PARAM_OPTIONS = frozenset({"x264-params", "x264opts", "x265-params", "svtav1-params", "aom-params",
                            "libvpx-params", "rav1e-params"})
_FILE_KEYS = frozenset({
    "stats", "qpfile", "cqmfile", "dump-yuv", "tcfile-in", "tcfile-out", "csv", "analysis-save",
    "analysis-load", "analysis-reuse-file", "zonefile", "scaling-list", "lambda-file", "dolby-vision-rpu",
    "dhdr10-info", "recon", "fgs-table", "stat-file", "input", "output", "qpmap-file",
    "roi-map-file",
})
# Keys of encoder parameter strings that make an encode one pass of several (x264, x265, SVT-AV1, AOM),
# spelt with '-' (x264 and x265 take '_' for it too).
_TWOPASS_KEYS = frozenset({"pass", "passes", "passlogfile", "stats", "slow-firstpass", "multi-pass-opt-analysis",
                           "multi-pass-opt-distortion", "multi-pass-opt-rps", "fpf", "rc-stats-buffer"})
# The codec flags that make an encode the first or second pass (``-flags +pass1``, ``-flags:v pass2``).
_PASS_FLAGS = frozenset({"pass1", "pass2"})
_PATHLIKE = re.compile(r"^(?:/|~|\.\.?/)|://|^(?:file|pipe|tcp|udp|http|https|rtmp|unix):", re.IGNORECASE)


def _option_name(token: str) -> str:
    """``-profile:v`` -> ``profile``; ``-x264-params`` -> ``x264-params``."""
    return token.lstrip("-").split(":", 1)[0]


def _check_value(option: str, value: str) -> None:
    if _PATHLIKE.search(value):
        raise ValueError(f"{option} {value!r} names a file or protocol; refused")
    name = _option_name(option)
    # FFmpeg's flag syntax: names joined by + or - (set or clear), or by |.
    if name == "flags" and _PASS_FLAGS & {flag.strip().lower() for flag in re.split(r"[+|-]", value)}:
        raise ValueError(f"{option} {value} {_WHY['twopass']}; refused")
    if name in _PARAM_OPTIONS:
        for pair in re.split(r"[:,]", value):
            key, _, setting = pair.partition("=")
            if key.strip() in _FILE_KEYS:
                raise ValueError(f"{option} {key.strip()}={setting} {_WHY['file']}; refused")
            if key.strip().lower().replace("_", "-") in _TWOPASS_KEYS:
                raise ValueError(f"{option} {pair.strip()} {_WHY['twopass']}; refused")
            if setting and _PATHLIKE.search(setting):
                raise ValueError(f"{option} {pair} names a file or protocol; refused")


def check_extra_args(args: list[str]) -> None:
    """Raise ValueError naming the first argument that isn't an encoder option, and why."""
    position = 0
    while position < len(args):
        token = args[position]
        if not token.startswith("-") or token == "-":
            raise ValueError(f"{token!r} is not an option; a bare word would be an extra output "
                             "file. extra_args takes encoder options and their values, e.g. -tune film")
        if token.startswith("-/"):
            raise ValueError(f"{token} reads its value from a file; refused")
        name = _option_name(token)
        reason = _REFUSED.get(name)
        if reason is not None:
            raise ValueError(f"{token} {_WHY[reason]}; refused")
        if name in _FLAGS:
            position += 1
            continue
        if position + 1 >= len(args):
            raise ValueError(f"{token} needs a value after it")
        _check_value(token, args[position + 1])
        position += 2
