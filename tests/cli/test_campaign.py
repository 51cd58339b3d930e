from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.conftest import REPO, ffwatt


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return ffwatt(*args, cwd=cwd, env={"PATH": "/usr/bin:/bin"})  # FFmpeg is found without a PATH to it


def test_validate_accepts_the_demo_campaign():
    done = run("campaign", "validate", str(REPO / "deployments/campaigns/quick.yaml"))
    assert done.returncode == 0, done.stderr
    assert "campaign 'quick': 17 jobs" in done.stdout


def test_validate_refuses_a_typo_without_a_traceback(tmp_path: Path):
    data = yaml.safe_load((REPO / "deployments/campaigns/quick.yaml").read_text())
    data["matrix"]["encoders"][0]["presets"] = ["veryfats"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    done = run("campaign", "validate", str(bad))
    assert done.returncode == 2
    assert "'veryfats' is not a preset of libx264" in done.stderr and "Traceback" not in done.stderr


def test_validate_refuses_an_encoder_this_build_lacks(tmp_path: Path):
    data = yaml.safe_load((REPO / "deployments/campaigns/quick.yaml").read_text())
    data["matrix"]["encoders"].append({"name": "libfoo264"})
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    done = run("campaign", "validate", str(bad))
    assert done.returncode == 2 and "libfoo264 (did you mean libx264" in done.stderr and "not available" in done.stderr


def test_expand_lists_every_job():
    done = run("campaign", "expand", str(REPO / "deployments/campaigns/quick.yaml"))
    assert done.returncode == 0 and "17 jobs" in done.stdout
    assert done.stdout.count("libx264") == 9 and "cbr 1500k" in done.stdout


def test_results_show_without_results_says_what_to_do(tmp_path: Path):
    done = run("results", "show", cwd=tmp_path)
    assert done.returncode == 2 and "no runs under" in done.stderr


def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path: Path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: quick\nmatrix:\n  encoders: [libx264\n")
    done = run("campaign", "validate", str(bad))
    assert done.returncode == 2 and "<unicode string>" not in done.stderr
    line = done.stderr.strip()
    assert line.startswith(f"error: {bad}, line 4, column 1: not valid YAML") and len(line.splitlines()) == 1
    assert "that starts at line 3" in line


def test_a_bad_name_says_what_names_may_be(tmp_path: Path):
    data = yaml.safe_load((REPO / "deployments/campaigns/quick.yaml").read_text())
    data["name"] = "my campaign!"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    done = run("campaign", "validate", str(bad))
    assert done.returncode == 2 and "^[A-Za-z0-9]" not in done.stderr and "pattern" not in done.stderr
    assert "name: not a valid name; use 1 to 64 letters, digits, '_', '.' and '-'" in done.stderr
    assert "(got 'my campaign!')" in done.stderr


def test_an_unknown_encoder_gets_a_did_you_mean_not_every_name(tmp_path: Path):
    data = yaml.safe_load((REPO / "deployments/campaigns/quick.yaml").read_text())
    data["matrix"]["encoders"].append("libx246")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    done = run("campaign", "validate", str(bad))
    assert done.returncode == 2 and "libx246 (did you mean " in done.stderr and "libx264" in done.stderr
    assert "-encoders` lists the" in done.stderr
    assert "h264_nvenc" not in done.stderr and len(done.stderr) < 600  # was 1.4 KB: every encoder of the build


def _mpeg4(tmp_path: Path, **encoder: object) -> Path:
    spec = {"name": "mpeg4", "inputs": [{"name": "p", "source": "testsrc2", "size": "160x90", "duration_s": 1}],
            "matrix": {"encoders": [{"name": "mpeg4", **encoder}]}, "quality": []}
    path = tmp_path / "mpeg4.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_validate_refuses_what_ffmpeg_would_ignore_and_two_pass(tmp_path: Path):
    """mpeg4 at CRF 2 and CRF 200 gave two ok rows of the same video; -flags +pass1 was taken."""
    done = run("campaign", "validate", str(_mpeg4(tmp_path, rate_control=[{"mode": "crf", "values": [2, 200]}],
                                                  extra_args=["-flags", "+pass1"])))
    assert done.returncode == 2 and "-flags +pass1 is two-pass encoding" in done.stderr
    done = run("campaign", "validate", str(_mpeg4(tmp_path, rate_control=[{"mode": "crf", "values": [2, 200]}])))
    assert done.returncode == 2
    assert "mpeg4 doesn't support rate control 'crf' (FFmpeg would ignore it)" in done.stderr
    assert "it takes: qp 1..31 (-q:v), cbr (bitrates_kbps), vbr (bitrates_kbps)" in done.stderr
    done = run("campaign", "validate", str(_mpeg4(tmp_path, rate_control=[{"mode": "qp", "values": [0, 31]}])))
    assert done.returncode == 2 and "qp value(s) [0] out of range for mpeg4; allowed: 1..31" in done.stderr
    done = run("campaign", "validate", str(_mpeg4(tmp_path, rate_control=[{"mode": "qp", "values": [2, 31]}])))
    assert done.returncode == 0, done.stderr


def test_an_encoder_without_a_profile_is_held_to_the_options_its_ffmpeg_lists(tmp_path: Path):
    """ffwatt has no profile for libvpx (VP8) or ffv1: FFmpeg's `-h encoder=` says what each takes."""
    spec = {"name": "generic", "inputs": [{"name": "p", "source": "testsrc2", "size": "160x90", "duration_s": 1}],
            "matrix": {"encoders": [{"name": "libvpx", "rate_control": [{"mode": "crf", "values": [10, 70]}]},
                                    {"name": "ffv1", "presets": ["fast"],
                                     "rate_control": [{"mode": "qp", "values": [3]}]}]},
            "quality": []}
    path = tmp_path / "generic.yaml"
    path.write_text(yaml.safe_dump(spec))
    done = run("campaign", "validate", str(path))
    assert done.returncode == 2
    assert "crf value(s) [70] out of range for libvpx; this FFmpeg allows -1..63" in done.stderr
    assert ("ffv1 has no -qp option (FFmpeg's `-h encoder=ffv1` lists none), so rate control 'qp' would be "
            "ignored; it takes: cbr (bitrates_kbps), vbr") in done.stderr
    assert "ffv1 has no -preset option, so presets ['fast'] would be ignored" in done.stderr
    spec["matrix"]["encoders"] = [{"name": "libvpx", "rate_control": [{"mode": "crf", "values": [10, 40]}]}]
    path.write_text(yaml.safe_dump(spec))
    assert run("campaign", "validate", str(path)).returncode == 0


def test_results_show_warns_of_settings_that_had_no_effect(tmp_path: Path):
    from ffwatt.results import write_job_row
    from ffwatt.schema import JobRow

    for crf, job_id in ((2, "j1"), (200, "j2")):
        write_job_row(tmp_path / "results", JobRow(
            campaign="c", run_id="r", job_id=job_id, config_id=f"cfg-{crf}", repetition=1, node="n", input_name="p",
            encoder="someenc", rate_control="crf", crf=crf, status="ok", attempts=1, output_hash="ab" * 16,
            same_output_as=f"someenc crf {202 - crf}"))
    done = ffwatt("results", "show", env={"FFWATT_RESULTS_DIR": str(tmp_path / "results")})
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    assert ("warning: 2 jobs made the same video as a job with other settings: those settings had no effect "
            "(same_output_as says so in their rows): p: someenc crf 2 = someenc crf 200") in said
