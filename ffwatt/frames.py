"""A job's per-frame quality scores, beside its row.

Every scored job writes one file, one row per frame scored, in presentation order::

    <results_dir>/_frames/campaign=<name>/run_id=<run>/job-<job_id>.parquet

with the columns of :func:`frames_schema`. As with job rows, ``campaign`` and ``run_id`` are
the directory names, not columns inside the files, so ``pandas.read_parquet`` of
``results/_frames`` (or of one run's directory) reads them with Hive partitioning and no
clash; the leading ``_`` keeps the files out of the job table. The row links to its file
by the same names and says how many frames it holds (``quality_frames``).

The row's pooled figures (``vmaf_p5``, ``vmaf_min``, ``vmaf_hmean``, ...) are computed here,
by :func:`pooled`, from exactly the values written, so what numpy computes from a file is
what its row says.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from ffwatt.errors import ResultsError
from ffwatt.files import write_atomic

__all__ = [
    "FRAMES_DIR",
    "PERCENTILES",
    "SCORES",
    "FrameScores",
    "frames_from_bytes",
    "frames_markdown",
    "frames_path",
    "frames_schema",
    "frames_table",
    "frames_to_bytes",
    "pooled",
    "read_frames",
    "write_frames",
]

FRAMES_DIR = "_frames"
PERCENTILES = (1, 5)  # the low percentiles every metric's row gets: what viewers notice, not the mean
# The per-frame scores a file can hold (column -> unit, meaning); those the job didn't ask for are null.
SCORES: dict[str, tuple[str, str]] = {
    "psnr": ("dB", "Luma (Y) PSNR of the frame (libvmaf's psnr_y)."),
    "psnr_u": ("dB", "Cb (U) PSNR of the frame."),
    "psnr_v": ("dB", "Cr (V) PSNR of the frame."),
    "ssim": ("", "Luma SSIM of the frame (libvmaf's float_ssim)."),
    "vmaf": ("", "VMAF of the frame with the row's vmaf_model."),
    "vmaf_neg": ("", "VMAF NEG of the frame (the row's vmaf_neg model); null unless asked for."),
    "vmaf_phone": ("", "VMAF of the frame with vmaf_v0.6.1's phone transform; null unless asked for."),
}


class FrameScores(BaseModel):
    """One encode's per-frame scores, in presentation order: what the quality pass read from libvmaf's log
    and FFmpeg's per-frame timestamps. A score the job didn't ask for is None."""

    model_config = ConfigDict(extra="forbid")

    frame: list[int]
    pts_s: list[float]
    psnr: list[float] | None = None
    psnr_u: list[float] | None = None
    psnr_v: list[float] | None = None
    ssim: list[float] | None = None
    vmaf: list[float] | None = None
    vmaf_neg: list[float] | None = None
    vmaf_phone: list[float] | None = None

    def __len__(self) -> int:
        return len(self.frame)


def _field(name: str, kind: pa.DataType, description: str, unit: str = "", *, nullable: bool = False) -> pa.Field:
    return pa.field(name, kind, nullable=nullable, metadata={"unit": unit, "description": description})


def frames_schema() -> pa.Schema:
    """The Arrow schema of a frames file."""
    return pa.schema([
        _field("job_id", pa.string(), "The job scored (as in its row)."),
        _field("frame", pa.int64(), "Frame number in the encode, from 0, in presentation order."),
        _field("pts_s", pa.float64(), "The frame's presentation time in the encode, from its first frame "
                                      "(FFmpeg's pts x time base).", "s"),
        *(_field(name, pa.float64(), description, unit, nullable=True) for name, (unit, description) in SCORES.items()),
    ])


def frames_markdown() -> str:
    """The frames file's columns as the Markdown table kept in docs/schema.md."""
    lines = ["| column | type | unit | description |", "| --- | --- | --- | --- |"]
    for field in frames_schema():
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        lines.append(f"| `{field.name}` | {field.type} | {meta['unit'] or '-'} | {meta['description']} |")
    return "\n".join(lines) + "\n"


