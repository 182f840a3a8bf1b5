"""The `video_pipeline` orchestrator: probe (the header) → scan on Batch → split on Batch →
(train) → score on Batch → stitch on Batch → publish (a server-side copy into outgoing/) →
cleanup.

A pure generator: no I/O, no clocks but ``context.current_utc_datetime``, no randomness, no
settings read at replay time (everything it needs is in its input). Progress is published as
the job status JSON (the custom status) after every step and every monitor round.

Long jobs poll many times; every ``rounds_per_generation`` monitor rounds it continues as new
with its ledger, so the history (and every replay) stays short. Nothing it holds or passes
grows with the chunk count: the chunks live in work/<job>/chunks.json, chunk sets travel as
index ranges, the ledger counts tasks by state, and every activity result is bounded
(``shared.pipeline.progress_job``). A generation's history is therefore about 8 events a
monitor round (12 with a resubmit) plus those of the stages before it, each of bounded size,
whether the job has 3 chunks or MAX_CHUNKS (tests/test_fan_out.py holds it to that).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from shared.jobs import MAX_TIMELINE_ROWS, PUBLISHED, JobRequest, job_status

bp = df.Blueprint()

ORCHESTRATOR = "video_pipeline"
# The orchestration input's format: {"format", "request", "options", "ledger"}. The ledger
# crosses continue_as_new, so a job started by one version of the app is continued by the
# next after a deploy. Raise it when the ledger, or the activities a generation calls, change
# in a way an older input cannot follow, and teach ``_unreadable`` what the older one is.
INPUT_FORMAT = 3
OPTIONS = ("poll_interval_s", "max_chunk_attempts", "rounds_per_generation", "train_steps")
# A generation starts at one of these stages; what each needs from the ledger it is given.
RESUMABLE = {
    "scan_wait": ("probe", "style_blob", "scan_attempt", "stages"),
    "split_wait": ("probe", "chunks", "split_attempt", "stages"),
    "train": ("probe", "chunks", "retried", "failed", "train_attempt", "stages"),
    "monitor": ("probe", "chunks", "retried", "failed", "counts", "scoring_started", "stages"),
    "stitch_wait": ("probe", "chunks", "stitch_attempt", "stages"),
    "publish": ("probe", "chunks", "stitched", "stages"),
}
# The stage of a generation whose only work is to fail the job: an input this version cannot
# follow is handed on to one (video_pipeline), which stops the job's Batch work and ends.
FAILING = "failing"
RESTART_HINT = ("start it again (POST /api/jobs with its blob, or the job page's retry); "
                "its input is kept")
# Transient activity failures (storage hiccups, a host recycled) are retried here, with a
# growing pause on a durable timer, so that the last failure becomes the job's error with the
# activity's name and its reason (Job.call).
ACTIVITY_ATTEMPTS = 4


class JobFailed(Exception):
    """The job cannot complete; the message is shown to the user as the job's error."""


def orchestration_options(settings: Any) -> dict[str, Any]:
    """Settings the orchestrator needs, frozen into its input when the job starts."""
    return {"poll_interval_s": settings.poll_interval_s,
            "max_chunk_attempts": settings.max_chunk_attempts,
            "rounds_per_generation": settings.monitor_rounds_per_generation,
            "train_steps": settings.train_steps}


def start_input(req: JobRequest, settings: Any) -> dict[str, Any]:
    """The input a new job's orchestration starts with."""
    return {"format": INPUT_FORMAT, "request": req.to_json(),
            "options": orchestration_options(settings)}


