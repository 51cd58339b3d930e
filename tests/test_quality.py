"""The quality pass against real FFmpeg on tiny clips: every frame kept, the row's figures what numpy
makes of them, per-frame VMAF as ffmpeg-quality-metrics computes it, 10-bit encodes scored at 10 bits."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ffmpeg_quality_metrics import FfmpegQualityMetrics

from ffwatt.fleet.protocol import decode_frames, encode_frames
from ffwatt.frames import frames_from_bytes, frames_markdown, frames_table, frames_to_bytes, read_frames
from ffwatt.jobs import Job, expand
from ffwatt.results import read_results
from ffwatt.settings import REPO, load_settings
from ffwatt.validation import parse_campaign
from tasks.generate import Reference, prepare_reference
from tasks.quality import QualityScores, score, vmaf_models
from tasks.record import build_row, record_job
from tasks.transcode import EncodeResult, encode

FPS, SECONDS = 25, 1
MODELS = Path(FfmpegQualityMetrics.get_default_vmaf_model_path()).parent  # its own copies of Netflix's models


def campaign(**matrix: object) -> dict:
    return {
        "name": "q",
        "inputs": [{"name": "tiny", "source": "testsrc2", "size": "160x90", "fps": FPS, "duration_s": SECONDS}],
        "matrix": {"encoders": [{"name": "libx264", "presets": ["ultrafast"]}],
                   "rate_control": [{"mode": "crf", "values": [32]}]} | matrix,
        "keep_outputs": True,
        "quality_models": ["neg", "phone"],
    }


def scored(data: dict) -> list[tuple[Job, Reference, EncodeResult, QualityScores]]:
    settings = load_settings()
    out = []
    for job in expand(parse_campaign(data)):
        reference = prepare_reference(job.input, "ffv1", settings)
        encoded = encode(job, reference, "run-1", attempt=1, settings=settings)
        out.append((job, reference, encoded, score(job, reference, Path(encoded.output_path), settings)))
    return out


def fqm_frames(reference: Reference, encoded: EncodeResult, ffmpeg: str, model: str, *, params: tuple[str, ...] = (),
               ten_bit: bool = False) -> pd.DataFrame:
    """ffmpeg-quality-metrics' per-frame VMAF and PSNR of the same pair, with Netflix's model file."""
    metrics = FfmpegQualityMetrics(reference.path, encoded.output_path, ffmpeg_path=ffmpeg, scaling_algorithm="bicubic")
    found = metrics.calculate(["vmaf", "psnr"], {"model_path": str(MODELS / f"{model}.json"),
                                                 "model_params": list(params), "n_threads": 0, "n_subsample": 1,
                                                 "features": [], "ten_bit": ten_bit})
    vmaf = pd.DataFrame(found["vmaf"]).sort_values("n")
    psnr = pd.DataFrame(found["psnr"]).sort_values("n")
    return pd.DataFrame({"vmaf": vmaf["vmaf"].to_numpy(), "psnr_y": psnr["psnr_y"].to_numpy(),
                         "psnr_u": psnr["psnr_u"].to_numpy(), "psnr_v": psnr["psnr_v"].to_numpy()})


@pytest.fixture(scope="module")
def x264(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[Job, Reference, EncodeResult,
                                                                             QualityScores]]]:
    """One encode at the reference's size and one at half its size, each scored and recorded."""
    root = tmp_path_factory.mktemp("quality")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FFWATT_HOME", str(root / "home"))
        patch.setenv("FFWATT_RESULTS_DIR", str(root / "results"))
        jobs = scored(campaign(resolutions=["source", "80x46"]))
        for job, reference, encoded, quality in jobs:
            record_job(build_row(job=job, run_id="run-1", node="n", reference=reference, encoded=encoded,
                                 quality=quality), quality.frames)
    return root / "results", jobs


