"""The HTTP API: job status, job list, cancel, and starting a job for an existing blob.

    GET    /api/jobs/{id}   the job status JSON (404 unknown id, 400 malformed id)
    GET    /api/jobs        recent jobs, newest first (?limit=, default 50)
    POST   /api/jobs        {"blob": "clip.mp4", "style": "mosaic", "model": "gatys"} → 202
    DELETE /api/jobs/{id}   cancel: terminates the orchestration and the Batch job → 202

Every call has a caller (Entra ID sign-in in Azure, a fixed local identity locally; 401
without one); a caller sees and cancels only its own jobs, admins all (functions/access.py).

Every handler is ``async def`` (the Durable client binding awaits it) and runs on the worker's
one event loop: the Durable client's calls are asynchronous, and every blocking call (storage,
Batch) goes to a thread with ``asyncio.to_thread`` so that one request never stalls the others.

The status is the orchestration's custom status (set by the orchestrator at every step),
completed from the runtime status when the orchestration ended without saying so itself
(terminated → cancelled, crashed → failed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from functions.access import Caller, NotSignedIn, active_jobs, caller_of, visible_jobs
from functions.starter import build_request, start_job, upload_request
from shared import pipeline, telemetry, uploads
from shared.jobs import (
    INCOMING,
    InvalidName,
    JobRequest,
    job_status,
    validate_blob_name,
    validate_job_id,
)
from shared.redact import redact
from shared.settings import get_settings
from shared.storage import get_store

# App Service authentication (Entra ID) says who is calling; a function key on top keeps the
# routes closed should sign-in ever be misconfigured (the app registers every route at FUNCTION).
bp = df.Blueprint(http_auth_level=func.AuthLevel.FUNCTION)
Client = df.DurableOrchestrationClient
log = logging.getLogger(__name__)

_TERMINAL_RUNTIME = {"Completed", "Failed", "Terminated", "Canceled"}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=None), status_code=status,
                             mimetype="application/json", headers=headers)


def _error(status: int, message: str) -> func.HttpResponse:
    return _json({"error": message}, status)


def _route_job_id(req: func.HttpRequest) -> tuple[str, func.HttpResponse | None]:
    """The {id} route parameter, or a 400 response when it is not a well-formed job id."""
    job_id = req.route_params.get("id", "")
    try:
        return validate_job_id(job_id), None
    except InvalidName as exc:
        return job_id, _error(400, str(exc))


def _caller(req: func.HttpRequest) -> tuple[Caller, func.HttpResponse | None]:
    """Who is calling, or a 401 response (functions/access.py)."""
    try:
        return caller_of(req, get_settings()), None
    except NotSignedIn as exc:
        return Caller(""), _error(401, str(exc))


def status_from_orchestration(status: df.DurableOrchestrationStatus) -> dict[str, Any] | None:
    """The job status JSON for an orchestration status (None when it is not a job)."""
    runtime = status.runtime_status.value if status.runtime_status else None
    custom = status.custom_status if isinstance(status.custom_status, dict) else None
    if runtime is None:
        return None
    if custom is None:
        data = status.input_ if isinstance(status.input_, dict) else None
        if isinstance(status.input_, str):
            try:
                data = json.loads(status.input_)
            except ValueError:
                data = None
        if not data or "request" not in data:
            return None
        req = JobRequest.from_json(data["request"])
        updated = (status.last_updated_time or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        custom = job_status(req, "queued", updated=updated)
    custom = dict(custom)
    if runtime in ("Terminated", "Canceled") and custom["state"] not in ("completed", "failed"):
        custom["state"] = "cancelled"
        custom["eta_seconds"] = None
    elif runtime == "Failed" and custom["state"] != "failed":
        custom["state"] = "failed"
        custom["error"] = custom.get("error") or f"internal error: {redact(status.output)}"
        custom["eta_seconds"] = None
    if runtime in _TERMINAL_RUNTIME and isinstance(custom.get("chunks"), dict):
        custom["chunks"] = {**custom["chunks"], "running": 0}  # an ended job runs nothing
    return custom


@bp.route(route="jobs/{id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_job(req: func.HttpRequest, client: Client) -> func.HttpResponse:
    _, body, refused = await visible_job(req, client)
    return refused or _json(body)


async def visible_job(req: func.HttpRequest, client: Client
                      ) -> tuple[str, dict[str, Any] | None, func.HttpResponse | None]:
    """The route's job as its status JSON, if this caller may see it: (id, body, None), or
    (id, None, the response that refuses it: 400 bad id, 401/403 caller, 404 not found)."""
    job_id, invalid = _route_job_id(req)
    if invalid:
        return job_id, None, invalid
    caller, denied = _caller(req)
    if denied:
        return job_id, None, denied
    status = await client.get_status(job_id, show_input=True)
    body = status_from_orchestration(status) if status else None
    if body is None or not caller.may_see(body.get("caller")):
        return job_id, None, _error(404, f"no job with id {job_id}")
    return job_id, body, None


@bp.route(route="jobs", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def list_jobs(req: func.HttpRequest, client: Client) -> func.HttpResponse:
    caller, denied = _caller(req)
    if denied:
        return denied
    try:
        limit = max(1, min(500, int(req.params.get("limit", "50"))))
    except ValueError:
        return _error(400, "limit must be a number")
    jobs = await visible_jobs(client, caller, limit, status_from_orchestration)
    return _json({"jobs": jobs})


@bp.route(route="jobs", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def create_job(req: func.HttpRequest, client: Client) -> func.HttpResponse:
    try:
        body = req.get_json()
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return _error(400, "the body must be JSON: {\"blob\": \"clip.mp4\", \"style\": ..., "
                           "\"model\": ...}")
    if not isinstance(body, dict) or not isinstance(body.get("blob"), str):
        return _error(400, "\"blob\" (a name in the incoming container) is required")
    settings = get_settings()
    caller, denied = _caller(req)
    if denied:
        return denied
    name = body["blob"].removeprefix(INCOMING + "/")
    try:
        validate_blob_name(name)
        style = body.get("style")
        model = body.get("model")
        for key, value in (("style", style), ("model", model)):
            if value is not None and not isinstance(value, str):
                raise InvalidName(f"{key} must be a string")
        store = get_store(settings)
        info = await asyncio.to_thread(store.info, INCOMING, name)
        if info is None:
            return _error(404, f"no blob {INCOMING}/{name}")
        record = await asyncio.to_thread(uploads.read, store, name)
        upload = upload_request(name, info.etag, info.metadata, info.last_modified, record,
                                settings)  # the job the upload itself started
        # An ordinary caller's job is its own (its id keyed by the caller too): for the blob it
        # uploaded through the page, that is the upload's job. An admin acts on the upload's job
        # (restarting it when it failed or was cancelled); it stays its uploader's.
        if caller.admin or upload.caller == caller.id:
            job = build_request(name, info.etag, info.metadata, settings,
                                style or upload.style, model or upload.model,
                                caller=upload.caller)
        else:
            job = build_request(name, info.etag, info.metadata, settings, style, model,
                                caller=caller.id)
        job = dataclasses.replace(job, caller=job.caller or caller.id)
        if job.options.get("reject"):
            raise InvalidName(job.options["reject"])
    except InvalidName as exc:
        return _error(400, str(exc))
    refused = await too_many_jobs(client, caller, settings, but=job.job_id)
    if refused:
        return refused
    job_id, started = await start_job(client, job, settings, restart_failed=True)
    location = f"/api/jobs/{job_id}"
    return _json({"id": job_id, "started": started, "status": location}, 202,
                 headers={"Location": location})


async def too_many_jobs(client: Client, caller: Caller, settings: Any, but: str = ""
                        ) -> func.HttpResponse | None:
    """A 429 when the caller has MAX_ACTIVE_JOBS_PER_CALLER unfinished jobs (besides ``but``,
    the job being restarted): before starting a job of theirs, or issuing an upload URL."""
    running = await active_jobs(client, caller, status_from_orchestration) - {but}
    if len(running) >= settings.max_active_jobs_per_caller:
        return _error(429, f"you have {len(running)} unfinished jobs, the most allowed "
                           f"(MAX_ACTIVE_JOBS_PER_CALLER); wait for one to end or cancel one")
    return None


@bp.route(route="jobs/{id}", methods=["DELETE"])
@bp.durable_client_input(client_name="client")
async def cancel_job(req: func.HttpRequest, client: Client) -> func.HttpResponse:
    job_id, invalid = _route_job_id(req)
    if invalid:
        return invalid
    caller, denied = _caller(req)
    if denied:
        return denied
    status = await client.get_status(job_id, show_input=True)
    runtime = status.runtime_status.value if status and status.runtime_status else None
    body = status_from_orchestration(status) if runtime else None
    if runtime is None or body is None or not caller.may_see(body.get("caller")):
        return _error(404, f"no job with id {job_id}")
    if not caller.may_manage(body.get("caller")):
        return _error(403, f"job {job_id} is not yours to cancel")
    if runtime in _TERMINAL_RUNTIME:
        return _error(409, f"job {job_id} has already ended ({runtime.lower()})")
    with telemetry.job_span(job_id, "cancel"):
        await client.terminate(job_id, "cancelled by the user")
        await asyncio.to_thread(pipeline.cancel_job,
                                pipeline.Context.from_settings(get_settings()), job_id)
    telemetry.job_ended("cancelled")
    return _json({"id": job_id, "state": "cancelled"}, 202)
