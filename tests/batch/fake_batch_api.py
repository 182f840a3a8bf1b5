"""A loopback fake of the Azure Batch data-plane REST API, for tests that run the real SDK.

``azure-batch`` 15.x (``BatchClient``) talks to it over HTTP exactly as it talks to Azure: the
fake checks SharedKey signatures (or bearer tokens it was given), speaks the JSON shapes of
REST api-version ``2025-06-01`` (the version the SDK sends) and answers with odata errors
(``JobNotFound``, ``JobExists``, ``TaskExists`` …). It covers what stylebatch uses: create /
get / terminate / delete job, add task collection, task counts, list (``$filter``,
``$select``, paging) and get tasks, and reading a task's files.

Behind the API it runs a small pool (``nodes`` task slots) in threads. A task really goes
through ``active → preparing → running → completed``: its resource files are downloaded over
HTTP (SAS URLs) or with a node identity, a command *executor* runs, and its output files are
uploaded to blob storage by their ``uploadCondition`` — so a wrong SAS or a wrong path fails
the way it would in Azure. Tests steer outcomes with knobs::

    with FakeBatchService(nodes=2) as fake:
        fake.outcome("chunk-00003-*", Outcome(exit_code=1, stderr="boom"))  # fail
        fake.outcome("chunk-00004-*", Outcome(run_s=7200))      # exceeds maxWallClockTime
        fake.outcome("chunk-00005-*", Outcome(preempt=1))       # preempted once, requeued
        fake.outcome("chunk-00006-*", Outcome(hold=True))       # runs until fake.release(...)
        client = BatchClient(fake.url, AzureNamedKeyCredential(fake.account, fake.key))

Simulated durations (``run_s``) are "service seconds"; ``time_scale`` real seconds pass per
service second (0 by default: instantly), so a one-hour timeout costs the tests nothing.
The default executor simulates a chunk task (frame events on stdout, a copy of the first
resource file as each success output); ``subprocess_executor`` runs the command line for real.

Run its own tests with ``.venv/bin/pytest tests/batch/test_fake_batch_api.py``.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

API_VERSION = "2025-06-01"
ODATA_ERROR = "$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"
MAX_TASKS_PER_COLLECTION = 100
MAX_COLLECTION_BYTES = 1024 * 1024  # the service refuses larger addtaskcollection bodies
UNLIMITED = "P10675199DT2H48M5.4775807S"  # what the service reports for "no limit"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# --------------------------------------------------------------------------------------------
# knobs


@dataclass
class Outcome:
    """What happens when a task runs (the default executor; see the module docstring)."""

    exit_code: int = 0
    stdout: str | None = None  # default: `frames` frame events, then a done event
    stderr: str | None = None  # default on failure: an error event with `reason`
    reason: str = "simulated failure"
    frames: int = 3
    run_s: float = 1.0  # simulated running time, service seconds
    hold: bool = False  # keep running until FakeBatchService.release()
    frames_before_hold: int = 1  # frame events visible in stdout.txt while held
    held_stdout: str | None = None  # stdout.txt while held, instead of those frame events
    preempt: int = 0  # the node is preempted this many times before the task can finish
    write_outputs: bool = True  # a successful run produces its output files


@dataclass
class Node:
    id: str
    busy: str | None = None  # "<job>/<task>" running on it


@dataclass
class _Run:
    """One running task: its worker thread watches these flags."""

    release: threading.Event = field(default_factory=threading.Event)
    preempt: bool = False
    kill: str | None = None  # why the service ends it ("terminate", "delete")


Executor = Callable[["FakeBatchService", dict, Path, dict, "Outcome"], int]


# --------------------------------------------------------------------------------------------
# helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _rfc1123(t: datetime) -> str:
    return formatdate(t.timestamp(), usegmt=True)


_DURATION = re.compile(r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
                       r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")


def parse_duration(text: str) -> float:
    """ISO 8601 duration (as Batch sends and accepts it, e.g. PT01H00M00S) to seconds."""
    m = _DURATION.match(text or "")
    if not m or text in ("P", "PT"):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    parts = {k: float(v) if v else 0.0 for k, v in m.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 values: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.values = status, code, message, values


# --------------------------------------------------------------------------------------------
# the service


class FakeBatchService:
    """A Batch account with one pool, served on 127.0.0.1 (see the module docstring)."""

    def __init__(self, account: str = "fakebatch", key: str | None = None, *,
                 pool_id: str = "stylebatch-gpu", nodes: int = 4, page_size: int = 1000,
                 time_scale: float = 0.0, executor: Executor | None = None,
                 identities: dict[str, Any] | None = None,
                 bearer_tokens: set[str] | None = None):
        self.account = account
        self.key = key or base64.b64encode(hashlib.sha256(account.encode()).digest()).decode()
        self.pool_id = pool_id
        self.nodes = [Node(f"tvmps_{i:04d}") for i in range(nodes)]
        self.page_size = page_size
        self.time_scale = time_scale
        self.executor: Executor = executor or simulated_executor
        # resource id of a node identity -> azure.storage.blob.BlobServiceClient acting as it
        self.identities = dict(identities or {})
        self.bearer_tokens = set(bearer_tokens or ())
        # application id -> folder a task's AZ_BATCH_APP_PACKAGE_* variable points to
        self.app_packages: dict[str, Path] = {}
        self.jobs: dict[str, dict] = {}
        self.tasks: dict[str, dict[str, dict]] = {}  # job id -> task id -> task JSON
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, query)
        self.listed_items = 0  # task entries returned by list-tasks requests, all told
        self.server_errors_on_add = 0  # next N task results of addtaskcollection: servererror
        self._outcomes: list[tuple[str, Outcome]] = []
        self._runs: dict[str, _Run] = {}
        self._files: dict[str, Path] = {}  # "<job>/<task>" -> task directory
        self._cursors: dict[str, tuple[str, list[str] | None, str | None, int, int]] = {}
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._root = Path(tempfile.mkdtemp(prefix="fake-batch-"))
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._seq = itertools.count(1)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server, "start() the service first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeBatchService:
        handler = type("Handler", (_Handler,), {"service": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        for target in (self._server.serve_forever, self._dispatch):
            t = threading.Thread(target=target, name=f"fake-batch-{target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            for run in self._runs.values():
                run.kill = "stop"
                run.release.set()
            self._wake.notify_all()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            t.join(timeout=10)
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> FakeBatchService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- knobs and introspection ----------------------------------------------------------------

    def outcome(self, task_glob: str, outcome: Outcome) -> None:
        """Tasks whose id matches ``task_glob`` (fnmatch) run with ``outcome``; last one wins."""
        with self._lock:
            self._outcomes.append((task_glob, outcome))

    def release(self, job_id: str, task_id: str) -> None:
        """Let a held task finish."""
        with self._lock:
            run = self._runs.get(f"{job_id}/{task_id}")
            if run is None:
                raise KeyError(f"task {job_id}/{task_id} is not running")
            run.release.set()

    def preempt(self, job_id: str, task_id: str) -> None:
        """Preempt the Spot node running a task: Batch requeues the task."""
        with self._lock:
            run = self._runs.get(f"{job_id}/{task_id}")
            if run is None:
                raise KeyError(f"task {job_id}/{task_id} is not running")
            run.preempt = True
            run.release.set()

    def task(self, job_id: str, task_id: str) -> dict:
        with self._lock:
            return json.loads(json.dumps(self.tasks[job_id.lower()][task_id.lower()]))

    def job(self, job_id: str) -> dict | None:
        with self._lock:
            job = self.jobs.get(job_id.lower())
            return None if job is None else json.loads(json.dumps(job))

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0,
                   what: str = "condition") -> None:
        """Wait (bounded) for the service to reach a state; raises TimeoutError if it never does."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake Batch service: timed out waiting for {what}")
            time.sleep(0.01)

    def task_state(self, job_id: str, task_id: str) -> str | None:
        with self._lock:
            t = self.tasks.get(job_id.lower(), {}).get(task_id.lower())
            return None if t is None else t["state"]

    def node_shared_dirs(self) -> list[Path]:
        """Each node's AZ_BATCH_NODE_SHARED_DIR (what a start task would have prepared)."""
        dirs = []
        for node in self.nodes:
            d = self._root / "shared" / node.id
            d.mkdir(parents=True, exist_ok=True)
            dirs.append(d)
        return dirs

    def calls(self, method: str, path_regex: str) -> int:
        with self._lock:
            return sum(1 for m, p, _ in self.requests if m == method and re.search(path_regex, p))

    # -- API: jobs ------------------------------------------------------------------------------

    def create_job(self, body: dict) -> dict:
        job_id = body.get("id")
        if not job_id:
            raise ApiError(400, "MissingRequiredProperty", "A required property was not "
                           "specified in the request body.", [{"key": "PropertyName",
                                                                "value": "id"}])
        if not _ID.match(job_id):
            raise ApiError(400, "InvalidPropertyValue", "The value provided for one of the "
                           "properties in the request body is invalid.",
                           [{"key": "PropertyName", "value": "id"}])
        pool = (body.get("poolInfo") or {}).get("poolId")
        if not pool:
            raise ApiError(400, "MissingRequiredProperty", "A required property was not "
                           "specified in the request body.",
                           [{"key": "PropertyName", "value": "poolInfo"}])
        with self._lock:
            existing = self.jobs.get(job_id.lower())
            if existing is not None:
                if existing["state"] == "deleting":
                    raise ApiError(409, "JobBeingDeleted", "The specified job has been marked "
                                   "for deletion and is being garbage collected.")
                raise ApiError(409, "JobExists", "The specified job already exists.")
            now = _now()
            job = {**body, "url": f"{self.url}/jobs/{job_id}", "eTag": self._etag(),
                   "lastModified": _iso(now), "creationTime": _iso(now), "state": "active",
                   "stateTransitionTime": _iso(now), "priority": body.get("priority", 0),
                   "onAllTasksComplete": body.get("onAllTasksComplete", "noaction"),
                   "onTaskFailure": body.get("onTaskFailure", "noaction"),
                   "executionInfo": {"startTime": _iso(now), "poolId": pool}}
            job.setdefault("constraints", {})
            job["constraints"] = {"maxWallClockTime": UNLIMITED, "maxTaskRetryCount": 0,
                                  **job["constraints"]}
            self.jobs[job_id.lower()] = job
            self.tasks[job_id.lower()] = {}
            return job

    def get_job(self, job_id: str) -> dict:
        with self._lock:
            job = self.jobs.get(job_id.lower())
            if job is None:
                raise ApiError(404, "JobNotFound", "The specified job does not exist.")
            return job

    def terminate_job(self, job_id: str, reason: str | None) -> dict:
        with self._lock:
            job = self.get_job(job_id)
            if job["state"] == "completed":
                raise ApiError(409, "JobCompleted", "The specified job is already in a "
                               "completed state.")
            if job["state"] == "deleting":
                raise ApiError(409, "JobBeingDeleted", "The specified job has been marked "
                               "for deletion and is being garbage collected.")
            if job["state"] != "terminating":
                self._job_state(job, "terminating")
                job["executionInfo"]["terminateReason"] = reason or "UserTerminate"
                self._kill_running(job_id, "terminate")
                self._maybe_finish_termination(job)
            return job

    def delete_job(self, job_id: str) -> None:
        with self._lock:
            job = self.get_job(job_id)
            if job["state"] != "deleting":
                self._job_state(job, "deleting")
                self._kill_running(job_id, "delete")
            self._wake.notify_all()

    # -- API: tasks -----------------------------------------------------------------------------

    def add_tasks(self, job_id: str, body: dict, size: int) -> list[dict]:
        values = body.get("value")
        if not isinstance(values, list) or not values:
            raise ApiError(400, "MissingRequiredProperty", "A required property was not "
                           "specified in the request body.",
                           [{"key": "PropertyName", "value": "value"}])
        if size > MAX_COLLECTION_BYTES:
            raise ApiError(413, "RequestBodyTooLarge", "The request body is too large and "
                           "exceeds the maximum permissible limit.")
        if len(values) > MAX_TASKS_PER_COLLECTION:
            raise ApiError(400, "InvalidPropertyValue",
                           f"A task collection holds at most {MAX_TASKS_PER_COLLECTION} "
                           "tasks.", [{"key": "PropertyName", "value": "value"}])
        results = []
        with self._lock:
            job = self.get_job(job_id)
            if job["state"] == "deleting":
                raise ApiError(409, "JobBeingDeleted", "The specified job has been marked "
                               "for deletion and is being garbage collected.")
            if job["state"] in ("completed", "terminating"):
                raise ApiError(409, "JobCompleted", "The specified job is already in a "
                               "completed state.")
            tasks = self.tasks[job_id.lower()]
            for spec in values:
                task_id = spec.get("id", "")
                if self.server_errors_on_add > 0:
                    self.server_errors_on_add -= 1
                    results.append({"status": "servererror", "taskId": task_id, "error": {
                        "code": "ServerBusy", "message": {"lang": "en-US", "value":
                                                          "The server is busy."}}})
                    continue
                problem = self._task_problem(spec)
                if problem:
                    results.append({"status": "clienterror", "taskId": task_id,
                                    "error": problem})
                    continue
                if task_id.lower() in tasks:
                    results.append({"status": "clienterror", "taskId": task_id, "error": {
                        "code": "TaskExists", "message": {
                            "lang": "en-US", "value": "The specified task already exists."}}})
                    continue
                now = _now()
                task = {**spec, "url": f"{self.url}/jobs/{job['id']}/tasks/{task_id}",
                        "eTag": self._etag(), "lastModified": _iso(now),
                        "creationTime": _iso(now), "state": "active",
                        "stateTransitionTime": _iso(now), "requiredSlots":
                            spec.get("requiredSlots", 1),
                        "constraints": {"maxWallClockTime": UNLIMITED, "retentionTime": "P7D",
                                        "maxTaskRetryCount": job["constraints"].get(
                                            "maxTaskRetryCount", 0),
                                        **(spec.get("constraints") or {})},
                        "executionInfo": {"retryCount": 0, "requeueCount": 0},
                        "_seq": next(self._seq)}
                tasks[task_id.lower()] = task
                results.append({"status": "success", "taskId": task_id, "eTag": task["eTag"],
                                "lastModified": task["lastModified"], "location": task["url"]})
            self._wake.notify_all()
        return results

    def _task_problem(self, spec: dict) -> dict | None:
        def bad(prop: str, code: str = "InvalidPropertyValue") -> dict:
            return {"code": code, "message": {"lang": "en-US", "value": "The value provided "
                                              "for one of the properties in the request body "
                                              "is invalid."},
                    "values": [{"key": "PropertyName", "value": prop}]}
        if not _ID.match(spec.get("id") or ""):
            return bad("id")
        if not spec.get("commandLine"):
            return bad("commandLine", "MissingRequiredProperty")
        for rf in spec.get("resourceFiles") or []:
            sources = [k for k in ("httpUrl", "storageContainerUrl", "autoStorageContainerName")
                       if rf.get(k)]
            if len(sources) != 1:
                return bad("resourceFiles")
        for of in spec.get("outputFiles") or []:
            container = ((of.get("destination") or {}).get("container") or {})
            if not of.get("filePattern") or not container.get("containerUrl"):
                return bad("outputFiles")
            if (of.get("uploadOptions") or {}).get("uploadCondition") not in (
                    "tasksuccess", "taskfailure", "taskcompletion"):
                return bad("outputFiles.uploadOptions.uploadCondition")
        for key in ("maxWallClockTime", "retentionTime"):
            value = (spec.get("constraints") or {}).get(key)
            if value is not None:
                try:
                    parse_duration(value)
                except ValueError:
                    return bad(f"constraints.{key}")
        return None

    def list_tasks(self, job_id: str, query: dict[str, str]) -> tuple[list[dict], str | None]:
        token = query.get("$skiptoken")
        with self._lock:
            if token:
                if token not in self._cursors:
                    raise ApiError(400, "InvalidQueryParameterValue", "The skiptoken is not "
                                   "valid.", [{"key": "QueryParameterName",
                                               "value": "$skiptoken"}])
                job_id, select, flt, offset, size = self._cursors.pop(token)
            else:
                flt = query.get("$filter")
                select = query["$select"].split(",") if query.get("$select") else None
                size = min(int(query.get("maxresults") or self.page_size), self.page_size, 1000)
                offset = 0
            self.get_job(job_id)
            match = _compile_filter(flt)
            tasks = sorted(self.tasks[job_id.lower()].values(), key=lambda t: t["_seq"])
            picked = [t for t in tasks if match(t)]
            page = picked[offset:offset + size]
            next_token = None
            if offset + size < len(picked):
                next_token = uuid.uuid4().hex
                self._cursors[next_token] = (job_id, select, flt, offset + size, size)
            self.listed_items += len(page)
            return [_public(t, select) for t in page], next_token

    def get_task(self, job_id: str, task_id: str, select: list[str] | None) -> dict:
        with self._lock:
            self.get_job(job_id)
            task = self.tasks[job_id.lower()].get(task_id.lower())
            if task is None:
                raise ApiError(404, "TaskNotFound", "The specified task does not exist.")
            return _public(task, select)

    def task_counts(self, job_id: str) -> dict:
        with self._lock:
            self.get_job(job_id)
            c = {"active": 0, "running": 0, "completed": 0, "succeeded": 0, "failed": 0}
            for t in self.tasks[job_id.lower()].values():
                if t["state"] == "active":
                    c["active"] += 1
                elif t["state"] in ("preparing", "running"):
                    c["running"] += 1
                else:
                    c["completed"] += 1
                    ok = t["executionInfo"].get("result") == "success"
                    c["succeeded" if ok else "failed"] += 1
            return {"taskCounts": dict(c), "taskSlotCounts": dict(c)}

    def task_file(self, job_id: str, task_id: str, path: str) -> tuple[bytes, datetime]:
        with self._lock:
            task = self.get_task(job_id, task_id, None)
            root = self._files.get(f"{job_id.lower()}/{task_id.lower()}")
        if root is None or task["state"] == "active":
            raise ApiError(404, "FileNotFound", "The specified file does not exist.")
        target = (root / path).resolve()
        if root.resolve() not in target.parents or not target.is_file():
            raise ApiError(404, "FileNotFound", "The specified file does not exist.")
        data = target.read_bytes()
        return data, datetime.fromtimestamp(target.stat().st_mtime, UTC)

    # -- the pool -------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start active tasks of active jobs on free nodes, oldest first; reap deleted jobs."""
        with self._lock:
            while not self._stopping:
                for key, job in list(self.jobs.items()):
                    if job["state"] == "deleting" and not self._running_in(key):
                        del self.jobs[key]
                        self.tasks.pop(key, None)
                started = False
                free = [n for n in self.nodes if n.busy is None]
                if free:
                    for task, job in self._runnable():
                        node = free.pop(0)
                        self._start(job, task, node)
                        started = True
                        if not free:
                            break
                if not started:
                    self._wake.wait(timeout=0.05)

    def _runnable(self) -> list[tuple[dict, dict]]:
        out = []
        for key, job in self.jobs.items():
            if job["state"] != "active" or job["poolInfo"].get("poolId") != self.pool_id:
                continue
            out += [(t, job) for t in self.tasks[key].values() if t["state"] == "active"]
        out.sort(key=lambda tj: tj[0]["_seq"])
        return out

    def _running_in(self, job_key: str) -> bool:
        return any(k.split("/", 1)[0] == job_key for k in self._runs)

    def _start(self, job: dict, task: dict, node: Node) -> None:
        key = f"{job['id'].lower()}/{task['id'].lower()}"
        node.busy = key
        run = _Run()
        self._runs[key] = run
        self._task_state(task, "preparing")
        task["nodeInfo"] = {"affinityId": f"TVM:{node.id}", "nodeUrl":
                            f"{self.url}/pools/{self.pool_id}/nodes/{node.id}",
                            "poolId": self.pool_id, "nodeId": node.id,
                            "taskRootDirectory": f"workitems/{job['id']}/job-1/{task['id']}",
                            "taskRootDirectoryUrl": f"{self.url}/pools/{self.pool_id}/nodes/"
                                                    f"{node.id}/files/workitems/{job['id']}/"
                                                    f"job-1/{task['id']}"}
        outcome = self._outcome_for(task["id"])
        t = threading.Thread(target=self._run_task, args=(job, task, node, run, outcome),
                             name=f"fake-node-{node.id}", daemon=True)
        t.start()

    def _outcome_for(self, task_id: str) -> Outcome:
        chosen = Outcome()
        for pattern, outcome in self._outcomes:
            if fnmatch.fnmatchcase(task_id, pattern):
                chosen = outcome
        return chosen

    def _run_task(self, job: dict, task: dict, node: Node, run: _Run, outcome: Outcome) -> None:
        key = f"{job['id'].lower()}/{task['id'].lower()}"
        task_dir = self._root / job["id"] / task["id"] / f"try-{next(self._seq)}"
        wd = task_dir / "wd"
        wd.mkdir(parents=True)
        with self._lock:
            self._files[key] = task_dir
        try:
            failure = self._download(task, wd)
            if failure:  # Batch does not retry a failed resource file download
                self._complete(task, None, failure)
                return
            with self._lock:
                if run.kill:
                    self._complete(task, None, self._killed_info(run))
                    return
                self._task_state(task, "running")
                task["executionInfo"]["startTime"] = _iso(_now())
                preempt_now = outcome.preempt > task["executionInfo"]["requeueCount"]
            if preempt_now:
                self._requeue(task, run)
                return
            env = self._task_env(job, task, task_dir, wd, node)
            code = self.executor(self, task, task_dir, env, outcome)
            with self._lock:
                if run.preempt:
                    self._requeue(task, run)
                    return
                if run.kill:
                    self._complete(task, None, self._killed_info(run))
                    return
            limit = parse_duration(task["constraints"]["maxWallClockTime"])
            # Simulated runs take service time, not real time: their timestamps say so.
            ran_s = min(outcome.run_s, limit) if self.executor is simulated_executor else None
            if code == _TIMED_OUT or (self.executor is simulated_executor
                                      and outcome.run_s > limit):
                # The service kills the process (an OS exit code) and still uploads the
                # outputs whose condition allows a failure (the logs).
                self._upload(task, task_dir, wd, 137)
                self._complete(task, 137, {
                    "category": "usererror", "code": "TaskEnded",
                    "message": "The task was terminated because it exceeded its maximum "
                               "wall clock time.",
                    "details": [{"name": "MaxWallClockTime",
                                 "value": task["constraints"]["maxWallClockTime"]}]}, ran_s)
                return
            retries = task["executionInfo"]["retryCount"]
            if code != 0 and retries < task["constraints"].get("maxTaskRetryCount", 0):
                # Batch retries every non-zero exit, whatever the code (hence our design).
                with self._lock:
                    task["executionInfo"]["retryCount"] = retries + 1
                    task["executionInfo"]["lastRetryTime"] = _iso(_now())
                self._upload(task, task_dir, wd, code)
                with self._lock:
                    self._task_state(task, "active")
                return
            upload_error = self._upload(task, task_dir, wd, code)
            info = None
            if code != 0:
                info = {"category": "usererror", "code": "FailureExitCode",
                        "message": "The task process exited with an unexpected exit code",
                        "details": [{"name": "Message", "value": "The task process exited "
                                                                 "with an unexpected exit code"}]}
            elif upload_error:
                info = {"category": "usererror", "code": "FileUploadError",
                        "message": upload_error}
            self._complete(task, code, info, ran_s)
        except Exception as exc:  # a bug in the fake must show up as a failed task, not a hang
            self._complete(task, None, {"category": "servererror", "code": "FakeNodeError",
                                        "message": f"{type(exc).__name__}: {exc}"})
        finally:
            with self._lock:
                if self._runs.get(key) is run:
                    del self._runs[key]
                node.busy = None
                job_now = self.jobs.get(job["id"].lower())
                if job_now is not None:
                    self._maybe_finish_termination(job_now)
                self._wake.notify_all()

    def _requeue(self, task: dict, run: _Run) -> None:
        with self._lock:
            info = task["executionInfo"]
            info["requeueCount"] += 1
            info["lastRequeueTime"] = _iso(_now())
            info.pop("startTime", None)
            task.pop("nodeInfo", None)
            run.preempt = False
            self._task_state(task, "active")
            self._wake.notify_all()

    def _killed_info(self, run: _Run) -> dict:
        return {"category": "usererror", "code": "TaskEnded",
                "message": "Task Was Ended by User Request"
                if run.kill == "terminate" else "The job is being deleted."}

    def _complete(self, task: dict, exit_code: int | None, failure: dict | None,
                  ran_s: float | None = None) -> None:
        with self._lock:
            info = task["executionInfo"]
            info["endTime"] = _iso(_now())
            info.setdefault("startTime", info["endTime"])
            if ran_s is not None:
                start = datetime.strptime(info["startTime"], "%Y-%m-%dT%H:%M:%S.%fZ")
                info["endTime"] = _iso(start.replace(tzinfo=UTC) + timedelta(seconds=ran_s))
            if exit_code is not None:
                info["exitCode"] = exit_code
            else:
                info.pop("exitCode", None)
            info["result"] = "success" if exit_code == 0 and not failure else "failure"
            if failure:
                info["failureInfo"] = failure
            else:
                info.pop("failureInfo", None)
            self._task_state(task, "completed")

    def _download(self, task: dict, wd: Path) -> dict | None:
        """Download the task's resource files; a failure is a failureInfo (never retried)."""
        for rf in task.get("resourceFiles") or []:
            url, path = rf.get("httpUrl"), rf.get("filePath")
            if not url or not path:
                return {"category": "usererror", "code": "ResourceFileSourceNotSupported",
                        "message": "Only httpUrl resource files are simulated."}
            target = (wd / path).resolve()
            if wd.resolve() not in target.parents:
                return {"category": "usererror", "code": "InvalidFilePath",
                        "message": f"filePath {path} leaves the working directory"}
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                identity = (rf.get("identityReference") or {}).get("resourceId")
                if identity:
                    service = self.identities.get(identity)
                    if service is None:
                        return {"category": "usererror", "code": "BlobAccessDenied",
                                "message": "The node identity is not assigned to the pool.",
                                "details": [{"name": "IdentityReference", "value": identity},
                                            {"name": "FilePath", "value": path}]}
                    container, name = _blob_from_url(url)
                    data = service.get_blob_client(container, name).download_blob().readall()
                else:
                    with urllib.request.urlopen(url, timeout=30) as resp:
                        data = resp.read()
                target.write_bytes(data)
            except urllib.error.HTTPError as exc:
                code = {403: "BlobAccessDenied", 404: "BlobNotFound"}.get(exc.code,
                                                                          "BlobDownloadMiscError")
                return {"category": "usererror", "code": code,
                        "message": f"Azure Blob Storage returned {exc.code} for a resource file",
                        "details": [{"name": "FilePath", "value": path},
                                    {"name": "HttpStatusCode", "value": str(exc.code)}]}
            except Exception as exc:
                name = type(exc).__name__
                code = "BlobNotFound" if name == "ResourceNotFoundError" else (
                    "BlobAccessDenied" if name in ("ClientAuthenticationError",
                                                   "HttpResponseError") else
                    "BlobDownloadMiscError")
                return {"category": "usererror", "code": code,
                        "message": f"resource file download failed: {name}",
                        "details": [{"name": "FilePath", "value": path}]}
        return None

    def _upload(self, task: dict, task_dir: Path, wd: Path, exit_code: int | None) -> str | None:
        """Upload output files by their upload condition. Returns an error message, if any."""
        for of in task.get("outputFiles") or []:
            condition = of["uploadOptions"]["uploadCondition"]
            if condition == "tasksuccess" and exit_code != 0:
                continue
            if condition == "taskfailure" and exit_code == 0:
                continue
            dest = of["destination"]["container"]
            matches = _glob(wd, of["filePattern"])
            for path in matches:
                if any(c in of["filePattern"] for c in "*?["):
                    rel = path.relative_to(wd).as_posix() if wd in path.parents else path.name
                    blob_path = f"{dest.get('path', '').rstrip('/')}/{rel}".lstrip("/")
                else:
                    blob_path = dest.get("path") or path.name
                try:
                    self._put_blob(dest, blob_path, path.read_bytes())
                except Exception as exc:
                    return (f"output file {of['filePattern']} could not be uploaded to "
                            f"{blob_path}: {type(exc).__name__}: {exc}")
        return None

    def _put_blob(self, dest: dict, blob_path: str, data: bytes) -> None:
        identity = (dest.get("identityReference") or {}).get("resourceId")
        base, _, sas = dest["containerUrl"].partition("?")
        if identity:
            service = self.identities.get(identity)
            if service is None:
                raise PermissionError(f"identity {identity} is not assigned to the pool")
            container, _ = _blob_from_url(base + "/x")
            service.get_blob_client(container, blob_path).upload_blob(data, overwrite=True)
            return
        url = f"{base.rstrip('/')}/{urllib.parse.quote(blob_path)}" + (f"?{sas}" if sas else "")
        req = urllib.request.Request(url, data=data, method="PUT", headers={
            "x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06",
            "Content-Length": str(len(data))})
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()

    def _task_env(self, job: dict, task: dict, task_dir: Path, wd: Path, node: Node) -> dict:
        env = {e["name"]: e.get("value") or "" for e in task.get("environmentSettings") or []}
        for e in job.get("commonEnvironmentSettings") or []:
            env.setdefault(e["name"], e.get("value") or "")
        shared = self._root / "shared" / node.id
        shared.mkdir(parents=True, exist_ok=True)
        env.update({"AZ_BATCH_ACCOUNT_NAME": self.account, "AZ_BATCH_ACCOUNT_URL": self.url,
                    "AZ_BATCH_JOB_ID": job["id"], "AZ_BATCH_TASK_ID": task["id"],
                    "AZ_BATCH_POOL_ID": self.pool_id, "AZ_BATCH_NODE_ID": node.id,
                    "AZ_BATCH_TASK_DIR": str(task_dir), "AZ_BATCH_TASK_WORKING_DIR": str(wd),
                    "AZ_BATCH_NODE_SHARED_DIR": str(shared),
                    "AZ_BATCH_NODE_ROOT_DIR": str(self._root)})
        for ref in task.get("applicationPackageReferences") or []:
            app, version = ref["applicationId"], ref.get("version")
            name = "AZ_BATCH_APP_PACKAGE_" + re.sub(r"[.\-#]", "_", app.lower())
            if version:
                name += "_" + re.sub(r"[.\-#]", "_", version.lower())
            folder = self.app_packages.get(app) or (
                self._root / "applications" / f"{app}#{version or 'default'}")
            folder.mkdir(parents=True, exist_ok=True)
            env[name] = str(folder)
        return env

    # -- state helpers (hold the lock) ------------------------------------------------------------

    def _etag(self) -> str:
        return f"0x8DD{uuid.uuid4().hex[:12].upper()}"

    def _task_state(self, task: dict, state: str) -> None:
        now = _iso(_now())
        task["previousState"], task["previousStateTransitionTime"] = (
            task["state"], task["stateTransitionTime"])
        task["state"], task["stateTransitionTime"] = state, now
        task["eTag"], task["lastModified"] = self._etag(), now

    def _job_state(self, job: dict, state: str) -> None:
        now = _iso(_now())
        job["previousState"], job["previousStateTransitionTime"] = (
            job["state"], job["stateTransitionTime"])
        job["state"], job["stateTransitionTime"] = state, now
        job["eTag"], job["lastModified"] = self._etag(), now

    def _kill_running(self, job_id: str, why: str) -> None:
        prefix = job_id.lower() + "/"
        for key, run in self._runs.items():
            if key.startswith(prefix):
                run.kill = why
                run.release.set()

    def _maybe_finish_termination(self, job: dict) -> None:
        if job["state"] == "terminating" and not self._running_in(job["id"].lower()):
            self._job_state(job, "completed")
            job["executionInfo"]["endTime"] = _iso(_now())


