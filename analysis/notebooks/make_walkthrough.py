"""Regenerate walkthrough.ipynb: ``python analysis/notebooks/make_walkthrough.py``.

The notebook is generated rather than hand-edited so its cells stay small, reviewable
and free of stored outputs.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", "# A run, from Parquet to decisions\n\nLoads a run of the campaign named below from `FFWATT_RESULTS_DIR`, "
           "or else from this repository's `results/` (wherever Jupyter started the kernel), then: efficiency per "
           "configuration, Pareto front, BD-rate table, the power model and one job's series. Figures computed "
           "from **estimated** energy are flagged in every table (`energy_estimated`) and marked `*`; a figure a "
           "run doesn't have reads `-`. With no run of that campaign yet (a fresh clone: `make demo` makes one) it "
           "walks through a **synthetic** example run instead, and says so."),
    ("parameters", "campaign = 'quick'  # the demo's campaign (make demo); name another to read its runs\n"
                   "run = 'latest'  # or a run id (`ffwatt results runs` lists them)"),
    ("code", "import tempfile\nfrom pathlib import Path\n\n"
             "import pandas as pd\nfrom IPython.display import Image, display\n\n"
             "from analysis import (NotComputable, bd_table, config_efficiency, fit_power_model, job_efficiency,\n"
             "                      load_results, md_number, notebook_results_dir, pareto_front, resolve_run,\n"
             "                      run_summary, shown)\n"
             "from analysis.plots import figure_png, pareto_plot\n"
             "from ffwatt.results import list_runs\n\n"
             "results_dir = notebook_results_dir()\n"
             "if results_dir.is_dir() and list_runs(results_dir, campaign):\n"
             "    campaign, run_id = resolve_run(results_dir, run, campaign)\n"
             "    print(f'campaign {campaign}, run {run_id}, under {results_dir}')\n"
             "else:\n"
             "    from analysis.synthetic import write_synthetic_run\n\n"
             "    others = sorted({r.campaign for r in list_runs(results_dir)}) if results_dir.is_dir() else []\n"
             "    hint = f\" (it has: {', '.join(others)}; name one above)\" if others else ' (make demo makes one)'\n"
             "    print(f'No run of campaign {campaign!r} under {results_dir}{hint}'\n"
             "          + '.\\nSHOWING A SYNTHETIC EXAMPLE RUN: made-up rows to walk through, not measurements.')\n"
             "    results_dir = Path(tempfile.mkdtemp(prefix='ffwatt-example-'))\n"
             "    campaign, run_id = write_synthetic_run(results_dir, campaign='synthetic-example', run_id='example')\n"
             "jobs = job_efficiency(load_results(results_dir, campaign=campaign, run_id=run_id))\n"
             "print(f'{len(jobs)} jobs, {int(jobs.energy_estimated.sum())} with estimated energy')\n"
             "summary = run_summary(results_dir, campaign, run_id)\n"
             "shown(pd.DataFrame([facts.model_dump(exclude={'ffmpeg_configuration', 'gpus'})\n"
             "                    for facts in summary.nodes.values()])) if summary else 'no summary yet'"),
    ("md", "## Efficiency per configuration\n\nMeans over the ok repetitions; `_ci_low`/`_ci_high` are 95 % "
           "Student-t intervals (need ≥ 2 repetitions: `-` with one)."),
    ("code", "configs = config_efficiency(jobs)\n"
             "cols = ['encoder', 'preset', 'rate_control', 'crf', 'target_bitrate_kbps', 'n', 'bitrate_kbps', 'vmaf',\n"
             "        'energy_j', 'energy_j_ci_low', 'energy_j_ci_high', 'joules_per_frame', 'qoe_pixels_per_joule',\n"
             "        'energy_estimated']\n"
             "shown(configs[[c for c in cols if c in configs.columns]])"),
    ("md", "## Pareto front: energy (min) vs quality (max), per input"),
    ("code", "ok = configs[configs.n > 0]\n"
             "quality = 'vmaf' if ok['vmaf'].notna().any() else 'psnr'\n"
             "front = pareto_front(ok, {'energy_j': 'min', quality: 'max'})\n"
             "display(Image(figure_png(pareto_plot(front, 'energy_j', quality, title='energy vs quality'))))\n"
             "shown(front[front.pareto][['input_name', 'encoder', 'preset', 'crf', 'energy_j', quality,\n"
             "                           'energy_estimated']])"),
    ("md", "## Bjøntegaard deltas\n\n`bd_rate_pct` uses PCHIP (VCEG-AL22 / JVET CTC), `_cubic` the VCEG-M33 "
           "polynomial. BD-energy is the same with joules in place of bitrate. A curve needs ≥ 4 rate points; "
           "`note` says why a row couldn't be computed."),
    ("code", "bd = bd_table(ok, quality=quality)\nshown(bd) if not bd.empty else 'fewer than two curves to compare'"),
    ("md", "## Power model\n\nRidge regression on encoder, preset, log pixels, log fps, log bitrate; k-fold CV "
           "error below. It refuses to predict outside the fitted encoders/presets and ranges."),
    ("code", "try:\n    model = fit_power_model(jobs)\n"
             "    display(shown(pd.DataFrame([vars(s) for s in model.cv])))\n"
             "    print('fitted on estimated energy:', model.energy_estimated, '| ranges:', model.ranges)\n"
             "    display(shown(model.predict(jobs[jobs.status == 'ok'].head(3))))\n"
             "except NotComputable as exc:\n    print('power model not fitted:', exc)"),
    ("md", "## One job's series\n\nBeside each row, under `results/_series/`, are the series of the job's node over "
           "its encode ± 2 s, once a second: energy counters and power (measured and estimated apart), CPU "
           "utilisation, GPUs, the job's own FFmpeg progress. `series_energy_j` is what their counters gained over "
           "the encode, `series_energy_gap` its relative difference from the row's `energy_j` (within 2 % for jobs "
           "of 30 s or more); `series_energy_source` keeps an estimate labelled estimated."),
    ("code", "from analysis import load_series, power_over_time\nfrom analysis.plots import power_plot\n"
             "from ffwatt.schema import is_estimated\n\n"
             "job = jobs[jobs.status == 'ok'].sort_values('wall_s').iloc[-1]  # the longest\n"
             "series = load_series(results_dir, campaign=campaign, run_id=run_id, job_id=job.job_id)\n"
             "mark = '*' if is_estimated(job.energy_source) else ''\n"
             "gap = '-' if pd.isna(job.series_energy_gap) else md_number(100 * job.series_energy_gap, 2) + ' %'\n"
             "print(f'job {job.job_id}: {len(series)} samples (source: {job.series_source or \"none\"}); '\n"
             "      f'energy {md_number(job.energy_j)}{mark} J, '\n"
             "      f'from its series {md_number(job.series_energy_j)}{mark} J '\n"
             "      f'({job.series_energy_source or \"no series\"}), gap {gap} over {md_number(job.wall_s)} s'\n"
             "      + ('  (* estimated)' if mark else ''))\n"
             "if series.empty:\n    print('no series for this job:', job.series_missing or 'none were written')\n"
             "else:\n"
             "    display(Image(figure_png(power_plot(power_over_time(series), by='job', title='power over time'))))\n"
             "    display(shown(series.pivot_table(index='t_s', columns='metric', values='value', aggfunc='sum')))"),
]


def _cell(kind: str, source: str) -> nbformat.NotebookNode:
    if kind == "md":
        return new_markdown_cell(source)
    # "parameters": the cell papermill (`papermill -p campaign NAME`) and readers change.
    return new_code_cell(source, metadata={"tags": ["parameters"]} if kind == "parameters" else {})


def build() -> nbformat.NotebookNode:
    nb = new_notebook(cells=[_cell(kind, src) for kind, src in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


if __name__ == "__main__":
    target = Path(__file__).with_name("walkthrough.ipynb")
    nbformat.write(build(), target)
    print(target)
