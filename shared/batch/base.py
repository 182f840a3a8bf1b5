"""The Batch backend interface: what the pipeline asks of a pool of workers.

A backend runs *tasks*: a command line (``python -m scoring …``) in a fresh working
directory, with input files downloaded from blob storage before it starts
(``ResourceFile``) and result files uploaded after it ends (``OutputFile``) — exactly
the Azure Batch task model, so the local backend and the Azure Batch backend are
interchangeable. Tasks of one video belong to one backend *job* whose id is the job id.

Backends never raise for "already exists": ``submit`` is idempotent per task id, so an
activity that is retried after a crash can submit the same tasks again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.contract import EXIT_BAD_INPUT

TASK_STATES = ("pending", "running", "succeeded", "failed")


@dataclass(frozen=True)
class BlobRef:
    container: str
    name: str


@dataclass(frozen=True)
class ResourceFile:
    """Download ``blob`` to ``path`` (relative to the task's working directory) before the task."""

    blob: BlobRef
    path: str


@dataclass(frozen=True)
class OutputFile:
    """Upload ``path`` (relative to the working directory) to ``blob`` after the task.

    ``when`` is ``success`` (exit 0 only) or ``always``. The special paths ``stdout.txt`` and
    ``stderr.txt`` are the task's standard streams.
    """

    path: str
    blob: BlobRef
    when: str = "success"


@dataclass
class TaskSpec:
    id: str  # unique in the job; derives from chunk index and attempt, so resubmits are idempotent
    command: list[str]  # argv; the first element "python" means the node's Python
    resource_files: list[ResourceFile] = field(default_factory=list)
    output_files: list[OutputFile] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    kind: str = "chunk"  # chunk | train | split | scan | stitch
    chunk: int = -1  # chunk index for chunk tasks
    frames: int = 0  # frames this task scores (progress accounting)
    max_wall_s: int = 3600
    # Runs the local backend repeats itself after a retryable (not 2) exit; Azure Batch gets
    # maxTaskRetryCount 0, since it would retry exit code 2 as well (shared/batch/azure.py).
    max_retries: int = 0


@dataclass
class TaskState:
    id: str
    state: str  # one of TASK_STATES
    exit_code: int | None = None
    error: str | None = None  # a readable reason when failed
    log: str | None = None  # blob name (in `work`) of the task's stderr, when known
    frames_done: int = 0  # partial progress of a running task, when the backend can see it
    retries: int = 0  # retries the backend has made itself
    retry_error: str | None = None  # why the last of those retries was needed
    # When the task was added, started and ended (ISO 8601 UTC) and the node it ran on, when
    # the backend knows: the job page's timeline and the trace's Batch task spans.
    created: str | None = None
    started: str | None = None
    ended: str | None = None
    node: str | None = None

    @property
    def bad_input(self) -> bool:
        return self.state == "failed" and self.exit_code == EXIT_BAD_INPUT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def utc_iso(t: datetime | None = None) -> str:
    """A task timestamp as TaskState carries it: ISO 8601 UTC with milliseconds."""
    t = t or datetime.now(UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class BatchBackend(Protocol):
    """What the pipeline needs from a Batch service. Implementations: local, azure."""

    def submit(self, job_id: str, tasks: list[TaskSpec]) -> None:
        """Create the job if needed and add the tasks; ids that exist already are skipped."""

    def task_states(self, job_id: str) -> list[TaskState]:
        """Every task of the job with its state; an unknown job gives an empty list."""

    def cancel(self, job_id: str) -> None:
        """Stop the job: running tasks are killed, pending ones never start."""

    def wait_stopped(self, job_id: str, timeout: float) -> bool:
        """After ``cancel``: wait until no task of the job runs or uploads any more; False
        when ``timeout`` seconds were not enough."""

    def delete(self, job_id: str) -> None:
        """Forget the job and its tasks (after cancel or completion)."""


def chunk_task_id(chunk: int, attempt: int) -> str:
    """Task ids derive from chunk and attempt, so resubmission is idempotent."""
    assert chunk >= 0 and attempt >= 1
    return f"chunk-{chunk:05d}-a{attempt}"


def train_task_id(attempt: int) -> str:
    assert attempt >= 1
    return f"train-a{attempt}"


def split_task_id(attempt: int) -> str:
    assert attempt >= 1
    return f"split-a{attempt}"


def scan_task_id(attempt: int) -> str:
    assert attempt >= 1
    return f"scan-a{attempt}"
def stitch_task_id(attempt: int) -> str:
    assert attempt >= 1
    return f"stitch-a{attempt}"