_TIMED_OUT = -9999  # what an executor returns when the task outlived maxWallClockTime


def _glob(wd: Path, pattern: str) -> list[Path]:
    """Files matching an output filePattern, relative to the working directory (``..`` allowed:
    stdout.txt and stderr.txt live in the task directory, one level up)."""
    base = wd
    parts = pattern.split("/")
    while parts and parts[0] == "..":
        base = base.parent
        parts = parts[1:]
    rel = "/".join(parts)
    if not any(c in rel for c in "*?["):
        f = base / rel
        return [f] if f.is_file() else []
    return sorted(p for p in base.glob(rel) if p.is_file())


def _blob_from_url(url: str) -> tuple[str, str]:
    """(container, blob name) of a blob URL, for Azurite-style (account in path) and Azure URLs."""
    parsed = urllib.parse.urlparse(url)
    parts = urllib.parse.unquote(parsed.path).lstrip("/").split("/")
    if parsed.hostname in ("127.0.0.1", "localhost"):
        parts = parts[1:]  # Azurite: /<account>/<container>/<blob>
    return parts[0], "/".join(parts[1:])


def _public(task: dict, select: list[str] | None) -> dict:
    out = {k: v for k, v in task.items() if not k.startswith("_")}
    if select:
        out = {k: v for k, v in out.items() if k in select}
    return json.loads(json.dumps(out))


