from pathlib import Path

import pyarrow as pa

from ffwatt.schema import JobRow, arrow_schema, schema_markdown

DOCS = Path(__file__).resolve().parent.parent / "docs" / "schema.md"

REQUIRED = """campaign run_id job_id repetition node input_name input_width input_height input_fps
input_frames encoder preset rate_control crf target_bitrate_kbps output_width output_height status error
attempts started_at ended_at wall_s cpu_user_s cpu_sys_s max_rss_bytes frames encode_fps speed output_bytes
bitrate_kbps dropped_frames psnr ssim vmaf energy_j energy_source joules_per_frame ffmpeg_version ffmpeg_cmd
reference_path output_path""".split()


def test_every_promised_column_is_in_the_schema():
    names = arrow_schema().names
    assert [c for c in REQUIRED if c not in names] == []
    assert names == list(JobRow.model_fields)


def test_types_and_units():
    schema = arrow_schema()
    assert schema.field("wall_s").type == pa.float64()
    assert schema.field("frames").type == pa.int64()
    assert schema.field("started_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("energy_j").metadata[b"unit"] == b"J"
    assert schema.field("max_rss_bytes").metadata[b"unit"] == b"bytes"


def test_docs_table_matches_the_schema():
    """docs/schema.md embeds the generated table; regenerate with `ffwatt results schema`."""
    assert schema_markdown() in DOCS.read_text()
