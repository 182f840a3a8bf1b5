"""The `video_pipeline` orchestrator: probe → split on Batch → (train) → score on Batch → stitch
→ cleanup.

A pure generator: no I/O, no clocks but ``context.current_utc_datetime``, no randomness, no
settings read at replay time (everything it needs is in its input). Progress is published as
the job status JSON (the custom status) after every step and every monitor round.

Long jobs poll many times; every ``rounds_per_generation`` monitor rounds it continues as new
with its state, so the history (and every replay) stays short.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from shared.jobs import JobRequest, job_status

bp = df.Blueprint()

ORCHESTRATOR = "video_pipeline"
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


def _now(context: df.DurableOrchestrationContext) -> datetime:
    return context.current_utc_datetime


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Job:
    """The orchestration's working state; ``state`` is what survives continue_as_new."""

    def __init__(self, context: df.DurableOrchestrationContext, data: dict[str, Any]):
        self.context = context
        self.req = JobRequest.from_json(data["request"])
        self.state: dict[str, Any] = data.get("state") or {"stage": "probe"}
        opts = {**data.get("options", {})}
        self.options = opts
        self.poll = timedelta(seconds=float(opts["poll_interval_s"]))
        self.max_attempts = int(opts["max_chunk_attempts"])
        self.rounds_per_generation = int(opts["rounds_per_generation"])

    # -- status ------------------------------------------------------------------------------

    def publish(self, state: str, *, error: str | None = None, eta: float | None = None,
                stage_percent: float | None = None) -> dict[str, Any]:
        st = self.state
        chunks = st.get("chunks") or []
        codes = st.get("codes", "")
        # A job that has ended runs nothing: its cleanup deletes the Batch job.
        running = 0 if state in ("completed", "failed") else codes.count("R")
        status = job_status(
            self.req, state, updated=_iso(_now(self.context)),
            frames_total=int(st.get("probe", {}).get("frames", 0)),
            frames_done=int(st.get("frames_done", 0)),
            chunks={"total": len(chunks), "done": codes.count("S"),
                    "running": running, "failed": len(st.get("failed_chunks", []))},
            eta_seconds=eta, error=error, stage_percent=stage_percent,
            extra=self._extra())
        self.context.set_custom_status(status)
        return status

    def _extra(self) -> dict[str, Any]:
        st = self.state
        extra: dict[str, Any] = {}
        if "probe" in st:
            pr = st["probe"]
            extra["video"] = {"width": pr["width"], "height": pr["height"], "fps": pr["fps"],
                              "duration_s": round(pr["duration_s"], 3),
                              "audio_streams": pr["audio_streams"], "rotation": pr["rotation"]}
        if st.get("estimate"):
            extra["estimate"] = st["estimate"]
        if "split_mode" in st:
            extra["split"] = st["split_mode"]
        if st.get("retries"):
            extra["retries"] = st["retries"]
        if "train" in st:
            extra["training"] = st["train"]
        if st.get("warnings"):
            extra["warnings"] = st["warnings"]
        if st.get("timeline") and st.get("scoring_started"):
            extra["tasks"] = _task_rows(st)
            extra["tasks_since"] = st["scoring_started"]
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

    def expect_ok(self, result: dict[str, Any]) -> dict[str, Any]:
        if not result.get("ok", True):
            raise JobFailed(result.get("error") or "unknown error")
        return result


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@bp.orchestration_trigger(context_name="context", orchestration=ORCHESTRATOR)
def video_pipeline(context: df.DurableOrchestrationContext):
    job = Job(context, context.get_input())
    st = job.state
    try:
        if job.req.options.get("reject"):
            raise JobFailed(job.req.options["reject"])
        if st["stage"] == "probe":
            _stage(job, "probe")
            job.publish("probing")
            result = job.expect_ok((yield from job.call("probe")))
            st.update(probe=result["probe"], style_blob=result["style_blob"],
                      estimate=result.get("estimate"),
                      warnings=result["probe"].get("warnings", []), stage="split")
        if st["stage"] == "split":
            _stage(job, "split")
            job.publish("splitting")
            st["split_attempt"] = 1
            result = job.expect_ok((yield from job.call("split", attempt=1)))
            st.update(chunks=result["chunks"], split_mode=result["mode"], stage="split_wait")
        if st["stage"] == "split_wait":
            done = yield from _monitor_split(job)
            if not done:
                return None  # continued as new
            st.update(attempts={str(i): 1 for i in range(len(st["chunks"]))},
                      frames_done=0, codes="P" * len(st["chunks"]), stage="submit")
            if job.req.model == "fast":
                exists = yield from job.call("model_exists")
                st["train_attempt"] = 0 if exists["exists"] else 1
                if not exists["exists"]:
                    st["train"] = {"state": "pending", "progress": 0}
        if st["stage"] == "submit" and st.get("train_attempt"):
            _stage(job, "train")
            job.publish("training")
            yield from job.call("submit", attempts={}, style_blob=st["style_blob"],
                                train_attempt=st["train_attempt"])
            st["stage"] = "train"
        if st["stage"] == "train":
            done = yield from _monitor_training(job)
            if not done:
                return None  # continued as new
            st["stage"] = "submit"
        if st["stage"] == "submit":
            _stage(job, "score")
            job.publish("scoring")
            yield from job.call("submit", attempts=st["attempts"], style_blob=st["style_blob"])
            st.update(stage="monitor", scoring_started=_iso(_now(context)))
        if st["stage"] == "monitor":
            done = yield from _monitor_chunks(job)
            if not done:
                return None  # continued as new
            st["stage"] = "stitch"
        if st["stage"] == "stitch":
            _stage(job, "stitch")
            job.publish("stitching")
            result = job.expect_ok((yield from job.call("stitch")))
            st["result"] = result
            if result.get("streams_dropped"):
                st.setdefault("warnings", []).append(
                    "streams the output container cannot hold were dropped: "
                    + ", ".join(result["streams_dropped"]))
            _stage(job, "cleanup")
            yield from job.call("cleanup", failed=False, stages=st["stages"])
            return job.publish("completed")
    except JobFailed as exc:
        job.publish("failed", error=str(exc))
        _stage(job, "cleanup")
        try:
            yield from job.call("cleanup", failed=True, stages=st["stages"])
        except JobFailed:
            pass  # the job has failed already; keep its first error
        # The instance ends Failed, not Completed (the status above says why), so that a
        # start for the same id replaces it as Durable replaces any failed orchestration.
        raise
    raise AssertionError(f"unknown stage {st['stage']!r}")


