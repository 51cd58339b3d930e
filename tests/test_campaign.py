from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ffwatt.errors import CampaignError, EncoderUnavailable
from ffwatt.hardware.ffmpeg import probe_build
from ffwatt.jobs import expand
from ffwatt.settings import REPO
from ffwatt.validation import check_runnable, load_campaign, parse_campaign


def base() -> dict:
    return {
        "name": "t",
        "inputs": [{"name": "a", "source": "testsrc2", "size": "320x240", "fps": 24, "duration_s": 2}],
        "matrix": {
            "encoders": [{"name": "libx264", "presets": ["veryfast", "medium"]}, "libx265"],
            "rate_control": [{"mode": "crf", "values": [20, 30]}, {"mode": "cbr", "bitrates_kbps": [500]}],
            "resolutions": ["source", "160x120"],
        },
        "repetitions": 2,
    }


def test_expansion_is_the_full_product_repetition_major():
    jobs = expand(parse_campaign(base()))
    # (2 presets + 1 default preset) x 3 rate points x 2 sizes x 2 repetitions
    assert len(jobs) == 3 * 3 * 2 * 2
    half = len(jobs) // 2
    assert {j.repetition for j in jobs[:half]} == {1} and {j.repetition for j in jobs[half:]} == {2}
    assert [j.config_id for j in jobs[:half]] == [j.config_id for j in jobs[half:]]
    assert len({j.job_id for j in jobs}) == len(jobs)
    x265 = [j for j in jobs if j.encoder == "libx265"]
    assert {j.preset for j in x265} == {"medium"}  # the profile's default preset
    cbr = [j for j in jobs if j.rate_control == "cbr"]
    assert {j.target_bitrate_kbps for j in cbr} == {500} and all(j.crf is None for j in cbr)


def test_job_ids_are_stable_and_depend_only_on_what_the_job_does():
    first = expand(parse_campaign(base()))
    renamed = base() | {"name": "other", "description": "x"}
    renamed["matrix"]["encoders"] = renamed["matrix"]["encoders"][:1]  # fewer configs around it
    again = {j.job_id: j for j in expand(parse_campaign(renamed))}
    shared = [j for j in first if j.encoder == "libx264"]
    assert shared and all(j.job_id in again for j in shared)
    assert first[0].job_id == expand(parse_campaign(base()))[0].job_id


def test_8_bit_jobs_keep_the_ids_they_had_before_formats_could_be_chosen():
    # Ids of base()'s first and last jobs as ffwatt gave them before pix_fmts existed (commit eeafb1f).
    jobs = expand(parse_campaign(base()))
    assert (jobs[0].job_id, jobs[0].config_id, jobs[-1].job_id) == ("1610fcf03c905d4d", "17b6741e4ef30721",
                                                                     "c3aa18459585f298")
    said = base()
    said["matrix"]["pix_fmts"] = ["yuv420p"]
    assert [j.job_id for j in expand(parse_campaign(said))] == [j.job_id for j in jobs]


def test_pixel_formats_multiply_the_encoders_that_take_them():
    data = base()
    data["matrix"]["encoders"] = [{"name": "libx264", "pix_fmts": ["yuv420p"]}, "libx265", "libsvtav1"]
    data["matrix"]["pix_fmts"] = ["yuv420p", "yuv420p10le"]
    data["repetitions"] = 1
    jobs = expand(parse_campaign(data))
    formats = {(j.encoder, j.pix_fmt) for j in jobs}
    assert formats == {("libx264", "yuv420p"), ("libx265", "yuv420p"), ("libx265", "yuv420p10le"),
                       ("libsvtav1", "yuv420p"), ("libsvtav1", "yuv420p10le")}
    assert len(jobs) == 5 * 3 * 2 and len({j.config_id for j in jobs}) == len(jobs)


def test_a_pixel_format_the_encoder_cant_take_is_refused_with_those_it_can():
    data = base()
    data["matrix"]["pix_fmts"] = ["yuv420p10le"]
    assert _error(data) == ("c.yaml: matrix: libx264 can't encode yuv420p10le (matrix.pix_fmts); it takes: yuv420p. "
                            "An encoder's own pix_fmts overrides the matrix's")
    data["matrix"]["encoders"] = [{"name": "h264_nvenc", "pix_fmts": ["yuv420p10le"]}, "hevc_nvenc"]
    assert "h264_nvenc can't encode yuv420p10le (matrix.encoders[0].pix_fmts); it takes: yuv420p" in _error(data)
    data["matrix"]["encoders"] = ["libx265"]
    data["matrix"]["pix_fmts"] = ["yuv422p10le"]
    message = _error(data)
    assert "matrix.pix_fmts[0]" in message and "'yuv420p' or 'yuv420p10le'" in message and "yuv422p10le" in message


def test_quality_models_name_one_model_for_vmaf():
    assert parse_campaign(base()).quality_models == ["auto"]
    assert parse_campaign(base() | {"quality_models": ["phone", "neg"]}).quality_models == ["auto", "phone", "neg"]
    assert parse_campaign(base() | {"quality_models": ["neg", "vmaf_4k_v0.6.1"]}).quality_models == [
        "vmaf_4k_v0.6.1", "neg"]
    assert "name one model for the vmaf column" in _error(base() | {"quality_models": ["auto", "vmaf_v0.6.1"]})
    assert "'auto', 'vmaf_v0.6.1', 'vmaf_4k_v0.6.1', 'neg' or 'phone'" in _error(base() | {"quality_models": ["4k"]})
    assert "add vmaf to quality" in _error(base() | {"quality": ["psnr"], "quality_models": ["neg"]})


