"""Activities of `video_pipeline`: thin wrappers over ``shared.pipeline``.

Each takes ``{"request": <JobRequest JSON>, ...}`` and returns a small JSON value. The work
(and its tests) lives in ``shared/pipeline.py``; this file only binds it to Durable. What an
activity raises is redacted first (``shared.redact``): it lands in the orchestration history.

Payloads travel as JSON text; the activity trigger's converter hands each activity the decoded
JSON object and encodes what it returns. Their annotation is the plain ``dict``: the Python
worker accepts only a class (or a ``typing`` generic) on a binding parameter, and one refused
function fails the indexing of the whole app, so ``dict[str, Any]`` must not appear on an
activity's signature (tests/test_worker_conformance.py loads the app with the worker's code).
"""

from __future__ import annotations

from datetime import UTC, datetime

import azure.durable_functions as df

from shared import pipeline, telemetry
from shared.jobs import JobRequest
from shared.redact import redact_errors
from shared.settings import get_settings

bp = df.Blueprint()
Payload = dict  # a JSON object; see the module docstring for why not dict[str, Any]


def _ctx() -> pipeline.Context:
    return pipeline.Context.from_settings(get_settings())


def _req(payload: Payload) -> JobRequest:
    return JobRequest.from_json(payload["request"])


def _traced(activity: str, payload: Payload, run) -> Payload:
    """Run an activity inside its span, in the job's trace (shared/telemetry.py): spans are
    emitted here, never from the replayed orchestrator."""
    req = _req(payload)
    with telemetry.activity_span(req.job_id, activity, telemetry.stage_of(activity, payload)):
        return run(req)


@bp.activity_trigger(input_name="payload", activity="probe")
@redact_errors
def probe(payload: Payload) -> Payload:
    return _traced("probe", payload, lambda r: pipeline.probe_job(_ctx(), r))


@bp.activity_trigger(input_name="payload", activity="scan")
@redact_errors
def scan(payload: Payload) -> Payload:
    return _traced("scan", payload, lambda r: pipeline.scan_job(
        _ctx(), r, int(payload.get("attempt", 1))))


@bp.activity_trigger(input_name="payload", activity="scan_state")
@redact_errors
def scan_state(payload: Payload) -> Payload:
    return _traced("scan_state", payload, lambda r: pipeline.scan_state(
        _ctx(), r, int(payload["attempt"])))


@bp.activity_trigger(input_name="payload", activity="split")
@redact_errors
def split(payload: Payload) -> Payload:
    return _traced("split", payload, lambda r: pipeline.split_job(
        _ctx(), r, int(payload.get("attempt", 1))))


@bp.activity_trigger(input_name="payload", activity="split_state")
@redact_errors
def split_state(payload: Payload) -> Payload:
    return _traced("split_state", payload, lambda r: pipeline.split_state(
        _ctx(), r, int(payload["attempt"])))


@bp.activity_trigger(input_name="payload", activity="model_exists")
@redact_errors
def model_exists(payload: Payload) -> Payload:
    return _traced("model_exists", payload,
                   lambda r: {"exists": pipeline.model_exists(_ctx(), r.style)})


@bp.activity_trigger(input_name="payload", activity="submit")
@redact_errors
def submit(payload: Payload) -> Payload:
    return _traced("submit", payload, lambda r: pipeline.submit_job(
        _ctx(), r, payload["chunks"], payload["retried"], payload["style_blob"],
        int(payload.get("train_attempt", 0))))


@bp.activity_trigger(input_name="payload", activity="progress")
@redact_errors
def progress(payload: Payload) -> Payload:
    return _traced("progress", payload, lambda r: pipeline.progress_job(
        _ctx(), r, int(payload["chunks"]), payload["retried"],
        int(payload.get("train_attempt", 0)), payload.get("since"), payload.get("open_rows"),
        int(payload.get("slots", 1))))


@bp.activity_trigger(input_name="payload", activity="stitch")
@redact_errors
def stitch(payload: Payload) -> Payload:
    return _traced("stitch", payload, lambda r: pipeline.stitch_job(
        _ctx(), r, int(payload.get("attempt", 1))))


@bp.activity_trigger(input_name="payload", activity="stitch_state")
@redact_errors
def stitch_state(payload: Payload) -> Payload:
    return _traced("stitch_state", payload, lambda r: pipeline.stitch_state(
        _ctx(), r, int(payload["attempt"])))


@bp.activity_trigger(input_name="payload", activity="publish")
@redact_errors
def publish(payload: Payload) -> Payload:
    return _traced("publish", payload, lambda r: pipeline.publish_job(
        _ctx(), r, str(payload["item"])))


@bp.activity_trigger(input_name="payload", activity="publish_state")
@redact_errors
def publish_state(payload: Payload) -> Payload:
    return _traced("publish_state", payload, lambda r: pipeline.publish_state(
        _ctx(), r, str(payload["item"])))


@bp.activity_trigger(input_name="payload", activity="cleanup")
@redact_errors
def cleanup(payload: Payload) -> Payload:
    req, ctx = _req(payload), _ctx()
    with telemetry.activity_span(req.job_id, "cleanup", "cleanup"):
        tasks = pipeline.task_report(ctx, req)
        result = pipeline.cleanup_job(ctx, req, bool(payload.get("failed")))
    if payload.get("stages"):  # the job's own span, its stages' and its Batch tasks'
        telemetry.job_summary(req.job_id, "failed" if payload.get("failed") else "completed",
                              payload["stages"], datetime.now(UTC).isoformat(), tasks,
                              {"style": req.style, "model": req.model, "blob": req.blob})
    return result
