"""The Azure Batch backend: chunk tasks run on a GPU pool of an Azure Batch account.

Selected with ``BATCH_BACKEND=azure`` (``get_backend``); every setting is described in
docs/azure-batch.md. Uses ``azure-batch`` 15.x (``BatchClient``, REST api-version 2025-06-01):

- **auth**: the app's managed identity (``DefaultAzureCredential``) in Azure; a shared key when
  ``BATCH_ACCOUNT_KEY`` is set (emulators, tests, accounts that still allow keys);
- **one Batch job per video** (job id = stylebatch job id) on ``BATCH_POOL_ID``; tasks are added
  in bulk (``create_tasks``: 100 per request, "already exists" counts as added), so a retried
  ``submit`` is idempotent — task ids derive from the chunk index and the attempt;
- **tasks**: the chunk/training command line, run through the node launcher that the pool's
  start task installs (``infra/batch/run.sh``: node venv + the code's application package),
  as a task-scoped non-admin user (no task can touch another task's files on the node);
  **a task holds nothing but its own blobs**: each ``ResourceFile`` is a read-only SAS for that
  one blob, each ``OutputFile`` a create/write-only SAS for that one blob (on the container URL
  Batch asks for), https-only in Azure, living the task's wall-clock limit plus
  ``SAS_SLACK_MINUTES``. The pool identity has no data role at all (infra/modules/rbac.bicep);
  a wall-clock limit, a retention time, and **no Batch-level retries**: Batch retries every
  non-zero exit, so it would retry exit code 2 (bad input). The orchestrator owns retries:
  it resubmits a failed chunk as a new attempt (new task id, fresh SAS, its own logs) up to
  ``MAX_CHUNK_ATTEMPTS`` and fails the job at once on exit code 2;
- **monitor**: task counts first (one cheap call), then only the unfinished tasks when the
  counts allow it; failed tasks carry their exit code, a readable reason (the task's own JSON
  error line from its stderr blob, else Batch's failure info) and the log's blob name;
  running tasks report frames done from their ``stdout.txt`` on the node;
- **cancel** terminates the Batch job, ``wait_stopped`` waits until its tasks have ended (and
  uploaded what they upload on the way out), **delete** deletes it; a later run of the same job
  id (a restart after cancel or failure) finds a terminated or deleting job of that id, waits
  for it to go and creates a fresh one, so its tasks can be added.

    python -c "from shared.batch.azure import AzureBatchBackend; help(AzureBatchBackend)"
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential, TokenCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import BearerTokenCredentialPolicy

from shared.batch.base import OutputFile, ResourceFile, TaskSpec, TaskState, utc_iso
from shared.contract import error_reason, read_progress
from shared.settings import Settings
from shared.storage import BlobStore

log = logging.getLogger(__name__)

# Where the pool's start task installs the task launcher (infra/batch/start_task.sh).
NODE_LAUNCHER = "$AZ_BATCH_NODE_SHARED_DIR/stylebatch/run.sh"
# Batch keeps a task's std streams in the task directory, one level above the working directory
# that filePattern is relative to.
_STD_STREAMS = {"stdout.txt": "../stdout.txt", "stderr.txt": "../stderr.txt"}
_UPLOAD_CONDITION = {"success": "tasksuccess", "always": "taskcompletion"}
# What list_tasks returns for each task: just what a TaskState needs.
_SELECT = ["id", "state", "creationTime", "executionInfo", "nodeInfo", "outputFiles",
           "constraints"]
_RUNNING_FILTER = "state eq 'preparing' or state eq 'running'"
_IDS_PER_LIST = 20  # task ids per "id eq … or …" filter: the request line stays short
# An argument that needs no quoting on a Batch command line or in bash.
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_./:=,+@%^-]+$")
_STDERR_TAIL_BYTES = 16 * 1024
BATCH_SCOPE = "https://batch.core.windows.net//.default"
_POLL_S = 1.0  # between looks at a job that is terminating or being deleted
# How long a submit waits for the Batch job of an earlier run to be deleted; an activity may
# wait this long (the orchestrator retries the submit if it was not enough).
_REPLACE_WAIT_S = 120.0


class BatchSubmitError(RuntimeError):
    """Tasks could not be added (the job was terminated, a task was refused, …)."""


def app_package_env_var(app_id: str, version: str = "") -> str:
    """The environment variable that holds an application package's folder on a Linux node.

    Batch flattens ``.``, ``-`` and ``#`` to ``_``; without a version (the package's default
    version) the name has no version suffix. The node launcher matches it case-insensitively.
    """
    def flat(text: str) -> str:
        return re.sub(r"[.\-#]", "_", text)
    name = f"AZ_BATCH_APP_PACKAGE_{flat(app_id)}"
    return f"{name}_{flat(version)}" if version else name


def shell_word(arg: str) -> str:
    """``arg`` as one word for bash inside ``/bin/bash -c '…'`` (no single quotes allowed)."""
    if _SAFE_WORD.match(arg):
        return arg
    if "'" in arg or "\n" in arg or "\x00" in arg:
        raise ValueError(f"argument {arg!r} cannot be passed on a Batch command line")
    return '"' + re.sub(r'([\\"$`])', r"\\\1", arg) + '"'


def _plain_word(arg: str) -> str:
    """``arg`` as one word of a command line that Batch runs without a shell."""
    if _SAFE_WORD.match(arg):
        return arg
    if any(c in arg for c in "'\"\\$`\n\x00"):
        raise ValueError(f"argument {arg!r} needs a shell; set BATCH_APP_PACKAGE to run tasks "
                         "through the node launcher")
    return f'"{arg}"'


@dataclass
class _JobView:
    """What this process remembers of one job between polls: tasks that can no longer change
    (``done``), the latest state of the others (``unfinished``), and whether the whole job has
    been listed once since this process started (``listed``)."""

    done: dict[str, TaskState] = field(default_factory=dict)
    unfinished: dict[str, TaskState] = field(default_factory=dict)
    listed: bool = False


class AzureBatchBackend:
    """The BatchBackend protocol on an Azure Batch account (see the module docstring)."""

    # Why process-wide: a Functions worker process serves many invocations; one client per
    # configuration keeps one connection pool and token cache, and the job views that spare
    # the monitor from listing finished tasks again. Owned by ``shared``.
    _shared: dict[tuple, AzureBatchBackend] = {}
    _shared_lock = threading.Lock()

    def __init__(self, settings: Settings, store: BlobStore, *,
                 client: BatchClient | None = None, credential: TokenCredential | None = None):
        self.settings = settings
        self.store = store
        self.client = client or make_client(settings, credential)
        self._jobs: dict[str, _JobView] = {}
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, settings: Settings, store: BlobStore) -> AzureBatchBackend:
        """One backend (one HTTP connection pool, one token cache) per settings and store."""
        key = (settings, id(store))
        with cls._shared_lock:
            if key not in cls._shared:
                cls._shared[key] = cls(settings, store)
            return cls._shared[key]

    # -- submit ---------------------------------------------------------------------------------

    def submit(self, job_id: str, tasks: list[TaskSpec]) -> None:
        """Create the job if needed and add the tasks; ids that exist already are skipped."""
        self._ensure_job(job_id)
        if not tasks:
            return
        options = [self.task_options(t) for t in tasks]
        # Several requests in parallel for big jobs: the SDK sends 100 tasks per request.
        requests = math.ceil(len(options) / 100)
        try:
            # The SDK takes tasks off the end of its queue: reversed, they reach Batch (and its
            # first-come scheduling) in the pipeline's order — training first, then chunk 0, 1…
            self.client.create_tasks(job_id, options[::-1],
                                     max_concurrency=min(4, requests) if requests > 1 else None)
        except m.CreateTasksError as exc:
            details = [f"{r.task_id}: {r.error.code if r.error else '?'}"
                       for r in exc.failure_tasks][:5]
            details += [_error_text(e) for e in exc.errors][:3]
            raise BatchSubmitError(f"could not add tasks to Batch job {job_id}: "
                                   + "; ".join(details)) from exc
        except HttpResponseError as exc:
            raise BatchSubmitError(f"could not add tasks to Batch job {job_id}: "
                                   f"{_error_text(exc)}") from exc
        with self._lock:
            view = self._jobs.setdefault(job_id, _JobView())
            for t in tasks:
                if t.id not in view.done and t.id not in view.unfinished:
                    view.unfinished[t.id] = TaskState(t.id, "pending", created=utc_iso())

    def _ensure_job(self, job_id: str) -> None:
        s = self.settings
        job = m.BatchJobCreateOptions(
            id=job_id,
            display_name=f"stylebatch {job_id}",
            pool_info=m.BatchPoolInfo(pool_id=s.batch_pool_id),
            # The orchestrator adds retry attempts after failures: the job must stay open when
            # all current tasks are complete, and a failed task must not end it.
            all_tasks_complete_mode="noaction",
            task_failure_mode="noaction",
            uses_task_dependencies=False,
            # A job nobody cleans up (a crashed orchestration) would keep GPU nodes busy with
            # its pending tasks; Batch ends it after this long.
            constraints=m.BatchJobConstraints(
                max_wall_clock_time=timedelta(hours=s.batch_job_max_wall_hours),
                max_task_retry_count=0),
            metadata=[m.BatchMetadataItem(name="app", value="stylebatch")],
        )
        for _attempt in range(3):
            try:
                self.client.create_job(job)
                return
            except HttpResponseError as exc:
                if _code(exc) not in ("JobExists", "JobBeingDeleted"):
                    raise
            try:
                existing = self.client.get_job(job_id, select=["id", "state", "poolInfo"])
            except ResourceNotFoundError:
                continue  # deleted meanwhile: create it now
            state = getattr(existing.state, "value", existing.state)  # the enum's REST name
            if state not in ("terminating", "completed", "deleting"):
                break
            # A job of a run that ended (cancelled, failed, timed out): a new run of the same
            # job id replaces it, since a terminated Batch job takes no more tasks.
            log.info("Batch job %s is %s; replacing it", job_id, state)
            self.delete(job_id)
            if not self._wait_gone(job_id, _REPLACE_WAIT_S):
                break
        else:
            raise BatchSubmitError(f"Batch job {job_id} could not be created")
        if state in ("terminating", "completed", "deleting"):
            raise BatchSubmitError(f"Batch job {job_id} is still {state} from an earlier run; "
                                   "resubmit once it is gone")
        pool = existing.pool_info.pool_id if existing.pool_info else None
        if pool != s.batch_pool_id:
            log.warning("Batch job %s runs on pool %s, not %s (BATCH_POOL_ID changed?)",
                        job_id, pool, s.batch_pool_id)

    def task_options(self, spec: TaskSpec) -> m.BatchTaskCreateOptions:
        """The Batch task for a TaskSpec (public so tests and tools can inspect it)."""
        s = self.settings
        ttl = self.sas_ttl(spec)
        env = {"PYTHONUNBUFFERED": "1", **spec.env}  # frame events reach stdout.txt at once
        label = f"{spec.kind} {spec.chunk}" if spec.kind == "chunk" else spec.kind
        apps = []
        if s.batch_app_package and spec.command[:1] == ["python"]:
            apps = [m.BatchApplicationPackageReference(
                application_id=s.batch_app_package, version=s.batch_app_version or None)]
        return m.BatchTaskCreateOptions(
            id=spec.id,
            display_name=f"{label} ({spec.frames} frames)" if spec.frames else label,
            command_line=self.command_line(spec),
            resource_files=[self._resource_file(rf, ttl) for rf in spec.resource_files],
            output_files=[self._output_file(of, ttl) for of in spec.output_files],
            environment_settings=[m.EnvironmentSetting(name=k, value=v)
                                  for k, v in sorted(env.items())],
            constraints=m.BatchTaskConstraints(
                max_wall_clock_time=timedelta(seconds=spec.max_wall_s),
                retention_time=timedelta(minutes=s.batch_task_retention_minutes),
                # Not spec.max_retries: Batch would retry exit code 2 (bad input) too. Retries
                # belong to the orchestrator (see the module docstring).
                max_task_retry_count=0),
            # Its own user per task: a task exploited through a hostile bitstream cannot read or
            # change what other tasks on the node left behind.
            user_identity=m.UserIdentity(auto_user=m.AutoUserSpecification(
                scope="task", elevation_level="nonadmin")),
            application_package_references=apps or None,
            required_slots=1,
        )

    def command_line(self, spec: TaskSpec) -> str:
        """The task's command line. ``python …`` runs through the node launcher, which puts the
        application package on PYTHONPATH and uses the node's venv (infra/batch/run.sh)."""
        argv = list(spec.command)
        if not argv:
            raise ValueError(f"task {spec.id} has no command")
        s = self.settings
        if argv[0] == "python" and s.batch_app_package:
            app_var = app_package_env_var(s.batch_app_package, s.batch_app_version)
            words = " ".join(shell_word(a) for a in argv)
            return f"/bin/bash -c 'exec \"{NODE_LAUNCHER}\" --app {app_var} {words}'"
        return " ".join(_plain_word(a) for a in argv)

    def sas_ttl(self, spec: TaskSpec) -> timedelta:
        """How long a task's SAS URLs live: its own wall-clock limit plus the slack for waiting
        for a node and clock skew. A task still queued after that fails its download (Batch
        does not retry it) and the orchestrator resubmits it with fresh URLs."""
        return timedelta(seconds=spec.max_wall_s, minutes=self.settings.sas_slack_minutes)

    def _resource_file(self, rf: ResourceFile, ttl: timedelta) -> m.ResourceFile:
        url = self.store.blob_sas_url(rf.blob.container, rf.blob.name, ttl=ttl)
        return m.ResourceFile(http_url=url, file_path=rf.path)

    def _output_file(self, of: OutputFile, ttl: timedelta) -> m.OutputFile:
        if of.when not in _UPLOAD_CONDITION:
            raise ValueError(f"output file {of.path}: when must be success or always")
        # Batch wants a container URL and a path; the SAS on it is scoped to that one blob
        # (storage checks a signature against the blob actually written), create/write only.
        token = self.store.blob_sas_token(of.blob.container, of.blob.name, write=True, ttl=ttl)
        url = f"{self.store.service.get_container_client(of.blob.container).url}?{token}"
        return m.OutputFile(
            file_pattern=_STD_STREAMS.get(of.path, of.path),
            destination=m.OutputFileDestination(container=m.OutputFileBlobContainerDestination(
                container_url=url, path=of.blob.name)),
            upload_options=m.OutputFileUploadConfiguration(
                upload_condition=_UPLOAD_CONDITION[of.when]))

    # -- monitor --------------------------------------------------------------------------------

    def task_counts(self, job_id: str) -> dict[str, int] | None:
        """Batch's task counts for the job (None when the job does not exist)."""
        try:
            c = self.client.get_job_task_counts(job_id).task_counts
        except ResourceNotFoundError:
            return None
        return {"active": c.active, "running": c.running, "completed": c.completed,
                "succeeded": c.succeeded, "failed": c.failed}

    def task_states(self, job_id: str) -> list[TaskState]:
        """Every task of the job with its state; an unknown job gives an empty list.

        A poll costs what changed, not what the job holds, so that watching a job of thousands
        of tasks stays linear over its life: the task counts (one call); the tasks running now
        (one filtered list); and, when the counts say some completed since the last poll, the
        tasks that were running then (and, if that is not all, the oldest queued ones), fetched
        by id (``id eq`` filters, 20 a request). Finished tasks cannot change and are
        remembered; queued ones keep their last state. Only when that does not add up (the first
        poll in this process, tasks added elsewhere, stale counts, a poll slower than tasks)
        does it list the unfinished tasks, and failing that every task.
        """
        counts = self.task_counts(job_id)
        if counts is None:
            with self._lock:
                self._jobs.pop(job_id, None)
            return []
        with self._lock:
            view = self._jobs.setdefault(job_id, _JobView())
            done, unfinished = dict(view.done), dict(view.unfinished)
            listed_before = view.listed
        peek = [max(0, self.settings.batch_progress_peek_tasks)]
        states = None
        if listed_before:
            states = self._poll_changes(job_id, counts, done, unfinished, peek)
        if states is None:
            states = {t.id: self._task_state(job_id, t, self._peek(t, peek))
                      for t in self._list(job_id, None)}
            done = {tid: st for tid, st in states.items() if st.state in ("succeeded", "failed")}
        with self._lock:
            view = self._jobs.setdefault(job_id, _JobView())
            view.done.update(done)
            view.unfinished = {tid: st for tid, st in states.items() if tid not in view.done}
            view.listed = True
        return list(states.values())

    def _poll_changes(self, job_id: str, counts: dict[str, int], done: dict[str, TaskState],
                      unfinished: dict[str, TaskState], peek: list[int]
                      ) -> dict[str, TaskState] | None:
        """The job's tasks from what changed since the last poll; None when that cannot be
        told reliably (the caller lists every task). Adds newly finished tasks to ``done``."""
        total = counts["active"] + counts["running"] + counts["completed"]
        if len(done) + len(unfinished) != total or counts["completed"] < len(done):
            return None  # tasks added elsewhere, or a job replaced behind our back
        running = {t.id: t for t in self._list(job_id, _RUNNING_FILTER)}
        if not set(running) <= set(unfinished):
            return None
        fresh: dict[str, m.BatchTask] = dict(running)
        new_done = counts["completed"] - len(done)
        if new_done > 0:
            was_running = [tid for tid, st in unfinished.items()
                           if st.state == "running" and tid not in running]
            fetched = self._by_ids(job_id, was_running)
            short = new_done - sum(t.state == "completed" for t in fetched)
            if short > 0:
                # Tasks that went from queued to completed between two polls: Batch hands out
                # a job's queued tasks oldest first, so look at the oldest queued ones (ids
                # sort in submission order: chunk index, then attempt).
                queued = sorted(tid for tid, st in unfinished.items()
                                if st.state == "pending" and tid not in running)
                fetched += self._by_ids(job_id, queued[:short + len(running)])
            if sum(t.state == "completed" for t in fetched) < new_done:
                # Still short: list what has not completed; whatever we knew unfinished and
                # is not there has completed.
                still = {t.id: t for t in self._list(job_id, "state ne 'completed'")}
                if not set(still) <= set(unfinished):
                    return None
                fetched = self._by_ids(job_id, [tid for tid in unfinished if tid not in still])
                fresh.update(still)
            fresh.update({t.id: t for t in fetched})
        states = dict(done)
        for tid, last in unfinished.items():
            task = fresh.get(tid)
            if task is None:
                # Not running and not seen completing: still queued (or a task that was
                # running and was requeued, which the counts below catch).
                states[tid] = last if last.state == "pending" else replace(last, state="pending")
                continue
            st = self._task_state(job_id, task, self._peek(task, peek))
            states[tid] = st
            if task.state == "completed":
                done[tid] = st
        if len(done) < counts["completed"]:
            return None
        return states

    def _peek(self, task: m.BatchTask, budget: list[int]) -> bool:
        """Whether to read this running task's stdout for its frames (a bounded number)."""
        if task.state != "running" or budget[0] <= 0:
            return False
        budget[0] -= 1
        return True

    def _by_ids(self, job_id: str, ids: list[str]) -> list[m.BatchTask]:
        """These tasks, listed by id a group at a time (one request per _IDS_PER_LIST)."""
        found: list[m.BatchTask] = []
        for i in range(0, len(ids), _IDS_PER_LIST):
            flt = " or ".join(f"id eq '{tid}'" for tid in ids[i:i + _IDS_PER_LIST])
            found += self._list(job_id, flt)
        return found

    def _list(self, job_id: str, flt: str | None) -> Iterable[m.BatchTask]:
        try:
            yield from self.client.list_tasks(job_id, filter=flt, select=_SELECT,
                                              max_results=1000)
        except ResourceNotFoundError:
            return

    def _task_state(self, job_id: str, task: m.BatchTask, peek: bool) -> TaskState:
        """The task's state with its timestamps and node (timeline, trace spans)."""
        info, node = task.execution_info, task.node_info
        when = {"created": task.creation_time, "started": info.start_time if info else None,
                "ended": info.end_time if info else None}
        return replace(self._task_state_only(job_id, task, peek),
                       node=node.node_id if node else None,
                       **{k: utc_iso(v) if v else None for k, v in when.items()})

    def _task_state_only(self, job_id: str, task: m.BatchTask, peek: bool) -> TaskState:
        info = task.execution_info
        retries = info.retry_count if info else 0
        log_blob = _log_blob(task)
        if task.state == "active":
            return TaskState(task.id, "pending", retries=retries, log=log_blob)
        if task.state in ("preparing", "running"):
            frames = self._frames_done(job_id, task.id) if peek and task.state == "running" else 0
            return TaskState(task.id, "running", frames_done=frames, retries=retries,
                             log=log_blob)
        exit_code = info.exit_code if info else None
        if info is not None and info.result == "success" and exit_code == 0:
            return TaskState(task.id, "succeeded", exit_code=0, retries=retries, log=log_blob)
        return TaskState(task.id, "failed", exit_code=exit_code,
                         error=self._reason(task, log_blob), retries=retries, log=log_blob)

    def _reason(self, task: m.BatchTask, log_blob: str | None) -> str:
        """Why a task failed, for a person: the task's own words first, then Batch's."""
        info = task.execution_info
        failure = info.failure_info if info else None
        code = failure.code if failure else None
        limit = task.constraints.max_wall_clock_time if task.constraints else None
        # Batch kills a task at its wall-clock limit; the failure code is not documented, the
        # run time is.
        if limit and _ran_for(info) >= limit - timedelta(seconds=1):
            return (f"timed out: the task ran longer than its limit of "
                    f"{int(limit.total_seconds())} s (TASK_MAX_WALL_S)")
        if info is not None and info.exit_code not in (None, 0):
            said = self._stderr_reason(task)
            if said:
                return said
            return f"exit code {info.exit_code}" + (f" ({failure.message})" if failure else "")
        if failure is None:
            return "the task failed without failure information"
        text = f"{failure.code}: {failure.message}" if failure.message else str(failure.code)
        details = ", ".join(f"{d.name}={d.value}" for d in failure.details or []
                            if d.name and d.value)
        if details:
            text += f" ({details})"
        if code in ("BlobAccessDenied", "BlobNotFound", "BlobDownloadMiscError"):
            text = "could not download an input: " + text
            if code == "BlobAccessDenied":
                text += "; the SAS may have expired while the task waited (SAS_SLACK_MINUTES)"
        return text

    def _stderr_reason(self, task: m.BatchTask) -> str | None:
        """The ``{"event":"error","reason":…}`` line the chunk task writes last on stderr, read
        from its uploaded stderr blob; else its last non-empty line."""
        dest = _std_destination(task, "../stderr.txt")
        if dest is None:
            return None
        container, name = dest
        try:
            blob = self.store.blob(container, name)
            size = blob.get_blob_properties().size
            data = blob.download_blob(offset=max(0, size - _STDERR_TAIL_BYTES)).readall()
        except Exception as exc:  # the log is a nicety: never fail the monitor over it
            log.info("no stderr for task %s: %s", task.id, exc)
            return None
        reason = error_reason(data)
        if reason is not None:
            return reason
        lines = [ln.strip() for ln in data.decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1][-500:] if lines else None

    def _frames_done(self, job_id: str, task_id: str) -> int:
        """Progress so far (frames, or a training task's steps) from a running task's
        stdout.txt, read from the node."""
        try:
            data = b"".join(self.client.download_task_file(job_id, task_id, "stdout.txt"))
        except Exception:  # not written yet, node busy, task just finished: no progress info
            return 0
        return read_progress(data)[0] or 0

    # -- cancel and cleanup ---------------------------------------------------------------------

    def cancel(self, job_id: str) -> None:
        """Terminate the Batch job: running tasks are killed, pending ones never start."""
        try:
            # azure-batch 15.1 does not export BatchJobTerminateOptions; its JSON body is this.
            self.client.begin_terminate_job(job_id, {"terminateReason": "cancelled"})  # type: ignore[arg-type]
        except ResourceNotFoundError:
            return
        except HttpResponseError as exc:
            # Already terminating, completed or being deleted: nothing left to stop.
            if exc.status_code != 409:
                raise

    def wait_stopped(self, job_id: str, timeout: float) -> bool:
        """After ``cancel``: wait until the job has no running task (Batch moves a terminated
        job to ``completed`` once its tasks have ended and uploaded their output files)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                job = self.client.get_job(job_id, select=["id", "state"])
            except ResourceNotFoundError:
                return True
            if getattr(job.state, "value", job.state) == "completed":
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, _POLL_S))

    def _wait_gone(self, job_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.get_job(job_id, select=["id", "state"])
            except ResourceNotFoundError:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, _POLL_S))

    def delete(self, job_id: str) -> None:
        """Delete the Batch job and its tasks (the service finishes it in the background)."""
        with self._lock:
            self._jobs.pop(job_id, None)
        try:
            self.client.begin_delete_job(job_id)
        except ResourceNotFoundError:
            return
        except HttpResponseError as exc:
            if exc.status_code != 409:  # already being deleted
                raise


def make_client(settings: Settings, credential: TokenCredential | None = None) -> BatchClient:
    """A BatchClient for ``BATCH_ACCOUNT_URL``: shared key when ``BATCH_ACCOUNT_KEY`` is set,
    else ``credential`` or the app's managed identity (``DefaultAzureCredential``)."""
    url = settings.batch_account_url.strip().rstrip("/")
    if not url:
        raise ValueError("BATCH_ACCOUNT_URL is not set (https://<account>.<region>.batch.azure.com"
                         "); see docs/azure-batch.md")
    if "://" not in url:
        url = "https://" + url
    parsed = urllib.parse.urlparse(url)
    # Transient 5xx/429 and connection errors are retried by the SDK's pipeline.
    kwargs: dict[str, Any] = {"connection_timeout": 15, "read_timeout": 60, "retry_total": 5}
    if settings.batch_account_key:
        name = settings.batch_account_name or (parsed.hostname or "").split(".")[0]
        return BatchClient(url, AzureNamedKeyCredential(name, settings.batch_account_key),
                           **kwargs)
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    if parsed.scheme != "https":
        # A bearer token over plain http is only acceptable to a local emulator.
        if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"BATCH_ACCOUNT_URL {url} is not https: refusing to send a token")
        kwargs["authentication_policy"] = _LoopbackBearerPolicy(credential, BATCH_SCOPE)
    return BatchClient(url, credential, **kwargs)