def test_every_frame_is_kept_and_the_row_pools_exactly_those(x264) -> None:
    results, _ = x264
    # One pandas call for the run's frames, as docs/schema.md shows it.
    frames = pd.read_parquet(results / "_frames", filters=[("run_id", "==", "run-1")])
    rows = read_results(results, run_id="run-1").set_index("job_id")
    assert sorted(frames["job_id"].unique()) == sorted(rows.index)
    for job_id, mine in frames.groupby("job_id"):
        row = rows.loc[job_id]
        assert len(mine) == row.frames == row.quality_frames == FPS * SECONDS
        assert mine["frame"].tolist() == list(range(FPS * SECONDS))
        np.testing.assert_allclose(mine["pts_s"], np.arange(FPS * SECONDS) / FPS, atol=1e-9)
        for metric in ("vmaf", "psnr", "ssim"):
            values = mine[metric].to_numpy()
            assert row[f"{metric}_p5"] == pytest.approx(np.percentile(values, 5), abs=1e-9)
            assert row[f"{metric}_p1"] == pytest.approx(np.percentile(values, 1), abs=1e-9)
            assert row[f"{metric}_min"] == pytest.approx(values.min(), abs=1e-9)
            # The mean is libvmaf's pooled one, as ever: the file's values are its per-frame log, to 6 decimals.
            assert row[metric] == pytest.approx(values.mean(), abs=1e-5)
        vmaf = mine["vmaf"].to_numpy()
        assert row.vmaf_hmean == pytest.approx(len(vmaf) / np.sum(1.0 / (vmaf + 1.0)) - 1.0, abs=1e-9)
        assert row.vmaf_p5 < row.vmaf and row.vmaf_min <= row.vmaf_p1 <= row.vmaf_p5
        assert row.vmaf_neg == pytest.approx(mine["vmaf_neg"].mean(), abs=1e-5)
        assert row.vmaf_phone == pytest.approx(mine["vmaf_phone"].mean(), abs=1e-5)
        assert mine[["psnr_u", "psnr_v"]].notna().all().all()
        assert row.vmaf_model == "vmaf_v0.6.1" and row.quality_pix_fmt == "yuv420p" and row.pix_fmt == "yuv420p"
    half = rows[rows.output_width == 80].iloc[0]
    assert half.quality_scaler == "bicubic" and pd.isna(rows[rows.output_width == 160].iloc[0].quality_scaler)


def test_per_frame_scores_match_ffmpeg_quality_metrics(x264, ffmpeg: str) -> None:
    """The same pair through an independent tool, with Netflix's model files instead of libvmaf's built-in
    versions, and its own bicubic scaling of the half-size encode: every frame within 0.01."""
    _, jobs = x264
    for _, reference, encoded, quality in jobs:
        assert quality.frames is not None
        ours = pd.DataFrame(quality.frames.model_dump())
        default = fqm_frames(reference, encoded, ffmpeg, "vmaf_v0.6.1")
        np.testing.assert_allclose(ours["vmaf"], default["vmaf"], atol=0.01)
        for column, theirs in (("psnr", "psnr_y"), ("psnr_u", "psnr_u"), ("psnr_v", "psnr_v")):
            np.testing.assert_allclose(ours[column], default[theirs], atol=0.01)
        neg = fqm_frames(reference, encoded, ffmpeg, "vmaf_v0.6.1neg")
        np.testing.assert_allclose(ours["vmaf_neg"], neg["vmaf"], atol=0.01)
        phone = fqm_frames(reference, encoded, ffmpeg, "vmaf_v0.6.1", params=("enable_transform=true",))
        np.testing.assert_allclose(ours["vmaf_phone"], phone["vmaf"], atol=0.01)
        assert (ours["vmaf_phone"] > ours["vmaf"]).all()  # the phone's small screen hides more


def test_a_10_bit_encode_is_10_bit_and_scored_at_10_bits(ffwatt_env: Path, ffmpeg: str) -> None:
    ((job, reference, encoded, quality),) = scored(campaign(
        encoders=[{"name": "libx265", "presets": ["ultrafast"]}], pix_fmts=["yuv420p10le"]))
    assert reference.pix_fmt == "yuv420p" and "-pix_fmt yuv420p10le" in (encoded.ffmpeg_cmd or "")
    probed = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                             "stream=codec_name,profile,pix_fmt", "-of", "json", encoded.output_path],
                            capture_output=True, text=True, check=True)
    (stream,) = json.loads(probed.stdout)["streams"]
    assert stream == {"codec_name": "hevc", "profile": "Main 10", "pix_fmt": "yuv420p10le"}
    assert quality.quality_pix_fmt == "yuv420p10le" and quality.quality_frames == FPS * SECONDS
    # ffmpeg-quality-metrics' ten_bit converts both to yuv420p10le first, as ffwatt does for a 10-bit encode.
    assert quality.frames is not None
    theirs = fqm_frames(reference, encoded, ffmpeg, "vmaf_v0.6.1", ten_bit=True)
    np.testing.assert_allclose(quality.frames.vmaf or [], theirs["vmaf"], atol=0.01)
    row = build_row(job=job, run_id="run-1", node="n", reference=reference, encoded=encoded, quality=quality)
    assert row.pix_fmt == "yuv420p10le" and "yuv420p10le" in job.label


