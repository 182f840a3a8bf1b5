"""The local Batch backend: runs tasks as subprocesses on this machine, the way a node would.

Each task gets a fresh working directory; its resource files are downloaded there by SAS URL
before it starts and its output files uploaded by SAS URL after it ends (stdout/stderr
always), exactly as Azure Batch does with ResourceFile/OutputFile. The command line is the one
a Batch node runs (``python -m scoring …``), with ``python`` meaning this interpreter.

``LOCAL_BATCH_SLOTS`` tasks run at once. State lives in memory in this process (the local
host runs the Function app in-process), so ``LocalBatchBackend.shared`` returns one instance
per storage account. Like a pool whose nodes were all lost, it forgets its tasks when the
process ends; the orchestrator submits tasks the backend does not know again. Tasks die with
the process (``shared.procs.die_with_parent``) and their folders live in one private temporary
folder, removed on shutdown or, after a crash, by the next backend created on this machine.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from azure.storage.blob import BlobClient

from shared.batch.base import TaskSpec, TaskState, utc_iso
from shared.contract import EXIT_BAD_INPUT, EXIT_OK, error_reason, read_progress, with_threads
from shared.procs import die_with_parent, private_tempdir
from shared.settings import Settings
from shared.storage import BlobStore

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
_STD_FILES = ("stdout.txt", "stderr.txt")


@dataclass
class _Task:
    job_id: str
    spec: TaskSpec
    state: TaskState
    proc: subprocess.Popen | None = None
    cancelled: bool = False
    started: float = 0.0
    attempts_left: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class LocalBatchBackend:
    """A pool of ``slots`` local workers behind the BatchBackend protocol."""

    # Why process-wide: activities are separate invocations, yet the tasks they submit must
    # keep running and be found by the next one, as they are by the Batch service. Owned by
    # ``shared``; a host that stops calls ``shutdown_all``.
    _shared: dict[tuple, LocalBatchBackend] = {}
    _shared_lock = threading.Lock()

    def __init__(self, store: BlobStore, slots: int = 2, sas_ttl: timedelta = timedelta(hours=3),
                 threads_per_task: int | None = None):
        assert slots >= 1
        self.store = store
        self.slots = slots
        self.sas_ttl = sas_ttl
        self.threads_per_task = threads_per_task or max(1, (os.cpu_count() or 1) // slots)
        self._jobs: dict[str, dict[str, _Task]] = {}
        self._queue: queue.Queue[_Task | None] = queue.Queue()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._workers: list[threading.Thread] = []
        self._root = Path(private_tempdir("stylebatch-nodes"))

    @classmethod
    def shared(cls, settings: Settings, store: BlobStore) -> LocalBatchBackend:
        key = (settings.storage_connection_string, settings.storage_account_url,
               settings.local_batch_slots)
        with cls._shared_lock:
            if key not in cls._shared:
                cls._shared[key] = cls(store, slots=settings.local_batch_slots,
                                       sas_ttl=timedelta(seconds=settings.task_max_wall_s,
                                                         minutes=settings.sas_slack_minutes))
            return cls._shared[key]

    # -- BatchBackend -------------------------------------------------------------------------

    def submit(self, job_id: str, tasks: list[TaskSpec]) -> None:
        self._start_workers()
        with self._lock:
            job = self._jobs.setdefault(job_id, {})
            for spec in tasks:
                if spec.id in job:
                    continue  # idempotent: an existing task id is not added twice
                task = _Task(job_id=job_id, spec=spec,
                             state=TaskState(id=spec.id, state="pending",
                                             created=utc_iso(), node="localhost"),
                             attempts_left=spec.max_retries)
                job[spec.id] = task
                self._queue.put(task)
            self._changed.notify_all()

    def task_states(self, job_id: str) -> list[TaskState]:
        with self._lock:
            return [TaskState(**vars(t.state)) for t in self._jobs.get(job_id, {}).values()]

    def cancel(self, job_id: str) -> None:
        with self._lock:
            tasks = list(self._jobs.get(job_id, {}).values())
        for t in tasks:
            with t.lock:
                t.cancelled = True
                if t.proc and t.proc.poll() is None:
                    _kill_group(t.proc)
                if t.state.state == "pending":
                    self._finish(t, "failed", error="cancelled: the job was terminated")

    def wait_stopped(self, job_id: str, timeout: float) -> bool:
        """Wait until no task of the job runs (after ``cancel``): nothing of it writes to
        storage any more. False when ``timeout`` seconds were not enough."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while any(t.state.state in ("pending", "running")
                      for t in self._jobs.get(job_id, {}).values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
        return True

    def delete(self, job_id: str) -> None:
        self.cancel(job_id)
        with self._lock:
            self._jobs.pop(job_id, None)
            self._changed.notify_all()

    # -- extras for local hosts and tests ------------------------------------------------------

    def wait_for_change(self, timeout: float) -> None:
        """Block until some task changes state (or ``timeout`` seconds pass)."""
        with self._changed:
            self._changed.wait(timeout)

    def busy(self) -> bool:
        with self._lock:
            return any(t.state.state in ("pending", "running")
                       for job in self._jobs.values() for t in job.values())

    @classmethod
    def shutdown_all(cls) -> None:
        """Shut down every backend ``shared`` made and forget them (a local host stopping)."""
        with cls._shared_lock:
            backends = list(cls._shared.values())
            cls._shared.clear()
        for backend in backends:
            backend.shutdown()

    def shutdown(self) -> None:
        for job_id in list(self._jobs):
            self.cancel(job_id)
        for _ in self._workers:
            self._queue.put(None)
        shutil.rmtree(self._root, ignore_errors=True)

    # -- workers ---------------------------------------------------------------------------

    def _start_workers(self) -> None:
        with self._lock:
            while len(self._workers) < self.slots:
                w = threading.Thread(target=self._work, name=f"local-batch-{len(self._workers)}",
                                     daemon=True)
                w.start()
                self._workers.append(w)

    def _finish(self, t: _Task, state: str, *, exit_code: int | None = None,
                error: str | None = None) -> None:
        with self._lock:
            t.state.state = state
            t.state.exit_code = exit_code
            t.state.error = error
            t.state.ended = utc_iso()
            self._changed.notify_all()

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            with task.lock:
                if task.cancelled or task.state.state != "pending":
                    continue
            try:
                self._run(task)
            except Exception as exc:  # a bug here must not kill the worker thread
                log.exception("local batch task %s crashed", task.spec.id)
                self._finish(task, "failed", exit_code=None, error=f"node error: {exc}")

    def _run(self, task: _Task) -> None:
        spec = task.spec
        task_dir = Path(tempfile.mkdtemp(prefix=f"{task.job_id}-{spec.id}-", dir=self._root))
        wd = task_dir / "wd"
        wd.mkdir()
        with self._lock:
            task.state.state = "running"
            task.state.frames_done = 0
            task.state.started = utc_iso()
            self._changed.notify_all()
        try:
            # 1. Resource files, by SAS URL. Batch does not retry a failed download: neither do we.
            for rf in spec.resource_files:
                target = wd / rf.path
                target.parent.mkdir(parents=True, exist_ok=True)
                url = self.store.blob_sas_url(rf.blob.container, rf.blob.name, ttl=self.sas_ttl)
                try:
                    with open(target, "wb") as fh:
                        BlobClient.from_blob_url(url).download_blob().readinto(fh)
                except Exception as exc:
                    self._finish(task, "failed", error=f"resource file {rf.blob.container}/"
                                 f"{rf.blob.name} could not be downloaded: {type(exc).__name__}")
                    return
            # 2. The command, retried by the "node" for retryable exit codes like Batch does.
            while True:
                code, error = self._execute(task, task_dir, wd)
                if code in (EXIT_OK, EXIT_BAD_INPUT) or task.cancelled \
                        or task.attempts_left <= 0 or error == "timeout":
                    break
                task.attempts_left -= 1
                reason = self._reason(task_dir, code, error)
                with self._lock:
                    task.state.retries += 1
                    task.state.retry_error = reason
                    self._changed.notify_all()
            if task.cancelled:  # nothing of a cancelled job may land in storage any more
                self._finish(task, "failed", exit_code=code, error="cancelled: the job was "
                             "terminated")
                return
            # 3. Output files, by SAS URL.
            upload_error = self._upload_outputs(task, task_dir, wd, success=code == 0)
            if code == 0 and upload_error is None:
                self._finish(task, "succeeded", exit_code=0)
            elif code == 0:
                self._finish(task, "failed", exit_code=0, error=upload_error)
            else:
                self._finish(task, "failed", exit_code=code,
                             error=self._reason(task_dir, code, error))
        finally:
            shutil.rmtree(task_dir, ignore_errors=True)

    def _execute(self, task: _Task, task_dir: Path, wd: Path) -> tuple[int | None, str | None]:
        spec = task.spec
        # The slots share this machine's cores: each task is told its share.
        argv = [sys.executable if i == 0 and a == "python" else a
                for i, a in enumerate(with_threads(spec.command, self.threads_per_task))]
        env = {**os.environ, **spec.env,
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": str(self.threads_per_task)}
        with task.lock:
            if task.cancelled:
                return None, "cancelled"
            stdout = open(task_dir / "stdout.txt", "ab")  # noqa: SIM115 - closed below
            stderr = open(task_dir / "stderr.txt", "ab")  # noqa: SIM115
            # Its own process group (cancel kills the task's ffmpeg too), dying with this
            # process (this worker thread lives as long as the pool).
            task.proc = subprocess.Popen(argv, cwd=wd, env=env, stdout=stdout, stderr=stderr,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=die_with_parent())
            task.started = time.monotonic()
        try:
            offset = 0
            while True:
                try:
                    code = task.proc.wait(0.5)
                    break
                except subprocess.TimeoutExpired:
                    pass
                offset = self._read_progress(task, task_dir / "stdout.txt", offset)
                if time.monotonic() - task.started > spec.max_wall_s:
                    _kill_group(task.proc)
                    task.proc.wait()
                    return None, "timeout"
            self._read_progress(task, task_dir / "stdout.txt", offset)
            return code, None
        finally:
            stdout.close()
            stderr.close()

    def _read_progress(self, task: _Task, path: Path, offset: int) -> int:
        """Follow the task's JSON-lines log: frames (or training steps) done so far."""
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except OSError:
            return offset
        frames, consumed = read_progress(data)
        if frames is not None:
            with self._lock:
                task.state.frames_done = frames
                self._changed.notify_all()
        return offset + consumed

    def _upload_outputs(self, task: _Task, task_dir: Path, wd: Path, success: bool) -> str | None:
        error = None
        for of in task.spec.output_files:
            if of.when == "success" and not success:
                continue
            path = task_dir / of.path if of.path in _STD_FILES else wd / of.path
            if not path.exists():
                if of.when == "success":
                    error = f"output file {of.path} was not produced"
                continue
            url = self.store.blob_sas_url(of.blob.container, of.blob.name, write=True,
                                          ttl=self.sas_ttl)
            try:
                with open(path, "rb") as fh:
                    BlobClient.from_blob_url(url).upload_blob(fh, overwrite=True)
            except Exception as exc:
                error = f"output file {of.path} could not be uploaded: {type(exc).__name__}"
            if of.path == "stderr.txt":
                with self._lock:
                    task.state.log = of.blob.name
        return error

    @staticmethod
    def _reason(task_dir: Path, code: int | None, error: str | None) -> str:
        """A readable failure reason: the task's own JSON error line, else its last words."""
        if error == "timeout":
            return "the task exceeded its maximum wall-clock time"
        try:
            text = (task_dir / "stderr.txt").read_text(errors="replace").strip()
        except OSError:
            text = ""
        reason = error_reason(text)
        if reason is not None:
            return reason
        lines = text.splitlines()
        tail = " | ".join(lines[-3:]) if lines else "no output"
        return f"exit code {code}: {tail}"


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill a task and whatever it started (it leads its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