# The timeline of chunk tasks the status carries: at most this many attempts (the latest), in
# rows of a few numbers each, so the status stays well under the 16 KB custom-status limit
# (tests/test_telemetry.py measures the worst case).
MAX_TIMELINE_ROWS = 48
TIMELINE_NODE_CHARS = 16  # the tail of a node id (Azure's are ~70 characters); traces keep all


def _record_times(st: dict[str, Any], times: dict[str, list[str | None]]) -> None:
    """Keep each chunk attempt's [created, started, ended, node, state code] (from the tasks'
    own timestamps, as the progress activity reported them: deterministic on replay)."""
    timeline = st.setdefault("timeline", {})
    for chunk, when in times.items():
        key = f"{chunk}:{st['attempts'][chunk]}"
        timeline[key] = [*when, st["codes"][int(chunk)]]
    if len(timeline) > MAX_TIMELINE_ROWS:
        for key in list(timeline)[:len(timeline) - MAX_TIMELINE_ROWS]:
            del timeline[key]


def _seconds(iso: str | None, since: datetime) -> float | None:
    if not iso:
        return None
    return round((datetime.fromisoformat(iso.replace("Z", "+00:00")) - since).total_seconds(), 1)


def _task_rows(st: dict[str, Any]) -> list[list[Any]]:
    """The status's ``tasks``: [chunk, attempt, queued at, started at, ended at (or null), state
    code, node], times in seconds since scoring started."""
    since = datetime.fromisoformat(st["scoring_started"].replace("Z", "+00:00"))
    rows = []
    for key, (created, started, ended, node, code) in st["timeline"].items():
        chunk, attempt = key.split(":")
        rows.append([int(chunk), int(attempt), _seconds(created, since), _seconds(started, since),
                     _seconds(ended, since), code, node[-TIMELINE_NODE_CHARS:] if node else None])
    return rows


