"""Activities of `video_pipeline`: thin wrappers over ``shared.pipeline``.

Each takes ``{"request": <JobRequest JSON>, ...}`` and returns a small JSON value. The work
(and its tests) lives in ``shared/pipeline.py``; this file only binds it to Durable.

Payloads travel as JSON text; the activity trigger's converter hands each activity the decoded
JSON object and encodes what it returns. Their annotation is the plain ``dict``: the Python
worker accepts only a class (or a ``typing`` generic) on a binding parameter, and one refused
function fails the indexing of the whole app, so ``dict[str, Any]`` must not appear on an
activity's signature (tests/test_worker_conformance.py loads the app with the worker's code).
"""

from __future__ import annotations

import azure.durable_functions as df

from shared import pipeline
from shared.jobs import JobRequest
from shared.settings import get_settings

bp = df.Blueprint()
Payload = dict  # a JSON object; see the module docstring for why not dict[str, Any]


def _ctx() -> pipeline.Context:
    return pipeline.Context.from_settings(get_settings())


def _req(payload: Payload) -> JobRequest:
    return JobRequest.from_json(payload["request"])


@bp.activity_trigger(input_name="payload", activity="probe")
def probe(payload: Payload) -> Payload:
    return pipeline.probe_job(_ctx(), _req(payload))


@bp.activity_trigger(input_name="payload", activity="split")
def split(payload: Payload) -> Payload:
    return pipeline.split_job(_ctx(), _req(payload))


@bp.activity_trigger(input_name="payload", activity="model_exists")
def model_exists(payload: Payload) -> Payload:
    return {"exists": pipeline.model_exists(_ctx(), _req(payload).style)}


@bp.activity_trigger(input_name="payload", activity="submit")
def submit(payload: Payload) -> Payload:
    return pipeline.submit_job(_ctx(), _req(payload), payload["attempts"], payload["style_blob"],
                               int(payload.get("train_attempt", 0)))


@bp.activity_trigger(input_name="payload", activity="progress")
def progress(payload: Payload) -> Payload:
    return pipeline.progress_job(_ctx(), _req(payload), payload["attempts"],
                                 int(payload.get("train_attempt", 0)))


@bp.activity_trigger(input_name="payload", activity="stitch")
def stitch(payload: Payload) -> Payload:
    return pipeline.stitch_job(_ctx(), _req(payload))


@bp.activity_trigger(input_name="payload", activity="cleanup")
def cleanup(payload: Payload) -> Payload:
    return pipeline.cleanup_job(_ctx(), _req(payload), bool(payload.get("failed")))