def _unreadable(data: dict[str, Any]) -> str | None:
    """Why this version cannot continue an orchestration with input ``data``, or None.

    Inputs without a format come from earlier versions. Format 2 (the ledger of counts and
    index ranges, before the split ran on the pool) carries the same ledger at every stage
    it continued as new in (train, monitor) as format 3 does, so it is continued as it is.
    Format 1 (``state``: every chunk listed in the orchestration) is not: its Batch tasks and
    chunk files follow a plan this version does not read.

    The scan stage (the packet scan as a Batch task) kept format 3: it only adds a stage
    (``scan_wait``) that earlier versions never continued from, and a generation that an
    earlier version started, whose probe already wrote the full probe (its result has no
    ``scan``), goes on to the split as before (``video_pipeline``)."""
    fmt = data.get("format")
    if fmt == INPUT_FORMAT and (data.get("ledger") or {}).get("stage") == FAILING:
        return None  # its own hand-over: checked already, and it only ends the job
    if isinstance(fmt, int) and fmt > INPUT_FORMAT:
        return (f"this job was started by a newer version of stylebatch (input format {fmt}, "
                f"this version reads {INPUT_FORMAT} and older); {RESTART_HINT}")
    earlier = ("this job was started by an earlier version of stylebatch whose progress "
               "record this version cannot continue")
    if "ledger" not in data and "state" in data:
        return f"{earlier} (it lists every chunk in the orchestration); {RESTART_HINT}"
    missing = [k for k in OPTIONS if k not in (data.get("options") or {})]
    if missing:
        return f"{earlier} (no {', '.join(missing)} in its options); {RESTART_HINT}"
    ledger = data.get("ledger")
    if ledger is None:
        return None  # a job that has not started: every format begins the same way
    stage = ledger.get("stage") if isinstance(ledger, dict) else None
    missing = [k for k in RESUMABLE.get(stage, ("stage",)) if k not in ledger]
    needs_chunks = "chunks" in RESUMABLE.get(stage, ())
    if stage not in RESUMABLE or missing or (needs_chunks
                                             and not isinstance(ledger.get("chunks"), int)):
        what = f"stage {stage!r}" if stage not in RESUMABLE else \
            f"no {', '.join(missing) or 'chunk count'} at stage {stage!r}"
        return f"{earlier} ({what}); {RESTART_HINT}"
    return None