def _stage(job: Job, name: str) -> None:
    """Record when a stage starts (and the previous one ends), on the orchestration's clock:
    the cleanup activity writes the job's stage spans from these (shared/telemetry.py), as
    the orchestrator itself never emits a span (it is replayed)."""
    stages = job.state.setdefault("stages", {})
    now = _now(job.context).isoformat()
    for times in stages.values():
        if times[1] is None:
            times[1] = now
    stages.setdefault(name, [now, None])


def _continue(job: Job) -> None:
    job.context.continue_as_new({"request": job.req.to_json(), "state": job.state,
                                 "options": job.options})


def _eta(job: Job, running: dict[str, int]) -> float | None:
    """Seconds until the last chunk is done, from the speed measured so far.

    Not just frames-left / frames-per-second: chunks run at most ``parallel`` at a time (the
    most seen running at once), so a last wave of fewer chunks than slots runs slower than
    the average. The remaining work is list-scheduled onto the slots at the measured per-task
    speed, which is what a user waiting on the last chunk actually experiences.
    """
    st = job.state
    done = int(st.get("frames_done", 0))
    started = datetime.fromisoformat(st["scoring_started"].replace("Z", "+00:00"))
    elapsed = (_now(job.context) - started).total_seconds()
    parallel = max(1, int(st.get("max_running", 1)))
    if done <= 0 or elapsed <= 0:
        return None
    per_task = done / (elapsed * parallel)  # frames per second of one task
    codes, chunks = st["codes"], st["chunks"]
    # Running chunks hold their slots now; pending ones start in order as slots free up.
    left = [chunks[i][1] - running.get(str(i), 0) for i in range(len(chunks)) if codes[i] == "R"]
    left += [chunks[i][1] for i in range(len(chunks)) if codes[i] == "P"]
    slots = [0.0] * parallel
    for work in left:
        slots[slots.index(min(slots))] += work
    return max(slots) / per_task


def _monitor_chunks(job: Job) -> Generator[Any, Any, bool]:
    """Poll the chunk tasks until all succeed; resubmit failures a bounded number of times."""
    st = job.state
    rounds = 0
    while True:
        p = yield from job.call("progress", attempts=st["attempts"])
        st["codes"], st["frames_done"] = p["states"], p["frames_done"]
        _record_times(st, p.get("times") or {})
        st["max_running"] = max(int(st.get("max_running", 1)), st["codes"].count("R"))
        _note_backend_retries(job, p.get("backend_retries", {}))
        # Tasks the Batch service does not know (the local pool died with its host, or the
        # Batch job was deleted) are submitted again under the same attempt.
        resubmit: dict[str, int] = {str(c): st["attempts"][str(c)] for c in p.get("missing", [])}
        for failure in p["failures"]:
            chunk = str(failure["chunk"])
            reason = failure["error"] or f"exit code {failure['exit_code']}"
            if int(chunk) not in st.setdefault("failed_chunks", []):
                st["failed_chunks"].append(int(chunk))
            if failure["bad_input"]:
                raise JobFailed(f"chunk {chunk} cannot be processed: {reason}")
            if st["attempts"][chunk] >= job.max_attempts:
                raise JobFailed(f"chunk {chunk} failed {st['attempts'][chunk]} times; last "
                                f"error: {reason}")
            resubmit[chunk] = st["attempts"][chunk] + 1
            _note_retry(job, int(chunk), reason, "orchestrator")
        if resubmit:
            st["attempts"].update(resubmit)
            yield from job.call("submit", attempts=resubmit, style_blob=st["style_blob"])
            st["codes"] = "".join("P" if str(i) in resubmit else c
                                  for i, c in enumerate(st["codes"]))
        elif st["codes"] and set(st["codes"]) == {"S"}:
            st["frames_done"] = int(st["probe"]["frames"])
            return True
        job.publish("scoring", eta=_eta(job, p.get("running", {})))
        rounds += 1
        if rounds >= job.rounds_per_generation:
            _continue(job)
            return False
        yield job.context.create_timer(_now(job.context) + job.poll)