def frames_table(scores: FrameScores, *, job_id: str) -> pa.Table:
    """A job's frames file as a table."""
    count = len(scores)
    columns: list[pa.Array] = [pa.array([job_id] * count, pa.string()), pa.array(scores.frame, pa.int64()),
                               pa.array(scores.pts_s, pa.float64())]
    for name in SCORES:
        values = getattr(scores, name)
        columns.append(pa.nulls(count, pa.float64()) if values is None else pa.array(values, pa.float64()))
    return pa.Table.from_arrays(columns, schema=frames_schema())


def pooled(values: Sequence[float] | np.ndarray, *, harmonic: bool = False) -> dict[str, float]:
    """A metric's figures over its frames, as the row's columns take them (``min``, ``p1``, ``p5`` and,
    for VMAF, ``hmean`` as libvmaf pools it: n / sum(1 / (x + 1)) - 1)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return {}
    out = {"min": float(array.min())}
    out |= {f"p{p}": float(value) for p, value in zip(PERCENTILES, np.percentile(array, PERCENTILES))}
    if harmonic:
        out["hmean"] = float(array.size / np.sum(1.0 / (array + 1.0)) - 1.0)
    return out


def frames_path(results_dir: Path, campaign: str, run_id: str, job_id: str) -> Path:
    return Path(results_dir) / FRAMES_DIR / f"campaign={campaign}" / f"run_id={run_id}" / f"job-{job_id}.parquet"


def write_frames(results_dir: Path, campaign: str, run_id: str, table: pa.Table) -> Path:
    """Write one job's frames; written again for the same job of the same run, it replaces them."""
    job_id = table.column("job_id")[0].as_py() if table.num_rows else None
    if job_id is None:
        raise ValueError("a frames table without frames has no job to be written for")
    path = frames_path(results_dir, campaign, run_id, job_id)
    try:
        write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    except OSError as exc:
        raise ResultsError(f"can't write a job's frames to {path}: {exc.strerror}; check FFWATT_RESULTS_DIR") from exc
    return path


def frames_to_bytes(table: pa.Table) -> bytes:
    """A frames table as the bytes of its Parquet file (what a node sends home)."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def frames_from_bytes(data: bytes) -> pa.Table:
    """The table :func:`frames_to_bytes` made, checked against the frames schema."""
    try:
        table = pq.read_table(io.BytesIO(data))
        return table.select(frames_schema().names).cast(frames_schema())
    except (pa.ArrowException, KeyError) as exc:
        raise ResultsError(f"a frames file that came home can't be read: {exc}") from exc


_PARTITIONING = ds.partitioning(pa.schema([("campaign", pa.string()), ("run_id", pa.string())]), flavor="hive")


def read_frames(results_dir: Path, *, campaign: str | None = None, run_id: str | Sequence[str] | None = None,
                job_id: str | Sequence[str] | None = None, columns: Sequence[str] | None = None) -> pa.Table:
    """Frames of the runs and jobs asked for, with ``campaign`` and ``run_id`` from the directories;
    each argument narrows by a pyarrow filter (other runs' directories aren't opened)."""
    root = Path(results_dir) / FRAMES_DIR
    if not root.is_dir():
        raise ResultsError(f"no frames under {root}: none of these runs kept per-frame scores (ffwatt keeps them "
                           "since schema 7, for jobs with quality); run a campaign")
    where: Any = None
    for name, wanted in (("campaign", campaign), ("run_id", run_id), ("job_id", job_id)):
        if wanted is None:
            continue
        values = [wanted] if isinstance(wanted, str) else list(wanted)
        condition = ds.field(name) == values[0] if len(values) == 1 else ds.field(name).isin(values)
        where = condition if where is None else where & condition
    schema = pa.schema([*frames_schema(), pa.field("campaign", pa.string()), pa.field("run_id", pa.string())])
    try:
        dataset = ds.dataset(str(root), format="parquet", partitioning=_PARTITIONING, schema=schema)
        return dataset.to_table(columns=list(columns) if columns else None, filter=where)
    except (pa.ArrowException, OSError) as exc:
        raise ResultsError(f"can't read the frames under {root}: {exc}") from exc