def _now(context: df.DurableOrchestrationContext) -> datetime:
    return context.current_utc_datetime


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Job:
    """One run of the orchestrator: the request, the options, and the ``ledger``.

    The ledger is the orchestration's own bookkeeping (stage, counts, the timeline rows, ...),
    carried across continue_as_new; the job *status* users see (``publish``) is built from it.
    Nothing in it grows with the chunk count but ``retried`` (only chunks that needed another
    attempt), so every generation's input and history stay small for any job.
    """

    def __init__(self, context: df.DurableOrchestrationContext, data: dict[str, Any]):
        self.context = context
        self.req = JobRequest.from_json(data["request"])
        self.ledger: dict[str, Any] = data.get("ledger") or {"stage": "probe"}
        self.options: dict[str, Any] = {**data.get("options", {})}

    @property
    def poll(self) -> timedelta:
        return timedelta(seconds=float(self.options["poll_interval_s"]))

    @property
    def max_attempts(self) -> int:
        return int(self.options["max_chunk_attempts"])

    @property
    def rounds_per_generation(self) -> int:
        return int(self.options["rounds_per_generation"])

    # -- status ------------------------------------------------------------------------------

    def publish(self, state: str, *, error: str | None = None, eta: float | None = None,
                stage_percent: float | None = None) -> dict[str, Any]:
        """Set the job status (the custom status) for the job's ``state`` (shared.jobs.STATES)."""
        lg = self.ledger
        counts = lg.get("counts") or {}
        # A job that has ended runs nothing: its cleanup deletes the Batch job.
        running = 0 if state in ("completed", "failed") else int(counts.get("running", 0))
        status = job_status(
            self.req, state, updated=_iso(_now(self.context)),
            frames_total=int(lg.get("probe", {}).get("frames", 0)),
            frames_done=int(lg.get("frames_done", 0)),
            chunks={"total": int(lg.get("chunks", 0)),
                    "done": int(counts.get("succeeded", 0)), "running": running,
                    "failed": int(lg.get("failed", 0))},
            eta_seconds=eta, error=error, stage_percent=stage_percent,
            extra=self._extra())
        self.context.set_custom_status(status)
        return status

    def _extra(self) -> dict[str, Any]:
        lg = self.ledger
        extra: dict[str, Any] = {}
        if "probe" in lg:
            pr = lg["probe"]
            extra["video"] = {"width": pr["width"], "height": pr["height"], "fps": pr["fps"],
                              "duration_s": round(pr["duration_s"], 3),
                              "audio_streams": pr["audio_streams"], "rotation": pr["rotation"]}
        if lg.get("estimate"):
            extra["estimate"] = lg["estimate"]
        if "split_mode" in lg:
            extra["split"] = lg["split_mode"]
        if lg.get("retries"):
            extra["retries"] = lg["retries"]
        if "train" in lg:
            extra["training"] = lg["train"]
        if lg.get("warnings"):
            extra["warnings"] = lg["warnings"]
        if "scan" in lg:
            extra["scan"] = lg["scan"]
        if lg.get("timeline") and lg.get("scoring_started"):
            extra["tasks"] = _task_rows(lg)
            extra["tasks_since"] = lg["scoring_started"]
        return extra

    # -- activities ------------------------------------------------------------------------

    def call(self, name: str, **payload: Any) -> Generator[Any, Any, Any]:
        """Call an activity with bounded retries for transient failures."""
        payload = {"request": self.req.to_json(), **payload}
        for attempt in range(1, ACTIVITY_ATTEMPTS + 1):
            try:
                return (yield self.context.call_activity(name, payload))
            except Exception as exc:
                if attempt == ACTIVITY_ATTEMPTS:
                    raise JobFailed(f"{name} failed {attempt} times: {_first_line(exc)}") from exc
                yield self.context.create_timer(_now(self.context) + timedelta(seconds=5 * attempt))
        raise AssertionError("unreachable")

    def submit(self, chunks: list[list[int]], train_attempt: int = 0) -> Generator[Any, Any, Any]:
        """Add the current attempts of ``chunks`` (index ranges) and/or a training attempt."""
        return (yield from self.call("submit", chunks=chunks, retried=self.ledger["retried"],
                                     style_blob=self.ledger["style_blob"],
                                     train_attempt=train_attempt))

    def expect_ok(self, result: dict[str, Any]) -> dict[str, Any]:
        if not result.get("ok", True):
            raise JobFailed(result.get("error") or "unknown error")
        return result


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@bp.orchestration_trigger(context_name="context", orchestration=ORCHESTRATOR)
def video_pipeline(context: df.DurableOrchestrationContext):
    data = context.get_input()
    unreadable = _unreadable(data)
    if unreadable:
        # An input this version cannot continue (a deploy while the job ran). The generation
        # under way may hold history the old code wrote, which this code would not schedule
        # alike: schedule nothing in it. Say why at once, and hand over to a fresh generation
        # that stops the job's Batch work and fails it.
        Job(context, {"request": data["request"]}).publish("failed", error=unreadable)
        context.continue_as_new({"format": INPUT_FORMAT, "request": data["request"],
                                 "ledger": {"stage": FAILING, "error": unreadable}})
        return None
    job = Job(context, data)
    lg = job.ledger
    try:
        if lg["stage"] == FAILING:
            raise JobFailed(lg["error"])
        if job.req.options.get("reject"):
            raise JobFailed(job.req.options["reject"])
        if lg["stage"] == "probe":
            _stage(job, "probe")
            job.publish("probing")
            result = job.expect_ok((yield from job.call("probe")))
            # A probe of the earlier versions scanned every packet itself (no ``scan`` in its
            # result, replayed from a generation they started): straight to the split.
            lg.update(probe=result["probe"], style_blob=result["style_blob"],
                      estimate=result.get("estimate"),
                      warnings=result["probe"].get("warnings", []),
                      stage="scan" if result.get("scan") else "split")
        if lg["stage"] == "scan":
            _stage(job, "scan")
            lg.update(scan_attempt=1, scan={"state": "pending", "attempt": 1, "frames_done": 0})
            job.publish("scanning")
            job.expect_ok((yield from job.call("scan", attempt=1)))
            lg["stage"] = "scan_wait"
        if lg["stage"] == "scan_wait":
            done = yield from _monitor_scan(job)
            if not done:
                return None  # continued as new
            lg["stage"] = "split"
        if lg["stage"] == "split":
            _stage(job, "split")
            job.publish("splitting")
            lg["split_attempt"] = 1
            result = job.expect_ok((yield from job.call("split", attempt=1)))
            # The chunks themselves stay in work/<job>/chunks.json; the ledger keeps a count.
            lg.update(chunks=int(result["chunks"]), split_mode=result["mode"],
                      stage="split_wait")
            _scanned(job, result)
        if lg["stage"] == "split_wait":
            done = yield from _monitor_split(job)
            if not done:
                return None  # continued as new
            lg.update(retried={}, failed=0, frames_done=0, stage="submit")
            if job.req.model == "fast":
                exists = yield from job.call("model_exists")
                lg["train_attempt"] = 0 if exists["exists"] else 1
                if not exists["exists"]:
                    lg["train"] = {"state": "pending", "progress": 0}
        if lg["stage"] == "submit" and lg.get("train_attempt"):
            _stage(job, "train")
            job.publish("training")
            yield from job.submit([], train_attempt=lg["train_attempt"])
            lg["stage"] = "train"
        if lg["stage"] == "train":
            done = yield from _monitor_training(job)
            if not done:
                return None  # continued as new
            lg["stage"] = "submit"
        if lg["stage"] == "submit":
            _stage(job, "score")
            job.publish("scoring")
            yield from job.submit([[0, lg["chunks"] - 1]])
            lg.update(stage="monitor", scoring_started=_iso(_now(context)),
                      counts={"pending": lg["chunks"]})
        if lg["stage"] == "monitor":
            done = yield from _monitor_chunks(job)
            if not done:
                return None  # continued as new
            lg["stage"] = "stitch"
        if lg["stage"] == "stitch":
            _stage(job, "stitch")
            job.publish("stitching")
            lg["stitch_attempt"] = 1
            result = job.expect_ok((yield from job.call("stitch", attempt=1)))
            # A result that names the output is the earlier version's stitch, which ran in the
            # Function and published it: replayed from a generation that version ran, it goes
            # on to the cleanup as it did then.
            lg["stage"] = "published" if "output" in result else "stitch_wait"
            if "output" in result:
                _note_dropped(job, result)
        if lg["stage"] == "stitch_wait":
            done = yield from _monitor_stitch(job)
            if not done:
                return None  # continued as new
            lg["stage"] = "publish"
        if lg["stage"] == "publish":
            done = yield from _publish(job)
            if not done:
                return None  # continued as new
            lg["stage"] = "published"
        if lg["stage"] == "published":
            _stage(job, "cleanup")
            yield from job.call("cleanup", failed=False, stages=lg["stages"])
            return job.publish("completed")
    except JobFailed as exc:
        job.publish("failed", error=str(exc))
        _stage(job, "cleanup")
        try:
            yield from job.call("cleanup", failed=True, stages=lg["stages"])
        except JobFailed:
            pass  # the job has failed already; keep its first error
        # The instance ends Failed, not Completed (the status above says why), so that a
        # start for the same id replaces it as Durable replaces any failed orchestration.
        raise
    raise AssertionError(f"unknown stage {lg['stage']!r}")


