from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import BaseModel

from ffwatt.schema import (
    CONFIG_COLUMNS,
    CURVE_COLUMNS,
    EnergyColumns,
    JobRow,
    QualityColumns,
    arrow_schema,
    config_label,
    schema_markdown,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "schema.md"

REQUIRED = """campaign run_id job_id repetition node input_name input_width input_height input_fps
input_frames encoder preset rate_control crf target_bitrate_kbps output_width output_height status error
attempts started_at ended_at wall_s cpu_user_s cpu_sys_s max_rss_bytes frames encode_fps speed output_bytes
bitrate_kbps dropped_frames psnr ssim vmaf energy_j energy_source joules_per_frame ffmpeg_version ffmpeg_cmd
reference_path output_path""".split()


def test_every_promised_column_is_in_the_schema_identity_first():
    names = arrow_schema().names
    assert [c for c in REQUIRED if c not in names] == []
    assert names[:6] == ["campaign", "run_id", "job_id", "config_id", "repetition", "node"]
    assert len(names) == len(set(names))


def test_every_column_is_declared_once_in_one_group():
    """A field declared in two groups would silently take the later one's type and description, and
    one declared on JobRow itself would belong to no step: neither may happen."""
    groups = [base for base in JobRow.__mro__[1:] if issubclass(base, BaseModel) and base.model_fields
              and base.__name__.endswith("Columns")]
    declared: dict[str, str] = {}
    for group in groups:
        for name in group.__annotations__:
            assert name not in declared, f"{name} is declared in {declared[name]} and {group.__name__}"
            declared[name] = group.__name__
    assert sorted(declared) == sorted(JobRow.model_fields) and "__annotations__" not in vars(JobRow)
    assert {"energy_j", "energy_source", "avg_power_w", "net_energy_j"} <= set(EnergyColumns.model_fields)
    lows = {f"{metric}_{low}" for metric in ("psnr", "ssim", "vmaf") for low in ("min", "p1", "p5")}
    assert set(QualityColumns.model_fields) == {"psnr", "ssim", "vmaf", "vmaf_model", "vmaf_hmean", *lows, "vmaf_neg",
                                                "vmaf_phone", "quality_scaler", "quality_pix_fmt", "quality_frames"}


def test_types_and_units():
    schema = arrow_schema()
    assert schema.field("wall_s").type == pa.float64()
    assert schema.field("frames").type == pa.int64()
    assert schema.field("started_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("energy_j").metadata[b"unit"] == b"J"
    assert schema.field("max_rss_bytes").metadata[b"unit"] == b"bytes"


def test_the_configuration_key_and_its_label():
    assert CONFIG_COLUMNS == ("input_name", "encoder", "preset", "rate_control", "crf", "qp",
                              "target_bitrate_kbps", "output_width", "output_height", "pix_fmt")
    assert set(CONFIG_COLUMNS) - set(CURVE_COLUMNS) == {"crf", "qp", "target_bitrate_kbps"}
    x264 = {"input_name": "clip", "encoder": "libx264", "preset": "veryfast", "rate_control": "crf", "crf": 24,
            "output_width": 1280, "output_height": 720}
    assert config_label(x264) == "libx264 veryfast crf 24 1280x720"
    assert config_label(x264, with_input=True) == "clip libx264 veryfast crf 24 1280x720"
    assert config_label({"encoder": "libx264", "rate_control": "cbr", "target_bitrate_kbps": 1500.0,
                         "preset": float("nan")}) == "libx264 cbr 1500k"
    assert config_label({"encoder": "libsvtav1", "preset": "10", "rate_control": "crf"}) == "libsvtav1 10 crf"
    # 8-bit 4:2:0, what every job encoded before formats could be chosen, goes unsaid; 10-bit is said.
    assert config_label(x264 | {"pix_fmt": "yuv420p"}) == "libx264 veryfast crf 24 1280x720"
    assert config_label(x264 | {"pix_fmt": "yuv420p10le"}) == "libx264 veryfast crf 24 1280x720 yuv420p10le"


@pytest.mark.parametrize("source", ["estimated", "estimated+nvml"])
def test_ssim_convention_and_estimates_are_documented(source: str):
    text = DOCS.read_text()
    assert "float_ssim" in text and "0.03" in text
    assert f"`{source}`" in text


def test_docs_table_matches_the_schema():
    """docs/schema.md embeds the generated table; regenerate with `ffwatt results schema`."""
    assert schema_markdown() in DOCS.read_text()