def test_the_model_is_the_screens(ffwatt_env: Path) -> None:
    (job,) = expand(parse_campaign(campaign()))
    sizes = {(3840, 2160): "vmaf_4k_v0.6.1", (4096, 1716): "vmaf_4k_v0.6.1", (1920, 1080): "vmaf_v0.6.1",
             (1280, 720): "vmaf_v0.6.1"}
    for (width, height), model in sizes.items():
        reference = Reference(name="r", path="/r.mkv", width=width, height=height, fps=25, frames=1)
        models = vmaf_models(job, reference)
        assert models["vmaf"] == f"version={model}" and models["vmaf_neg"] == f"version={model}neg"
        assert models["vmaf_phone"].startswith("version=vmaf_v0.6.1")  # the 4K model has no phone transform
    chosen = job.model_copy(update={"quality_models": ["vmaf_4k_v0.6.1"]})
    small = Reference(name="r", path="/r.mkv", width=160, height=90, fps=25, frames=1)
    assert vmaf_models(chosen, small) == {"vmaf": "version=vmaf_4k_v0.6.1"}


def test_frames_travel_home_as_the_same_file(x264) -> None:
    results, jobs = x264
    job, _, _, quality = jobs[0]
    assert quality.frames is not None
    table = frames_table(quality.frames, job_id=job.job_id)
    came_home = frames_from_bytes(decode_frames(json.loads(encode_frames(frames_to_bytes(table)))))
    assert came_home.equals(table)
    written = read_frames(results, run_id="run-1", job_id=job.job_id)
    assert written.drop_columns(["campaign", "run_id"]).equals(table)


def test_frames_columns_are_documented() -> None:
    assert frames_markdown() in (REPO / "docs" / "schema.md").read_text()


@pytest.mark.e2e
def test_a_campaign_scores_2160p_with_the_4k_model_and_keeps_every_frame(prefect_server: dict[str, str],
                                                                        tmp_path: Path) -> None:
    """Through `ffwatt campaign run`: a short generated 2160p clip is scored with the 4K model, a 1080p one
    with the default model, both with NEG beside; a 10-bit libx265 encode comes out 10-bit; every scored
    job has its frames file, one row a frame."""
    import os

    import yaml

    from tests.conftest import ffwatt_cli

    spec = {
        "name": "models",
        "inputs": [{"name": "uhd", "source": "testsrc2", "size": "3840x2160", "fps": 10, "duration_s": 0.3},
                   {"name": "hd", "source": "testsrc2", "size": "1920x1080", "fps": 10, "duration_s": 0.3}],
        "matrix": {"encoders": [{"name": "libx264", "presets": ["ultrafast"]},
                                {"name": "libx265", "presets": ["ultrafast"], "pix_fmts": ["yuv420p10le"]}],
                   "rate_control": [{"mode": "crf", "values": [30]}]},
        "quality_models": ["neg"], "keep_outputs": True, "idle_baseline_s": 0,
    }
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(spec))
    results = tmp_path / "results"
    env = {**os.environ, **prefect_server, "FFWATT_HOME": str(tmp_path / "home"), "FFWATT_RESULTS_DIR": str(results)}
    done = subprocess.run([ffwatt_cli(), "campaign", "run", str(path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = read_results(results, campaign="models")
    assert len(rows) == 4 and (rows.status == "ok").all()
    assert dict(zip(rows.input_name, rows.vmaf_model)) == {"uhd": "vmaf_4k_v0.6.1", "hd": "vmaf_v0.6.1"}
    assert rows.vmaf_neg.notna().all()
    frames = pd.read_parquet(results / "_frames" / "campaign=models")
    counts = frames.groupby("job_id").size()
    assert counts.to_dict() == dict(zip(rows.job_id, rows.frames)) and set(counts) == {3}
    for job in rows[rows.encoder == "libx265"].itertuples():
        probed = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                                 "stream=pix_fmt", "-of", "csv=p=0", job.output_path], capture_output=True, text=True,
                                check=True)
        assert probed.stdout.strip() == "yuv420p10le" and job.pix_fmt == job.quality_pix_fmt == "yuv420p10le"