_CLAUSE = re.compile(r"\s*\(?\s*([A-Za-z/]+)\s+(eq|ne)\s+'([^']*)'\s*\)?\s*")


def _compile_filter(text: str | None) -> Callable[[dict], bool]:
    """The OData subset Batch accepts for list tasks: ``field eq|ne 'value'`` joined by
    ``and``/``or`` (``and`` binds tighter); fields ``id``, ``state``, ``executionInfo/result``."""
    if not text:
        return lambda t: True
    alternatives = []
    for alt in re.split(r"\s+or\s+", text.strip()):
        clauses = []
        for part in re.split(r"\s+and\s+", alt):
            m = _CLAUSE.fullmatch(part)
            if not m or m.group(1) not in ("id", "state", "executionInfo/result"):
                raise ApiError(400, "InvalidQueryParameterValue", "The value for one of the "
                               "query parameters specified in the request URI is invalid.",
                               [{"key": "QueryParameterName", "value": "$filter"}])
            clauses.append((m.group(1), m.group(2), m.group(3)))
        alternatives.append(clauses)

    def get(task: dict, name: str) -> Any:
        value: Any = task
        for piece in name.split("/"):
            value = (value or {}).get(piece)
        return value

    def match(task: dict) -> bool:
        return any(all((get(task, f) == v) == (op == "eq") for f, op, v in clauses)
                   for clauses in alternatives)
    return match