TIMELINE_NODE_CHARS = 16  # the tail of a node id (Azure's are ~70 characters); traces keep all


def _record_timeline(lg: dict[str, Any], rows: dict[str, list[Any]]) -> None:
    """Keep each chunk attempt's [created, started, ended, node, state code] (from the tasks'
    own timestamps, as the progress activity reported them: deterministic on replay), the
    latest MAX_TIMELINE_ROWS of them, so the status stays well under the 16 KB custom-status
    limit (tests/test_telemetry.py measures the worst case). ``since`` follows the latest end
    seen: the next round reports only tasks that ended after it, run, or are open rows."""
    timeline = lg.setdefault("timeline", {})
    for key, row in rows.items():
        timeline[key] = row
        if row[2] and (lg.get("since") is None or row[2] > lg["since"]):
            lg["since"] = row[2]
    if len(timeline) > MAX_TIMELINE_ROWS:
        for key in list(timeline)[:len(timeline) - MAX_TIMELINE_ROWS]:
            del timeline[key]


def _open_rows(lg: dict[str, Any]) -> list[str]:
    return [key for key, row in lg.get("timeline", {}).items() if row[2] is None]


def _seconds(iso: str | None, since: datetime) -> float | None:
    if not iso:
        return None
    return round((datetime.fromisoformat(iso.replace("Z", "+00:00")) - since).total_seconds(), 1)