def _note_retry(job: Job, chunk: int, reason: str, by: str) -> None:
    st = job.state
    st.setdefault("retries", []).append({"chunk": chunk, "error": reason, "by": by})
    st["retries"] = st["retries"][-10:]  # keep the status small


def _note_backend_retries(job: Job, seen: dict[str, list[Any]]) -> None:
    """Retries the Batch side made itself ({"<chunk>/<attempt>": [count, last error]})."""
    counted = job.state.setdefault("backend_retries", {})
    for key, (count, error) in sorted(seen.items()):
        for _ in range(int(count) - int(counted.get(key, 0))):
            _note_retry(job, int(key.split("/")[0]), error or "retried by the Batch node",
                        "backend")
        counted[key] = max(int(count), int(counted.get(key, 0)))


def _monitor_split(job: Job) -> Generator[Any, Any, bool]:
    """Poll the split task (it cuts the chunks on the pool); retry it a bounded number of
    times, resubmit it when the Batch service does not know it."""
    st = job.state
    rounds = 0
    total = max(1, int(st["probe"]["frames"]))
    while True:
        attempt = int(st["split_attempt"])
        s = yield from job.call("split_state", attempt=attempt)
        if s["state"] == "succeeded":
            return True
        if s["state"] == "missing":
            job.expect_ok((yield from job.call("split", attempt=attempt)))
        elif s["state"] == "failed":
            reason = s.get("error") or f"exit code {s.get('exit_code')}"
            if s.get("bad_input"):
                raise JobFailed(reason)
            if attempt >= job.max_attempts:
                raise JobFailed(f"splitting the video failed {attempt} times; last error: "
                                f"{reason}")
            st["split_attempt"] = attempt + 1
            job.expect_ok((yield from job.call("split", attempt=attempt + 1)))
        job.publish("splitting",
                    stage_percent=min(100.0, 100.0 * int(s.get("frames_done", 0)) / total))
        rounds += 1
        if rounds >= job.rounds_per_generation:
            _continue(job)
            return False
        yield job.context.create_timer(_now(job.context) + job.poll)


def _monitor_training(job: Job) -> Generator[Any, Any, bool]:
    """Poll the training task; retry it a bounded number of times."""
    st = job.state
    rounds = 0
    while True:
        p = yield from job.call("progress", attempts={}, train_attempt=st["train_attempt"])
        if p.get("train") is None:  # unknown to the Batch service: submit the attempt again
            yield from job.call("submit", attempts={}, style_blob=st["style_blob"],
                                train_attempt=st["train_attempt"])
        t = p.get("train") or {"state": "pending", "progress": 0}
        st["train"] = {"state": t["state"], "progress": t.get("progress", 0),
                       "attempt": st["train_attempt"]}
        if t["state"] == "succeeded":
            st["train_attempt"] = 0
            return True
        if t["state"] == "failed":
            reason = t.get("error") or f"exit code {t.get('exit_code')}"
            if t.get("bad_input") or st["train_attempt"] >= job.max_attempts:
                raise JobFailed(f"training the fast model failed: {reason}")
            st["train_attempt"] += 1
            yield from job.call("submit", attempts={}, style_blob=st["style_blob"],
                                train_attempt=st["train_attempt"])
        job.publish("training", stage_percent=_train_percent(job))
        rounds += 1
        if rounds >= job.rounds_per_generation:
            _continue(job)
            return False
        yield job.context.create_timer(_now(job.context) + job.poll)


def _train_percent(job: Job) -> float:
    steps = int(job.options.get("train_steps", 0)) or 1
    return min(100.0, 100.0 * job.state["train"]["progress"] / steps)