# --------------------------------------------------------------------------------------------
# executors: what "running the command line" means on the fake node


def simulated_executor(service: FakeBatchService, task: dict, task_dir: Path, env: dict,
                       outcome: Outcome) -> int:
    """Pretend to be a chunk task: frame events, an error event on failure, outputs on success."""
    wd = task_dir / "wd"
    stdout = task_dir / "stdout.txt"
    stderr = task_dir / "stderr.txt"
    lines = [json.dumps({"event": "frame", "index": i, "seconds": 0.01})
             for i in range(outcome.frames)]
    if outcome.hold:
        stdout.write_text(outcome.held_stdout if outcome.held_stdout is not None else
                          "".join(line + "\n" for line in lines[:outcome.frames_before_hold]))
        key = f"{task['id']}"
        run = service._runs.get(f"{env['AZ_BATCH_JOB_ID'].lower()}/{key.lower()}")
        if run is not None:
            run.release.wait()
    elif outcome.run_s and service.time_scale:
        time.sleep(outcome.run_s * service.time_scale)
    if outcome.stdout is not None:
        stdout.write_text(outcome.stdout)
    else:
        done = [json.dumps({"event": "done", "frames": outcome.frames})] if \
            outcome.exit_code == 0 else []
        stdout.write_text("".join(line + "\n" for line in lines + done))
    if outcome.stderr is not None:
        stderr.write_text(outcome.stderr)
    elif outcome.exit_code != 0:
        stderr.write_text("Traceback (most recent call last):\n  ...\n" + json.dumps(
            {"event": "error", "reason": outcome.reason,
             "bad_input": outcome.exit_code == 2}) + "\n")
    else:
        stderr.write_text("")
    if outcome.exit_code == 0 and outcome.write_outputs:
        inputs = [wd / rf["filePath"] for rf in task.get("resourceFiles") or []]
        payload = inputs[0].read_bytes() if inputs else b"output"
        for of in task.get("outputFiles") or []:
            pattern = of["filePattern"]
            if pattern.startswith("../") or any(c in pattern for c in "*?["):
                continue
            (wd / pattern).parent.mkdir(parents=True, exist_ok=True)
            (wd / pattern).write_bytes(payload)
    return outcome.exit_code