def _task_rows(lg: dict[str, Any]) -> list[list[Any]]:
    """The status's ``tasks``: [chunk, attempt, queued at, started at, ended at (or null), state
    code, node], times in seconds since scoring started."""
    since = datetime.fromisoformat(lg["scoring_started"].replace("Z", "+00:00"))
    rows = []
    for key, (created, started, ended, node, code) in lg["timeline"].items():
        chunk, attempt = key.split(":")
        rows.append([int(chunk), int(attempt), _seconds(created, since), _seconds(started, since),
                     _seconds(ended, since), code, node[-TIMELINE_NODE_CHARS:] if node else None])
    return rows


def _stage(job: Job, name: str) -> None:
    """Record when a stage starts (and the previous one ends), on the orchestration's clock:
    the cleanup activity writes the job's stage spans from these (shared/telemetry.py), as
    the orchestrator itself never emits a span (it is replayed)."""
    stages = job.ledger.setdefault("stages", {})
    now = _now(job.context).isoformat()
    for times in stages.values():
        if times[1] is None:
            times[1] = now
    stages.setdefault(name, [now, None])


def _continue(job: Job) -> None:
    job.context.continue_as_new({"format": INPUT_FORMAT, "request": job.req.to_json(),
                                 "ledger": job.ledger, "options": job.options})


def _eta(job: Job, makespan_frames: float) -> float | None:
    """Seconds until the last chunk is done, from the speed measured so far.

    Not just frames-left / frames-per-second: chunks run at most ``slots`` at a time (the most
    seen running at once), so a last wave of fewer chunks than slots runs slower than the
    average. The progress activity list-schedules the remaining work onto the slots
    (``shared.plan.remaining_makespan``); this divides the busiest slot's frames by the
    measured speed of one task, which is what a user waiting on the last chunk experiences.
    """
    lg = job.ledger
    done = int(lg.get("frames_done", 0))
    started = datetime.fromisoformat(lg["scoring_started"].replace("Z", "+00:00"))
    elapsed = (_now(job.context) - started).total_seconds()
    if done <= 0 or elapsed <= 0:
        return None
    per_task = done / (elapsed * max(1, int(lg.get("slots", 1))))  # frames/s of one task
    return makespan_frames / per_task


def _progress(job: Job, train_attempt: int = 0) -> Generator[Any, Any, dict[str, Any]]:
    lg = job.ledger
    return (yield from job.call("progress", chunks=lg["chunks"] if not train_attempt else 0,
                                retried=lg["retried"], train_attempt=train_attempt,
                                since=lg.get("since"), open_rows=_open_rows(lg),
                                slots=int(lg.get("slots", 1))))


def _monitor_chunks(job: Job) -> Generator[Any, Any, bool]:
    """Poll the chunk tasks until all succeed; resubmit failures a bounded number of times."""
    lg = job.ledger
    rounds = 0
    while True:
        p = yield from _progress(job)
        lg.update(counts=p["counts"], frames_done=p["frames_done"], slots=p["slots"])
        _record_timeline(lg, p["timeline"])
        _note_backend_retries(job, p["retries_total"], p["retry_reasons"])
        # Tasks the Batch service does not know (the local pool died with its host, or the
        # Batch job was deleted) are submitted again under the same attempt.
        resubmit = [list(r) for r in p["missing"]]
        for failure in p["failures"]:
            chunk = str(failure["chunk"])
            reason = failure["error"] or f"exit code {failure['exit_code']}"
            if chunk not in lg["retried"]:
                lg["failed"] += 1  # chunks that failed at least once
            if failure["bad_input"]:
                raise JobFailed(f"chunk {chunk} cannot be processed: {reason}")
            if failure["attempt"] >= job.max_attempts:
                raise JobFailed(f"chunk {chunk} failed {failure['attempt']} times; last "
                                f"error: {reason}")
            lg["retried"][chunk] = failure["attempt"] + 1
            resubmit.append([int(chunk), int(chunk)])
            _note_retry(job, int(chunk), reason, "orchestrator")
        if resubmit:
            yield from job.submit(resubmit)
        elif lg["counts"]["succeeded"] == lg["chunks"]:
            lg["frames_done"] = int(lg["probe"]["frames"])
            return True
        job.publish("scoring", eta=_eta(job, p["makespan_frames"]))
        rounds += 1
        if rounds >= job.rounds_per_generation:
            _continue(job)
            return False
        yield job.context.create_timer(_now(job.context) + job.poll)