def test_duplicate_configurations_run_once():
    data = base()
    data["matrix"]["encoders"] = ["libx264", "libx264"]
    data["repetitions"] = 1
    assert len(expand(parse_campaign(data))) == 3 * 2


def _error(data: dict) -> str:
    with pytest.raises(CampaignError) as info:
        parse_campaign(data, source="c.yaml")
    return str(info.value)


def test_typo_names_the_field_and_suggests_the_right_one():
    data = base()
    data["repetitons"] = data.pop("repetitions")
    message = _error(data)
    assert "unknown field 'repetitons'" in message and "did you mean 'repetitions'" in message


def test_typo_inside_an_input_suggests_from_that_model():
    data = base()
    data["inputs"][0]["duraton_s"] = data["inputs"][0].pop("duration_s")
    message = _error(data)
    assert "inputs[0]" in message and "did you mean 'duration_s'" in message


def test_bad_preset_lists_the_allowed_ones():
    data = base()
    data["matrix"]["encoders"][0]["presets"] = ["medum"]
    message = _error(data)
    assert "'medum' is not a preset of libx264" in message and "veryslow" in message
    assert "matrix.encoders[0]" in message


def test_crf_out_of_range_names_value_and_range():
    data = base()
    data["matrix"]["rate_control"] = [{"mode": "crf", "values": [60]}]
    message = _error(data)
    assert "[60]" in message and "0..51" in message


def test_rate_mode_and_values_must_match():
    data = base()
    data["matrix"]["rate_control"] = [{"mode": "cbr", "values": [23]}]
    assert "needs bitrates_kbps" in _error(data)
    data["matrix"]["rate_control"] = [{"mode": "cqp", "values": [23]}]
    assert "'crf', 'qp', 'cbr' or 'vbr'" in _error(data)


def test_unsupported_rate_mode_for_encoder():
    data = base()
    data["matrix"]["encoders"] = ["libvpx-vp9"]
    data["matrix"]["rate_control"] = [{"mode": "qp", "values": [30]}]
    assert "libvpx-vp9 doesn't support rate control 'qp'" in _error(data)


def test_bad_sizes_and_sources():
    data = base()
    data["inputs"][0]["size"] = "641x360"
    assert "odd dimension" in _error(data)
    data = base()
    data["matrix"]["resolutions"] = ["720p"]
    assert "WIDTHxHEIGHT" in _error(data)
    data = base()
    data["inputs"][0]["source"] = "testsrc3"
    message = _error(data)
    assert "testsrc3" in message and "mandelbrot" in message


def test_file_inputs_resolve_relative_to_the_campaign(tmp_path: Path):
    data = base()
    data["inputs"] = [{"name": "clip", "path": "clips/a.mp4", "duration_s": 1}]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    campaign = load_campaign(path)
    assert campaign.inputs[0].path == (tmp_path / "clips/a.mp4").resolve()


def test_unreadable_and_invalid_yaml(tmp_path: Path):
    with pytest.raises(CampaignError, match="can't read campaign file"):
        load_campaign(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(CampaignError, match="not valid YAML"):
        load_campaign(bad)


def test_encoder_missing_from_this_ffmpeg_suggests_the_nearest(ffmpeg: str):
    data = base()
    data["matrix"]["encoders"] = ["libx264", "libx246", "svtav1"]
    campaign = parse_campaign(data)
    with pytest.raises(EncoderUnavailable) as info:
        check_runnable(campaign, probe_build(ffmpeg))
    message = str(info.value)
    assert "libx246 (did you mean libx26" in message and "svtav1 (did you mean libsvtav1" in message
    assert "h264_nvenc" not in message  # not the build's every encoder
    assert info.value.missing == ["libx246", "svtav1"] and "h264_nvenc" in info.value.available


def test_shipped_campaigns_validate_and_run_here(ffmpeg: str):
    for path in (REPO / "deployments" / "campaigns").glob("*.yaml"):
        campaign = load_campaign(path)
        check_runnable(campaign, probe_build(ffmpeg))
        assert expand(campaign)
    quick = load_campaign(REPO / "deployments/campaigns/quick.yaml")
    assert len(expand(quick)) >= 6 and len(quick.encoder_names()) >= 2 and quick.keep_outputs


def test_the_flow_parameter_schema_takes_a_campaign_as_written_in_yaml():
    """`prefect deployment run --params` is checked against the flow's JSON schema, not the model:
    the YAML shorthands (a bare encoder name) must pass there too."""
    import jsonschema
    from prefect.utilities.callables import parameter_schema

    from flows.campaign import campaign_flow

    schema = parameter_schema(campaign_flow.fn).model_dump_for_openapi()
    written = yaml.safe_load((REPO / "deployments/campaigns/quick.yaml").read_text())
    written["matrix"]["encoders"] = ["libx264", {"name": "libx265", "presets": ["fast"]}]
    jsonschema.validate({"campaign": written, "dispatch": "pools"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"campaign": written | {"matrix": {"encoders": [3]}}}, schema)