def subprocess_executor(service: FakeBatchService, task: dict, task_dir: Path, env: dict,
                        outcome: Outcome) -> int:
    """Run the task's command line for real, the way a Linux node does: split into words
    (quotes respected, no shell, no variable expansion) and executed in the working directory,
    stdout/stderr to the task directory, killed at maxWallClockTime (scaled by time_scale)."""
    argv = shlex.split(task["commandLine"])
    limit = parse_duration(task["constraints"]["maxWallClockTime"])
    timeout = None if limit > 10 * 365 * 86400 else max(0.5, limit * (service.time_scale or 1.0))
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    with open(task_dir / "stdout.txt", "wb") as out, open(task_dir / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(argv, cwd=task_dir / "wd", env=full_env, stdout=out, stderr=err)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return _TIMED_OUT


# --------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    service: FakeBatchService
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        svc = self.service
        request_id = str(uuid.uuid4())
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parsed = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        with svc._lock:
            svc.requests.append((method, parsed.path, query))
        try:
            self._authenticate(method, parsed)
            if query.get("api-version") != API_VERSION:
                raise ApiError(400, "InvalidApiVersion" if "api-version" in query else
                               "MissingRequiredQueryParameter",
                               f"The fake serves api-version {API_VERSION}.")
            status, payload, headers = self._route(method, parsed.path, query, body)
        except ApiError as exc:
            status, headers = exc.status, {}
            payload = {"odata.metadata": f"{svc.url}/{ODATA_ERROR}", "code": exc.code,
                       "message": {"lang": "en-US", "value": f"{exc.message}\nRequestId:"
                                   f"{request_id}\nTime:{_iso(_now())}"}}
            if exc.values:
                payload["values"] = exc.values
        except json.JSONDecodeError:
            status, headers = 400, {}
            payload = {"code": "InvalidRequestBody", "message": {
                "lang": "en-US", "value": "The specified Request Body is not syntactically "
                                          "valid."}}
        self.send_response(status)
        self.send_header("request-id", request_id)
        if self.headers.get("client-request-id"):
            self.send_header("client-request-id", self.headers["client-request-id"])
        self.send_header("DataServiceVersion", "3.0")
        for k, v in headers.items():
            self.send_header(k, v)
        if isinstance(payload, bytes):
            data = payload
        elif payload is None:
            data = b""
        else:
            data = json.dumps(payload).encode()
            self.send_header("Content-Type", "application/json;odata=minimalmetadata")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authenticate(self, method: str, parsed: urllib.parse.SplitResult) -> None:
        svc = self.service
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            if auth[7:] in svc.bearer_tokens:
                return
            raise ApiError(401, "InvalidAuthenticationTokenAudience" if svc.bearer_tokens else
                           "AuthenticationFailed", "Server failed to authenticate the request.")
        if not auth.startswith("SharedKey "):
            raise ApiError(401, "MissingRequiredHeader", "The Authorization header is missing.")
        account, _, signature = auth[len("SharedKey "):].partition(":")
        if account != svc.account:
            raise ApiError(403, "AuthenticationFailed", "Server failed to authenticate the "
                           "request: unknown account.")
        if not self.headers.get("ocp-date") and not self.headers.get("Date"):
            raise ApiError(403, "AuthenticationFailed", "A date header is required.")
        expected = _shared_key_signature(svc.account, svc.key, method, parsed, self.headers)
        if not hmac.compare_digest(expected, signature):
            raise ApiError(403, "AuthenticationFailed", "Server failed to authenticate the "
                           "request. Make sure the value of Authorization header is formed "
                           "correctly including the signature.")

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes
               ) -> tuple[int, Any, dict[str, str]]:
        svc = self.service
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        select = query["$select"].split(",") if query.get("$select") else None
        if parts == ["jobs"] and method == "POST":
            job = svc.create_job(json.loads(body or b"{}"))
            return 201, None, self._entity_headers(job, f"{svc.url}/jobs/{job['id']}")
        if len(parts) >= 2 and parts[0] == "jobs":
            job_id = parts[1]
            rest = parts[2:]
            if not rest and method == "GET":
                job = svc.get_job(job_id)
                out = _public(job, select)
                out["odata.metadata"] = f"{svc.url}/$metadata#jobs/@Element"
                return 200, out, self._entity_headers(job)
            if not rest and method == "DELETE":
                svc.delete_job(job_id)
                return 202, None, {}
            if rest == ["terminate"] and method == "POST":
                reason = json.loads(body).get("terminateReason") if body else None
                job = svc.terminate_job(job_id, reason)
                return 202, None, self._entity_headers(job)
            if rest == ["taskcounts"] and method == "GET":
                counts = svc.task_counts(job_id)
                counts["odata.metadata"] = f"{svc.url}/$metadata#taskcountsresult/@Element"
                return 200, counts, {}
            if rest == ["addtaskcollection"] and method == "POST":
                results = svc.add_tasks(job_id, json.loads(body or b"{}"), len(body))
                return 200, {"odata.metadata": f"{svc.url}/$metadata#taskaddresult",
                             "value": results}, {}
            if rest == ["tasks"] and method == "GET":
                tasks, token = svc.list_tasks(job_id, query)
                out: dict[str, Any] = {"odata.metadata": f"{svc.url}/$metadata#tasks",
                                       "value": tasks}
                if token:
                    out["odata.nextLink"] = (f"{svc.url}/jobs/{job_id}/tasks?api-version="
                                             f"{API_VERSION}&$skiptoken={token}")
                return 200, out, {}
            if len(rest) == 2 and rest[0] == "tasks" and method == "GET":
                task = svc.get_task(job_id, rest[1], select)
                task["odata.metadata"] = f"{svc.url}/$metadata#tasks/@Element"
                return 200, task, self._entity_headers(task)
            if len(rest) >= 4 and rest[0] == "tasks" and rest[2] == "files" and method == "GET":
                data, modified = svc.task_file(job_id, rest[1], "/".join(rest[3:]))
                return 200, data, {
                    "Content-Type": "application/octet-stream",
                    "Last-Modified": _rfc1123(modified), "ocp-creation-time": _rfc1123(modified),
                    "ocp-batch-file-isdirectory": "False", "ocp-batch-file-mode": "0o100644",
                    "ocp-batch-file-url": f"{svc.url}{path}"}
        raise ApiError(404, "ResourceNotFound" if method == "GET" else "InvalidUri",
                       f"The fake does not serve {method} {path}.")

    @staticmethod
    def _entity_headers(entity: dict, location: str | None = None) -> dict[str, str]:
        modified = datetime.strptime(entity["lastModified"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=UTC)
        headers = {"ETag": entity["eTag"], "Last-Modified": _rfc1123(modified),
                   "DataServiceId": entity.get("url", "")}
        if location:
            headers["Location"] = location
        return headers


def _shared_key_signature(account: str, key: str, method: str, parsed: urllib.parse.SplitResult,
                          headers: Any) -> str:
    """The Batch SharedKey signature of a request, computed from what arrived on the wire.

    StringToSign = VERB, then the standard headers one per line (Content-Length is "0" for a
    body-less non-GET request), then the ``ocp-*`` headers as ``name:value`` lines (lower-case
    names, sorted), then ``/account/path`` and each query parameter as ``\\nname:value``
    (decoded, sorted by name).
    """
    def h(name: str) -> str:
        return headers.get(name) or ""
    length = h("Content-Length")
    if method not in ("GET", "HEAD") and length in ("",):
        length = "0"
    lines = [method, h("Content-Encoding"), h("Content-Language"), length, h("Content-MD5"),
             h("Content-Type"), h("Date"), h("If-Modified-Since"), h("If-Match"),
             h("If-None-Match"), h("If-Unmodified-Since"), h("Range")]
    text = "\n".join(lines) + "\n"
    ocp = sorted((k.lower(), v) for k, v in headers.items() if k.lower().startswith("ocp-") and v)
    text += "".join(f"{k}:{v}\n" for k, v in ocp)
    text += f"/{account}{parsed.path}"
    query = urllib.parse.parse_qs(parsed.query)
    for name in sorted(query):
        if query[name][0]:
            text += f"\n{name}:{query[name][0]}"
    digest = hmac.new(base64.b64decode(key), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition"
             ) -> None:
    """Bounded wait for a condition (not a timed assertion: the timeout only stops a hang)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


__all__ = ["API_VERSION", "FakeBatchService", "Outcome", "parse_duration", "simulated_executor",
           "subprocess_executor", "wait_for"]