RETRIES_SHOWN = 10  # the status keeps the latest retries only


def _note_retry(job: Job, chunk: int, reason: str, by: str) -> None:
    lg = job.ledger
    lg.setdefault("retries", []).append({"chunk": chunk, "error": reason, "by": by})
    lg["retries"] = lg["retries"][-RETRIES_SHOWN:]  # keep the status small


def _note_backend_retries(job: Job, total: int, reasons: list[list[Any]]) -> None:
    """Retries the Batch side made itself: ``total`` over all the job's tasks so far, with
    the latest reasons ([chunk, reason]); the ledger remembers only the total it has seen."""
    seen = int(job.ledger.get("backend_retries_seen", 0))
    if total > seen and reasons:
        new = min(total - seen, RETRIES_SHOWN)
        for chunk, reason in (reasons * new)[-new:]:
            _note_retry(job, int(chunk), reason or "retried by the Batch node", "backend")
    # A backend that forgot its tasks (a local pool that died) starts counting again.
    job.ledger["backend_retries_seen"] = total


# The stages that run as one Batch task each, and the state the status shows while they do.
POOL_TASKS = {"scan": "scanning", "split": "splitting", "stitch": "stitching"}


def _monitor_task(job: Job, kind: str, total: int, *, percent_cap: float = 100.0,
                  on_state: Callable[[dict[str, Any], int], None] | None = None,
                  on_submitted: Callable[[dict[str, Any]], None] | None = None
                  ) -> Generator[Any, Any, bool]:
    """Poll the job's ``kind`` task (scan, split or stitch: one task on the pool, activities
    ``<kind>_state`` and ``<kind>``) until it succeeds. Bad input fails the job at once with
    the task's reason; another failure runs it again as a new attempt, ``max_attempts`` in
    all; a task the Batch service does not know is submitted again under the same attempt.
    ``total`` frames make the stage's percent (0: unknown). ``on_state`` sees every state read
    (with its attempt), ``on_submitted`` every submit's result. False: continued as new."""
    lg = job.ledger
    state = POOL_TASKS[kind]
    rounds = 0
    while True:
        attempt = int(lg[f"{kind}_attempt"])
        s = yield from job.call(f"{kind}_state", attempt=attempt)
        if on_state is not None:
            on_state(s, attempt)
        if s["state"] == "succeeded":
            return True
        again = None
        if s["state"] == "missing":
            again = job.expect_ok((yield from job.call(kind, attempt=attempt)))
        elif s["state"] == "failed":
            reason = s.get("error") or f"exit code {s.get('exit_code')}"
            if s.get("bad_input"):
                raise JobFailed(reason)
            if attempt >= job.max_attempts:
                raise JobFailed(f"{state} the video failed {attempt} times; last error: "
                                f"{reason}")
            lg[f"{kind}_attempt"] = attempt + 1
            again = job.expect_ok((yield from job.call(kind, attempt=attempt + 1)))
        if again is not None and on_submitted is not None:
            on_submitted(again)
        done = int(s.get("frames_done", 0))
        job.publish(state, stage_percent=min(percent_cap, 100.0 * done / total)
                    if total else None)
        rounds += 1
        if rounds >= job.rounds_per_generation:
            _continue(job)
            return False
        yield job.context.create_timer(_now(job.context) + job.poll)


def _monitor_scan(job: Job) -> Generator[Any, Any, bool]:
    """The scan task: the status shows its state and frames scanned; the header's frame count
    is only an estimate, so the percent stays below 100."""
    lg = job.ledger

    def seen(s: dict[str, Any], attempt: int) -> None:
        lg["scan"] = {"state": s["state"], "attempt": attempt,
                      "frames_done": int(s.get("frames_done", 0))}

    return (yield from _monitor_task(job, "scan", int(lg["probe"].get("frames", 0)),
                                     percent_cap=99.0, on_state=seen))


def _monitor_split(job: Job) -> Generator[Any, Any, bool]:
    """The split task: a split submitted again wrote its plan again; the ledger counts that
    one."""
    lg = job.ledger

    def planned(again: dict[str, Any]) -> None:
        lg.update(chunks=int(again["chunks"]), split_mode=again["mode"])

    return (yield from _monitor_task(job, "split", max(1, int(lg["probe"]["frames"])),
                                     on_submitted=planned))