class _LoopbackBearerPolicy(BearerTokenCredentialPolicy):
    """Bearer tokens over plain http, for a Batch emulator on this machine only (make_client
    never uses it for another host); azure-core refuses that unless told per request."""

    def on_request(self, request: PipelineRequest) -> None:
        request.context.options["enforce_https"] = False
        super().on_request(request)


def _code(exc: HttpResponseError) -> str | None:
    return getattr(getattr(exc, "error", None), "code", None)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, HttpResponseError):
        err = getattr(exc, "error", None)
        if err is not None and getattr(err, "code", None):
            return f"{err.code}: {str(err.message).splitlines()[0] if err.message else ''}"
        return f"HTTP {exc.status_code}: {exc.message.splitlines()[0] if exc.message else ''}"
    return f"{type(exc).__name__}: {exc}"


def _ran_for(info: m.BatchTaskExecutionInfo | None) -> timedelta:
    if info is None or info.start_time is None or info.end_time is None:
        return timedelta(0)
    return info.end_time - info.start_time


def _std_destination(task: m.BatchTask, pattern: str) -> tuple[str, str] | None:
    """(container, blob name) where Batch uploads one of the task's std streams."""
    for of in task.output_files or []:
        if of.file_pattern != pattern or not of.destination or not of.destination.container:
            continue
        dest = of.destination.container
        path = urllib.parse.urlparse(dest.container_url).path.rstrip("/")
        return path.rsplit("/", 1)[-1], dest.path or ""
    return None


def _log_blob(task: m.BatchTask) -> str | None:
    dest = _std_destination(task, "../stderr.txt")
    return dest[1] if dest else None
