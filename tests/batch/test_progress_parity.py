"""The local and the Azure Batch backend report the same progress for the same task output.

Both read a running task's stdout with the contract's one reader (``shared/contract.py``). The
same JSON-lines stream is written by a real subprocess under the local backend and held in a
task's ``stdout.txt`` on the loopback fake Batch service for the Azure backend (the real
``azure-batch`` SDK reads it from the "node"); a training task's ``step`` events count as its
progress on both.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.batch.base import TaskSpec, TaskState
from shared.batch.local import LocalBatchBackend
from shared.contract import EVENT_FRAME, EVENT_STEP, EVENT_WARNING, event_line
from tests.batch.fake_batch_api import Outcome

# A chunk task: frames 0..4, with a warning and a line that is not an event among them.
CHUNK_STREAM = "".join(line + "\n" for line in [
    event_line(EVENT_FRAME, index=0, seconds=0.5),
    event_line(EVENT_WARNING, message="lead-in not used: it is 64x36, the chunk 160x90"),
    '{"event":"frame","index":1,"seconds":0.5}',  # compact JSON is the same event
    "[libx264 @ 0x55] frame I:1 Avg QP:20.00",
    *(event_line(EVENT_FRAME, index=i, seconds=0.5) for i in (2, 3, 4)),
])
# A training task: steps 1..7 of 10 (--log-every 1), then a warning.
TRAIN_STREAM = "".join(line + "\n" for line in [
    *(event_line(EVENT_STEP, step=s, steps=10, loss=1.0 / s) for s in range(1, 8)),
    event_line(EVENT_WARNING, message="checkpoint written"),
])

# Writes the stream file given as argv[1] to stdout, then waits for argv[2] to exist.
_EMIT = (
    "import pathlib, sys, time\n"
    "sys.stdout.write(pathlib.Path(sys.argv[1]).read_text())\n"
    "sys.stdout.flush()\n"
    "while not pathlib.Path(sys.argv[2]).exists():\n"
    "    time.sleep(0.05)\n"
)


def _spec(task_id: str, kind: str, script: Path, stream: Path, release: Path) -> TaskSpec:
    return TaskSpec(id=task_id, command=["python", str(script), str(stream), str(release)],
                    kind=kind, chunk=0 if kind == "chunk" else -1,
                    frames=5 if kind == "chunk" else 0, max_wall_s=600)


def _wait_running_with_progress(read, what: str, timeout: float = 60.0) -> TaskState:
    """Poll the backend (as the monitor loop does) until the task runs and reports progress."""
    deadline = time.monotonic() + timeout
    while True:
        state = read()
        if state is not None and state.state == "running" and state.frames_done > 0:
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: no progress reported; last state {state}")
        time.sleep(0.1)


def _local_progress(store, tmp_path: Path, task_id: str, kind: str, text: str) -> int:
    script, stream, release = tmp_path / "emit.py", tmp_path / f"{task_id}.jsonl", \
        tmp_path / f"{task_id}.release"
    script.write_text(_EMIT)
    stream.write_text(text)
    backend = LocalBatchBackend(store, slots=1)
    try:
        backend.submit("parity-local", [_spec(task_id, kind, script, stream, release)])
        state = _wait_running_with_progress(
            lambda: next(iter(backend.task_states("parity-local")), None), f"local {task_id}")
        release.touch()
        assert backend.wait_stopped("parity-local", 60)
        return state.frames_done
    finally:
        release.touch()
        backend.shutdown()


def _azure_progress(make_backend, fake, job_id: str, task_id: str, kind: str, text: str) -> int:
    fake.outcome(task_id, Outcome(hold=True, held_stdout=text))
    backend = make_backend()
    spec = _spec(task_id, kind, Path("emit.py"), Path("stream.jsonl"), Path("release"))
    backend.submit(job_id, [spec])
    try:
        state = _wait_running_with_progress(
            lambda: next(iter(backend.task_states(job_id)), None), f"azure {task_id}")
    finally:
        fake.release(job_id, task_id)
    return state.frames_done


@pytest.mark.parametrize(("task_id", "kind", "text", "expected"), [
    ("chunk-00000-a1", "chunk", CHUNK_STREAM, 5),
    ("train-a1", "train", TRAIN_STREAM, 7),
])
def test_local_and_azure_report_the_same_progress(make_backend, fake, batch_store, job_id,
                                                  tmp_path, task_id, kind, text, expected):
    local = _local_progress(batch_store, tmp_path, task_id, kind, text)
    azure = _azure_progress(make_backend, fake, job_id, task_id, kind, text)
    assert local == azure == expected

