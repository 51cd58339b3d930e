"""The batch protocol: the names and payloads the master's dispatcher and a node's batch share.

A campaign on the fleet is one ``node-batch/<pool>`` flow run per node, sent to that
node's own work queue. A batch sends home, as table artifacts of its own flow run,
first its node's facts and idle baseline, then each job's row as soon as the job
ends, a scored job's per-frame scores just before its row. That it is alive is its
node's workers' heartbeats (:mod:`ffwatt.fleet.nodes`). Both sides import these names, so they can't drift.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from ffwatt.campaign import Campaign
from ffwatt.fleet.nodes import NodeRecord
from ffwatt.nodefacts import IdleBaseline, NodeFacts
from ffwatt.schema import JobRow

__all__ = [
    "FACTS_ARTIFACT_PREFIX",
    "FRAMES_ARTIFACT_PREFIX",
    "ROW_ARTIFACT_PREFIX",
    "BatchParameters",
    "BatchState",
    "NodeReport",
    "Poll",
    "batch_deployment",
    "decode_frames",
    "decode_report",
    "decode_row",
    "decode_table",
    "encode_frames",
    "encode_report",
    "encode_row",
    "facts_artifact_key",
    "frames_artifact_key",
    "row_artifact_key",
]

ROW_ARTIFACT_PREFIX = "ffwatt-row-"
FACTS_ARTIFACT_PREFIX = "ffwatt-node-"
FRAMES_ARTIFACT_PREFIX = "ffwatt-frames-"


class BatchParameters(BaseModel):
    """What the dispatcher sends a batch: the campaign, which of its jobs, in which run, and how
    many times each was sent before (a job lost with its node counts an attempt)."""

    campaign: Campaign
    job_ids: list[str]
    run_id: str
    attempts: dict[str, int]


class NodeReport(BaseModel):
    """What a batch says about its node before its first job."""

    facts: NodeFacts
    idle_baseline: IdleBaseline | None


@dataclass(frozen=True)
class BatchState:
    """A batch flow run's state, as much of it as dispatch needs."""

    name: str  # Prefect's state type: SCHEDULED, PENDING, RUNNING, COMPLETED, FAILED, CRASHED, ...
    message: str = ""

    @property
    def final(self) -> bool:
        return self.name in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")

    @property
    def running(self) -> bool:
        return self.name == "RUNNING"


@dataclass
class Poll:
    """What changed since the last poll: batch states, new rows and node reports, and (every few
    polls) the nodes with their liveness."""

    states: dict[UUID, BatchState] = field(default_factory=dict)
    rows: list[JobRow] = field(default_factory=list)
    reports: list[NodeReport] = field(default_factory=list)
    nodes: list[NodeRecord] | None = None


def batch_deployment(pool: str) -> str:
    return f"node-batch/{pool}"


def row_artifact_key(job_id: str) -> str:
    return ROW_ARTIFACT_PREFIX + job_id


def facts_artifact_key(node: str) -> str:
    # Artifact keys take lowercase letters, digits and dashes only.
    return FACTS_ARTIFACT_PREFIX + re.sub(r"[^a-z0-9-]", "-", node.lower())


def frames_artifact_key(run_id: str, job_id: str) -> str:
    # A job has the same id in every run: the run's id makes the key this run's.
    return FRAMES_ARTIFACT_PREFIX + re.sub(r"[^a-z0-9-]", "-", f"{run_id}-{job_id}".lower())


def encode_frames(parquet: bytes) -> str:
    """A job's frames file (its Parquet bytes, zstd-compressed: 50 to 70 bytes a frame) as a table artifact."""
    return json.dumps([{"frames_parquet_base64": base64.b64encode(parquet).decode("ascii")}])


def decode_frames(data: Any) -> bytes:
    (record,) = decode_table(data)
    return base64.b64decode(record["frames_parquet_base64"])


def encode_row(row: JobRow) -> str:
    return json.dumps([json.loads(row.model_dump_json())])


def encode_report(report: NodeReport) -> str:
    return json.dumps([{"report": report.model_dump_json()}])


def decode_table(data: Any) -> list[dict[str, Any]]:
    """A table artifact's records, whether the API returned them as JSON text or parsed."""
    return json.loads(data) if isinstance(data, str) else list(data or [])


def decode_row(record: dict[str, Any]) -> JobRow:
    return JobRow.model_validate(record)


def decode_report(record: dict[str, Any]) -> NodeReport:
    return NodeReport.model_validate_json(record["report"])
