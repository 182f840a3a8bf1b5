"""A host-less Durable Functions host: runs the real orchestrator through the SDK's replay engine.

Azure Functions Core Tools cannot be installed everywhere, so this plays the Durable
extension's part for local runs and tests:

- it keeps each instance's history and **replays the orchestrator from the start on every
  episode** through ``Orchestrator.create``'s handle — exactly what the extension does;
- functions are found in the real Python worker's index and invoked through the worker's
  converters (``stylebatch/worker.py``): the orchestrator gets its context as the orchestration
  trigger's converter builds it, activities get their input decoded from JSON text by the
  activity trigger's converter and their result encoded to JSON text by it;
- activities run in-process (thread pool); failures become ``TaskFailed`` events;
- timers fire on a clock: ``RealClock`` (wall time) or ``VirtualClock`` (jumps to the next
  timer when nothing else can happen, after an optional ``on_idle`` hook — tests never sleep);
- **non-determinism is detected**: every replay must schedule the same actions, in the same
  order, with the same inputs, as the history says it did;
- ``continue_as_new`` restarts the instance with a fresh history;
- a loopback HTTP server answers the real ``DurableOrchestrationClient`` (start, status,
  query, terminate), so client functions (blob trigger, HTTP API) run unchanged;
- with a ``store`` (stylebatch/durable_store.py) every instance is **kept in storage** and
  reloaded on start: interrupted instances resume (activities that were running when the
  process died run again — at least once, as in Azure), finished ones stay listed;
- activities run on daemon threads, so a stopped host never keeps the process alive.

    host = DurableHost(worker.load_app(), clock=VirtualClock())
    host.start_background()
    ... call functions through FunctionHost (stylebatch/local_host.py) ...
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from azure.durable_functions.models.actions import ActionType as Action
from azure.durable_functions.models.history import HistoryEventType as Event
from dateutil.parser import isoparse

from stylebatch import worker
from stylebatch.worker import Datum, WorkerApp

log = logging.getLogger(__name__)
# History event and action numbers are the SDK's own (Event, Action: IntEnums, so they equal the
# ints in the JSON and serialise as those ints).

RUNNING_STATES = ("Pending", "Running")


class NonDeterminismError(Exception):
    pass


def _ts(t: datetime) -> str:
    assert t.tzinfo is not None, "timestamps must be timezone-aware"
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RealClock:
    virtual = False

    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """Time that stands still until the host jumps it to the next timer."""

    virtual = True

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime.now(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance_to(self, t: datetime) -> None:
        with self._lock:
            self._now = max(self._now, t)


@dataclass
class Instance:
    id: str
    name: str
    input: str | None  # JSON text
    created: datetime
    updated: datetime
    status: str = "Pending"
    history: list[dict[str, Any]] = field(default_factory=list)
    new_events: list[dict[str, Any]] = field(default_factory=list)
    scheduled: list[tuple] = field(default_factory=list)  # signatures of scheduled actions
    timers: dict[int, datetime] = field(default_factory=dict)  # timer id -> fire at
    in_flight: int = 0  # activities running
    generation: int = 0  # bumps on continue_as_new; stale results are dropped
    custom_status: Any = None
    output: Any = None
    episodes: int = 0
    replayed_events: int = 0  # total events replayed (a measure of replay cost)
    version: int = 0  # bumps on every saved change; an older snapshot never overwrites a newer
    # The largest a generation's history, its input and the custom status have been (events,
    # JSON bytes): what Durable stores and replays grows with these, so tests and benches
    # hold them to a bound.
    peak_history: int = 0
    peak_history_bytes: int = 0
    peak_input_bytes: int = 0
    peak_status_bytes: int = 0

    _SAVED = ("id", "name", "input", "status", "history", "new_events", "generation",
              "custom_status", "output", "episodes", "replayed_events", "version",
              "peak_history", "peak_history_bytes", "peak_input_bytes", "peak_status_bytes")

    def to_record(self) -> dict[str, Any]:
        record = {k: getattr(self, k) for k in self._SAVED}
        record.update(created=_ts(self.created), updated=_ts(self.updated),
                      scheduled=[list(s) for s in self.scheduled],
                      timers={str(k): _ts(v) for k, v in self.timers.items()})
        return json.loads(json.dumps(record))  # a deep copy, safe to write outside the lock

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Instance:
        inst = cls(**{k: record[k] for k in cls._SAVED if k in record},
                   created=_aware(isoparse(record["created"])),
                   updated=_aware(isoparse(record["updated"])))
        inst.scheduled = [tuple(s) for s in record["scheduled"]]
        inst.timers = {int(k): _aware(isoparse(v)) for k, v in record["timers"].items()}
        return inst

    def outstanding_activities(self) -> list[dict[str, Any]]:
        """TaskScheduled events of this generation whose result has not arrived."""
        answered = {e.get("TaskScheduledId") for e in self.history + self.new_events
                    if e["EventType"] in (Event.TASK_COMPLETED, Event.TASK_FAILED)}
        return [e for e in self.history
                if e["EventType"] == Event.TASK_SCHEDULED and e["EventId"] not in answered]


class _DaemonPool:
    """Activity workers on daemon threads: a host that stops (Ctrl-C, SIGTERM) abandons
    running activities instead of waiting for them to give up against stopped storage."""

    def __init__(self, workers: int, prefix: str):
        self._queue: queue.Queue[tuple | None] = queue.Queue()
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"{prefix}-{i}")
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._queue.put((fn, args))

    def shutdown(self) -> None:
        while True:  # drop what has not started
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args = item
            try:
                fn(*args)
            except Exception:  # _run_activity reports its own errors; never lose a worker
                log.exception("activity worker error")


class DurableHost:
    """Orchestration engine + the extension's HTTP API for the Durable client."""

    def __init__(self, app: WorkerApp, clock: RealClock | VirtualClock | None = None,
                 on_idle: Callable[[float], None] | None = None, activity_workers: int = 4,
                 task_hub: str = "stylebatch", store: Any = None):
        self.clock = clock or RealClock()
        self.on_idle = on_idle
        self.task_hub = task_hub
        self.store = store  # a BlobInstanceStore, or None to keep instances in memory only
        # The extension knows orchestrators and activities by function name (the worker's
        # index); the conformance test holds the trigger's own name property to it.
        self.app = app
        self.orchestrators = {f.name: f for f in app.with_trigger("orchestrationTrigger")}
        self.activities = {f.name: f for f in app.with_trigger("activityTrigger")}
        self.instances: dict[str, Instance] = {}
        self._cond = threading.Condition()
        self._pool = _DaemonPool(activity_workers, "activity")
        self._stop = threading.Event()
        self._save_lock = threading.Lock()
        self._saved_versions: dict[str, int] = {}
        self.resumed: list[str] = []  # instances found running in the store at start
        if store is not None:
            self._load()
        self._thread: threading.Thread | None = None
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                             name="durable-host-loop")
        self._loop_thread.start()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- client side (what the extension's HTTP API does) ---------------------------------------

    def start_instance(self, name: str, instance_id: str, input_json: str | None) -> str:
        if name not in self.orchestrators:
            raise KeyError(f"orchestrator {name!r} does not exist")
        now = self.clock.now()
        with self._cond:
            old = self.instances.get(instance_id)
            if old is not None and old.status in RUNNING_STATES:
                raise RuntimeError(f"An Orchestration instance with the status {old.status} "
                                   f"already exists: {instance_id}")
            inst = Instance(id=instance_id, name=name, input=input_json, created=now, updated=now)
            if old is not None:
                inst.generation = old.generation + 1
                inst.version = old.version
            inst.new_events.append({"EventType": Event.EXECUTION_STARTED, "EventId": -1,
                                    "IsPlayed": False, "Timestamp": _ts(now), "Name": name,
                                    "Input": input_json, "Version": ""})
            self.instances[instance_id] = inst
            record = self._snapshot_locked(inst)
            self._cond.notify_all()
        self._save(record)  # before answering: an accepted start survives a crash
        return instance_id

    def terminate(self, instance_id: str, reason: str) -> bool:
        with self._cond:
            inst = self.instances.get(instance_id)
            if inst is None or inst.status not in RUNNING_STATES:
                return False
            inst.status = "Terminated"
            inst.output = reason
            inst.timers.clear()
            inst.updated = self.clock.now()
            record = self._snapshot_locked(inst)
            self._cond.notify_all()
        self._save(record)
        return True

    def status_json(self, inst: Instance, show_input: bool = False,
                    show_history: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": inst.name, "instanceId": inst.id, "createdTime": _ts(inst.created),
            "lastUpdatedTime": _ts(inst.updated), "runtimeStatus": inst.status,
            "customStatus": inst.custom_status, "output": inst.output,
            "input": json.loads(inst.input) if show_input and inst.input else None,
        }
        if show_history:
            body["history"] = list(inst.history)
        return body

    # -- engine ------------------------------------------------------------------------------

    def start_background(self) -> DurableHost:
        with self._cond:  # activities that were running when the last process died run again
            for inst in self.instances.values():
                if inst.status not in RUNNING_STATES:
                    continue
                for event in inst.outstanding_activities():
                    inst.in_flight += 1
                    self._pool.submit(self._run_activity, inst, inst.generation,
                                      event["EventId"], event["Name"], event.get("Input"))
        self._thread = threading.Thread(target=self._dispatch_forever, daemon=True,
                                        name="durable-dispatcher")
        self._thread.start()
        return self

    # -- storage ---------------------------------------------------------------------------

    def _load(self) -> None:
        for record in self.store.load_all():
            try:
                inst = Instance.from_record(record)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("skipping instance record %s: %s", record.get("id"), exc)
                continue
            self.instances[inst.id] = inst
            self._saved_versions[inst.id] = inst.version
            if inst.status in RUNNING_STATES:
                self.resumed.append(inst.id)
        if self.resumed:
            log.warning("resuming %d interrupted orchestration(s): %s", len(self.resumed),
                        ", ".join(sorted(self.resumed)))

    def _snapshot_locked(self, inst: Instance) -> dict[str, Any] | None:
        """The record to save for ``inst`` (call with the lock held), None without a store."""
        if self.store is None:
            return None
        inst.version += 1
        return inst.to_record()

    def _save(self, record: dict[str, Any] | None) -> None:
        if record is None or self._stop.is_set():
            return  # a stopping host leaves the last saved state for the next start to resume
        with self._save_lock:
            if record["version"] <= self._saved_versions.get(record["id"], -1):
                return  # a newer snapshot of this instance was written already
            self.store.save(record)
            self._saved_versions[record["id"]] = record["version"]

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread:
            self._thread.join(10)
        self._pool.shutdown()
        if self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        # The Durable SDK keeps one aiohttp session per process, bound to the loop that made it:
        # close it with this loop, or the next host in this process would get a session of a
        # dead loop. The SDK has no public way to close it (its own docstring says there is no
        # shutdown hook), so this is the one private call left.
        try:
            from azure.durable_functions.models.utils import http_utils

            asyncio.run_coroutine_threadsafe(http_utils._close_session(), self.loop).result(10)
        except Exception:
            log.debug("could not close the Durable client session", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)

    def wait_for(self, instance_id: str, timeout: float | None = None) -> Instance:
        """Block until the instance ends (Completed/Failed/Terminated)."""
        deadline = None if timeout is None else datetime.now(UTC) + timedelta(seconds=timeout)
        with self._cond:
            while True:
                inst = self.instances.get(instance_id)
                if inst is not None and inst.status not in RUNNING_STATES:
                    return inst
                remaining = (None if deadline is None
                             else (deadline - datetime.now(UTC)).total_seconds())
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"instance {instance_id} still {inst and inst.status}")
                self._cond.wait(0.5 if remaining is None else min(0.5, remaining))

    def _dispatch_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self._dispatch_once()
            except Exception:  # never let the dispatcher die silently
                log.exception("durable dispatcher error")

    def _dispatch_once(self) -> None:
        with self._cond:
            ready = [i for i in self.instances.values()
                     if i.new_events and i.status in RUNNING_STATES]
            if not ready:
                self._wait_for_work_locked()
                return
        for inst in ready:
            self._episode(inst)

    def _wait_for_work_locked(self) -> None:
        """Nothing to replay: wait for activities, or fire the next timer."""
        running = [i for i in self.instances.values() if i.status in RUNNING_STATES]
        due = [(t, i, tid) for i in running for tid, t in i.timers.items()]
        in_flight = sum(i.in_flight for i in running)
        if not due or (self.clock.virtual and in_flight):
            self._cond.wait(0.2)
            return
        fire_at, inst, timer_id = min(due, key=lambda d: d[0])
        now = self.clock.now()
        if self.clock.virtual:
            if self.on_idle:
                self._cond.release()
                try:  # let the outside world (a local Batch pool) make progress first
                    self.on_idle((fire_at - now).total_seconds())
                finally:
                    self._cond.acquire()
            self.clock.advance_to(fire_at)
        elif fire_at > now:
            self._cond.wait(min(0.5, (fire_at - now).total_seconds()))
            return
        # The timer may have been cancelled by termination while we waited.
        if inst.timers.pop(timer_id, None) is not None and inst.status in RUNNING_STATES:
            inst.new_events.append({"EventType": Event.TIMER_FIRED, "EventId": -1,
                                    "IsPlayed": False, "Timestamp": _ts(self.clock.now()),
                                    "TimerId": timer_id, "FireAt": _ts(fire_at)})

    def _episode(self, inst: Instance) -> None:
        with self._cond:
            if inst.status not in RUNNING_STATES:
                return
            events, inst.new_events = inst.new_events, []
            now = self.clock.now()
            played = [{**e, "IsPlayed": True} for e in inst.history]
            history = played + [{"EventType": Event.ORCHESTRATOR_STARTED, "EventId": -1,
                                 "IsPlayed": False, "Timestamp": _ts(now)}] + events
            inst.status = "Running"
            generation = inst.generation
        context = {"history": history, "input": inst.input, "instanceId": inst.id,
                   "isReplaying": bool(played), "parentInstanceId": None,
                   "upperSchemaVersion": 1, "upperSchemaVersionNew": 2}
        orchestrator = self.orchestrators[inst.name]
        error: str | None = None
        try:
            returned = worker.invoke(orchestrator, {orchestrator.trigger["name"]: Datum(
                json.dumps(context), "string")}, loop=self.loop)
            state = json.loads(returned.value if returned else "null")
        except Exception as exc:  # the SDK raises with the state embedded after $OutOfProcData$
            message = str(exc)
            head, _, data = message.partition("\n\n$OutOfProcData$:")
            state = json.loads(data) if data else {"isDone": False, "actions": []}
            error = head or type(exc).__name__
        with self._cond:
            if inst.generation != generation or inst.status not in RUNNING_STATES:
                return  # terminated or restarted while replaying
            record = self._apply_episode(inst, history, state, error)
        self._save(record)

    def _apply_episode(self, inst: Instance, history: list[dict[str, Any]],
                       state: dict[str, Any], error: str | None) -> dict[str, Any] | None:
        """Record an episode's outcome (lock held); returns the snapshot to save."""
        inst.history = history
        inst.episodes += 1
        inst.replayed_events += len(history)
        inst.updated = self.clock.now()
        if "customStatus" in state:
            inst.custom_status = state["customStatus"]
        try:
            continue_input = self._schedule(inst, _flatten(state.get("actions", [])))
        except NonDeterminismError as exc:
            inst.status, inst.output = "Failed", f"non-deterministic orchestrator: {exc}"
            self._cond.notify_all()
            return self._snapshot_locked(inst)
        inst.history.append({"EventType": Event.ORCHESTRATOR_COMPLETED, "EventId": -1,
                             "IsPlayed": False, "Timestamp": _ts(inst.updated)})
        _note_peaks(inst)
        if error is not None:
            inst.status, inst.output = "Failed", error
            inst.timers.clear()
        elif continue_input is not None:
            self._restart(inst, continue_input)
        elif state.get("isDone"):
            inst.status, inst.output = "Completed", state.get("output")
            inst.timers.clear()
        self._cond.notify_all()
        return self._snapshot_locked(inst)

    def _schedule(self, inst: Instance, actions: list[dict[str, Any]]) -> str | None:
        """Check replayed actions against history; schedule the new ones.

        Returns the continue-as-new input when the orchestrator asked for it."""
        tasks = [a for a in actions if a["actionType"] != Action.CONTINUE_AS_NEW]
        for position, (action, previous) in enumerate(zip(tasks, inst.scheduled)):
            if _signature(action) != previous:
                raise NonDeterminismError(
                    f"action #{position} was {previous} in history but {_signature(action)} "
                    "on replay")
        now = self.clock.now()
        for action in tasks[len(inst.scheduled):]:
            task_id = len(inst.scheduled)
            inst.scheduled.append(_signature(action))
            kind = action["actionType"]
            if kind == Action.CALL_ACTIVITY:
                inst.history.append({"EventType": Event.TASK_SCHEDULED, "EventId": task_id,
                                     "IsPlayed": False, "Timestamp": _ts(now),
                                     "Name": action["functionName"], "Input": action.get("input")})
                inst.in_flight += 1
                self._pool.submit(self._run_activity, inst, inst.generation, task_id,
                                  action["functionName"], action.get("input"))
            elif kind == Action.CREATE_TIMER:
                fire_at = isoparse(action["fireAt"])
                if fire_at.tzinfo is None:
                    fire_at = fire_at.replace(tzinfo=UTC)
                inst.history.append({"EventType": Event.TIMER_CREATED, "EventId": task_id,
                                     "IsPlayed": False, "Timestamp": _ts(now),
                                     "FireAt": _ts(fire_at)})
                inst.timers[task_id] = fire_at
            else:
                raise NonDeterminismError(f"action type {kind} is not supported by this host")
        for action in actions:
            if action["actionType"] == Action.CONTINUE_AS_NEW:
                return action.get("input")
        return None

    def _restart(self, inst: Instance, new_input: str | None) -> None:
        inst.generation += 1
        inst.input = new_input
        inst.history, inst.scheduled, inst.timers = [], [], {}
        inst.in_flight = 0
        inst.status = "Running"
        inst.new_events = [{"EventType": Event.EXECUTION_STARTED, "EventId": -1, "IsPlayed": False,
                            "Timestamp": _ts(self.clock.now()), "Name": inst.name,
                            "Input": new_input, "Version": ""}]

    def _run_activity(self, inst: Instance, generation: int, task_id: int, name: str,
                      input_json: str | None) -> None:
        event: dict[str, Any]
        activity = self.activities.get(name)
        try:
            if activity is None:
                event = {"EventType": Event.TASK_FAILED, "TaskScheduledId": task_id,
                         "Reason": f"activity {name!r} does not exist", "Details": ""}
            else:
                # The extension hands the activity its input as JSON text and takes its result
                # back as JSON text; both conversions are the activity trigger converter's.
                returned = worker.invoke(activity, {activity.trigger["name"]: Datum(
                    input_json if input_json is not None else "null", "json")}, loop=self.loop)
                event = {"EventType": Event.TASK_COMPLETED, "TaskScheduledId": task_id,
                         "Result": returned.value if returned else "null"}
        except Exception as exc:
            if not self._stop.is_set():  # failures of abandoned activities are noise
                log.warning("activity %s failed: %s", name, exc,
                            exc_info=log.isEnabledFor(logging.DEBUG))
            event = {"EventType": Event.TASK_FAILED, "TaskScheduledId": task_id,
                     "Reason": f"{type(exc).__name__}: {exc}",
                     "Details": traceback.format_exc(limit=8)}
        if self._stop.is_set():
            return  # the host stopped: the saved state still lists this activity as running
        with self._cond:
            if inst.generation != generation:
                return  # the instance restarted (continue-as-new / replaced); drop it
            inst.in_flight -= 1
            if inst.status in RUNNING_STATES:
                inst.new_events.append({**event, "EventId": -1, "IsPlayed": False,
                                        "Timestamp": _ts(self.clock.now())})
            self._cond.notify_all()

    # -- the extension's HTTP API for DurableOrchestrationClient ----------------------------------

    def serve_client_api(self) -> DurableHost:
        app = web.Application()
        app.router.add_post("/durabletask/orchestrators/{name}/{id}", self._h_start)
        app.router.add_post("/durabletask/orchestrators/{name}", self._h_start)
        app.router.add_get("/durabletask/instances/{id}", self._h_status)
        app.router.add_get("/durabletask/instances/", self._h_query)
        app.router.add_post("/durabletask/instances/{id}/terminate", self._h_terminate)

        async def start() -> None:
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = int(self._runner.addresses[0][1])  # the port the OS picked

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self

    def client_binding(self) -> str:
        """The JSON a `durableClient` binding receives from the host."""
        assert self.port, "call serve_client_api() first"
        base = f"http://127.0.0.1:{self.port}/durabletask/"
        return json.dumps({
            "taskHubName": self.task_hub,
            "creationUrls": {"createNewInstancePostUri": base + "orchestrators/{functionName}"},
            "managementUrls": {"id": "INSTANCEID",
                               "statusQueryGetUri": base + "instances/INSTANCEID"},
            "baseUrl": base, "requiredQueryStringParameters": "", "rpcBaseUrl": base,
            "httpBaseUrl": base, "maxGrpcMessageSizeInBytes": 0,
            "grpcHttpClientTimeout": "00:01:40",
        })

    async def _h_start(self, request: web.Request) -> web.Response:
        import uuid

        name = request.match_info["name"]
        instance_id = request.match_info.get("id") or uuid.uuid4().hex
        body = await request.text()
        # The client posts json.dumps(input) as a JSON body, i.e. a JSON string holding the
        # input's JSON text; the orchestrator's context gets that text.
        value = json.loads(body) if body else None
        input_json = value if isinstance(value, str) or value is None else json.dumps(value)
        try:
            self.start_instance(name, instance_id, input_json)
        except KeyError as exc:
            return web.json_response({"ExceptionMessage": str(exc)}, status=400)
        except RuntimeError as exc:
            return web.json_response(str(exc), status=409)
        base = f"http://127.0.0.1:{self.port}/durabletask/instances/{instance_id}"
        return web.json_response({"id": instance_id, "statusQueryGetUri": base}, status=202)

    async def _h_status(self, request: web.Request) -> web.Response:
        with self._cond:
            inst = self.instances.get(request.match_info["id"])
            if inst is None:
                return web.json_response("instance not found", status=404)
            body = self.status_json(inst, _flag(request.query, "showInput"),
                                    _flag(request.query, "showHistory"))
        code = {"Completed": 200, "Failed": 500, "Terminated": 200}.get(body["runtimeStatus"], 202)
        return web.json_response(body, status=code)

    async def _h_query(self, request: web.Request) -> web.Response:
        q = request.query
        since = isoparse(q["createdTimeFrom"]) if "createdTimeFrom" in q else None
        until = isoparse(q["createdTimeTo"]) if "createdTimeTo" in q else None
        wanted = set(q["runtimeStatus"].split(",")) if q.get("runtimeStatus") else None
        prefix = q.get("instanceIdPrefix", "")
        with self._cond:
            rows = [self.status_json(i, _flag(q, "showInput"))
                    for i in self.instances.values()
                    if (since is None or i.created >= _aware(since))
                    and (until is None or i.created <= _aware(until))
                    and (wanted is None or i.status in wanted) and i.id.startswith(prefix)]
        return web.json_response(rows)

    async def _h_terminate(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["id"]
        with self._cond:
            exists = instance_id in self.instances
        if not exists:
            return web.json_response("instance not found", status=404)
        ok = self.terminate(instance_id, request.query.get("reason", ""))
        return web.json_response(None, status=202 if ok else 410)

    def run_async(self, coro: Any, timeout: float | None = 60) -> Any:
        """Run a coroutine on the host's loop (where the client's aiohttp session lives)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def _flag(query: Any, name: str) -> bool:
    """A boolean query parameter as the extension reads it (.NET ``bool.TryParse``: any case).
    The Python SDK sends ``showInput=True``; reading only ``true`` hid every input from it."""
    return str(query.get(name, "")).strip().lower() == "true"


def _note_peaks(inst: Instance) -> None:
    inst.peak_history = max(inst.peak_history, len(inst.history))
    inst.peak_history_bytes = max(inst.peak_history_bytes, len(json.dumps(inst.history)))
    inst.peak_input_bytes = max(inst.peak_input_bytes, len(inst.input or ""))
    inst.peak_status_bytes = max(inst.peak_status_bytes, len(json.dumps(inst.custom_status)))


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _flatten(actions: list[Any]) -> list[dict[str, Any]]:
    """Actions in scheduling order (schema v1 lists of lists; v2+ compound actions)."""
    out: list[dict[str, Any]] = []

    def walk(item: Any) -> None:
        if isinstance(item, list):
            for sub in item:
                walk(sub)
        elif isinstance(item, dict):
            if "compoundActions" in item:
                walk(item["compoundActions"])
            else:
                out.append(item)

    walk(actions)
    return out


def _signature(action: dict[str, Any]) -> tuple:
    kind = action["actionType"]
    if kind == Action.CALL_ACTIVITY:
        return ("activity", action["functionName"], action.get("input"))
    if kind == Action.CREATE_TIMER:
        return ("timer", _ts(_aware(isoparse(action["fireAt"]))))
    return ("other", kind, json.dumps(action, sort_keys=True))