def _monitor_stitch(job: Job) -> Generator[Any, Any, bool]:
    """The stitch task: once it succeeds, its summary (frames, size, streams dropped) is kept
    for the status."""
    lg = job.ledger

    def seen(s: dict[str, Any], _attempt: int) -> None:
        if s["state"] == "succeeded":
            lg["stitched"] = {k: s.get(k) for k in ("frames", "size_bytes", "streams_dropped")}
            _note_dropped(job, s)

    return (yield from _monitor_task(job, "stitch", max(1, int(lg["probe"]["frames"])),
                                     on_state=seen))


def _monitor_training(job: Job) -> Generator[Any, Any, bool]:
    """Poll the training task; retry it a bounded number of times."""
    lg = job.ledger
    rounds = 0
    while True:
        p = yield from _progress(job, train_attempt=lg["train_attempt"])
        if p.get("train") is None:  # unknown to the Batch service: submit the attempt again
            yield from job.submit([], train_attempt=lg["train_attempt"])
        t = p.get("train") or {"state": "pending", "progress": 0}
        lg["train"] = {"state": t["state"], "progress": t.get("progress", 0),
                       "attempt": lg["train_attempt"]}
        if t["state"] == "succeeded":
            lg["train_attempt"] = 0
            return True
        if t["state"] == "failed":
            reason = t.get("error") or f"exit code {t.get('exit_code')}"
            if t.get("bad_input") or lg["train_attempt"] >= job.max_attempts:
                raise JobFailed(f"training the fast model failed: {reason}")
            lg["train_attempt"] += 1
            yield from job.submit([], train_attempt=lg["train_attempt"])
        job.publish("training", stage_percent=_train_percent(job))
        rounds += 1
        if rounds >= job.rounds_per_generation:
            _continue(job)
            return False
        yield job.context.create_timer(_now(job.context) + job.poll)


def _train_percent(job: Job) -> float:
    steps = int(job.options.get("train_steps", 0)) or 1
    return min(100.0, 100.0 * job.ledger["train"]["progress"] / steps)


def _scanned(job: Job, split: dict[str, Any]) -> None:
    """The scanned probe (read by the split) replaces the header's: the exact frame count, its
    warnings, the estimate made from them."""
    lg = job.ledger
    if "probe" not in split:
        return  # the split of a job whose probe scanned every packet itself: nothing new
    lg["probe"] = split["probe"]
    lg["warnings"] = list(dict.fromkeys([*lg.get("warnings", []),
                                         *split["probe"].get("warnings", [])]))
    if split.get("estimate"):
        lg["estimate"] = split["estimate"]


def _note_dropped(job: Job, result: dict[str, Any]) -> None:
    if result.get("streams_dropped"):
        job.ledger.setdefault("warnings", []).append(
            "streams the output container cannot hold were dropped: "
            + ", ".join(result["streams_dropped"]))


def _publish(job: Job) -> Generator[Any, Any, bool]:
    """Copy the stitch task's results into outgoing/ (server-side copies the activities start
    and look at, each one request), the preview first; follow a copy that has not finished
    on a durable timer. A copy the service reports failed is started again, a bounded
    number of times."""
    lg = job.ledger
    done = lg.setdefault("published", [])
    rounds = 0
    for item in PUBLISHED:
        if item in done:
            continue
        r = job.expect_ok((yield from job.call("publish", item=item)))
        copies = 1
        while r["copy"] != "success":
            if r["copy"] != "pending":
                if copies >= job.max_attempts:
                    raise JobFailed(f"copying the {item} into outgoing/ failed {copies} "
                                    f"times; last error: {r.get('error') or r['copy']}")
                copies += 1
                r = job.expect_ok((yield from job.call("publish", item=item)))
                continue
            job.publish("stitching", stage_percent=100.0)
            rounds += 1
            if rounds >= job.rounds_per_generation:
                _continue(job)  # the next generation asks again: a pending copy is kept
                return False
            yield job.context.create_timer(_now(job.context) + job.poll)
            r = yield from job.call("publish_state", item=item)
        done.append(item)
    return True
