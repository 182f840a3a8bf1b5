"""Starting jobs idempotently: shared by the blob trigger and `POST /api/jobs`.

The job id derives from the blob's name, its ETag (the version), the style and the model, so
a second event for the same upload finds the job already there and starts nothing — whether
that job is still running or finished.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df

from functions.orchestrator import ORCHESTRATOR, start_input
from shared.jobs import (
    InvalidName,
    JobRequest,
    new_job_request,
    rejected_request,
    style_from_path,
    validate_model,
    validate_style,
)
from shared.settings import Settings
from shared.uploads import UploadRecord

log = logging.getLogger(__name__)

# Runtime statuses a start may replace: the old run is over and did not succeed.
_REPLACEABLE = {"Failed", "Terminated", "Canceled"}


def resolve_style(blob_name: str, metadata: dict[str, str], settings: Settings,
                  style: str | None = None, model: str | None = None) -> tuple[str, str]:
    """Style and model (contract): explicit values, else blob metadata `style`/`model`, else
    the first path segment (incoming/<style>/clip.mp4), else the app's defaults."""
    meta = {k.lower(): v for k, v in (metadata or {}).items()}
    chosen_style = (style or meta.get("style") or style_from_path(blob_name)
                    or settings.default_style)
    chosen_model = model or meta.get("model") or settings.default_model
    return validate_style(chosen_style.lower()), validate_model(chosen_model.lower())


def build_request(blob_name: str, etag: str, metadata: dict[str, str], settings: Settings,
                  style: str | None = None, model: str | None = None,
                  options: dict[str, Any] | None = None, caller: str = "") -> JobRequest:
    """The job for one blob version. A name, style or model that cannot be used still makes a
    job — refused at the door, it fails at once with the reason (``JobRequest.rejected``), so
    the user sees why nothing happens."""
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        chosen_style, chosen_model = resolve_style(blob_name, metadata, settings, style, model)
        return new_job_request(blob_name, etag, chosen_style, chosen_model, created, options,
                               caller)
    except InvalidName as exc:
        return rejected_request(blob_name, etag, settings.default_model, created, str(exc),
                                options, caller)


def upload_request(blob_name: str, etag: str, metadata: dict[str, str],
                   committed: datetime | None, record: UploadRecord | None,
                   settings: Settings) -> JobRequest:
    """The job an upload starts (the blob trigger's; the page looks it up by the blob's name).
    When the app issued the upload URL for this blob and this version came through it
    (``UploadRecord.covers``), the job is the caller's who asked for the URL, with the style
    and model asked for then — the blob's own metadata, which whoever holds the URL sets,
    does not override them. Otherwise nobody's, with style and model from ``resolve_style``."""
    if record is not None and committed is not None and record.covers(committed):
        return build_request(blob_name, etag, metadata, settings, record.style, record.model,
                             caller=record.caller)
    return build_request(blob_name, etag, metadata, settings)


async def start_job(client: df.DurableOrchestrationClient, req: JobRequest,
                    settings: Settings, *, restart_failed: bool = False) -> tuple[str, bool]:
    """Start the orchestration for ``req`` unless it exists. Returns (job id, started)."""
    status = await client.get_status(req.job_id)
    runtime = status.runtime_status.value if status and status.runtime_status else None
    if runtime and not (restart_failed and runtime in _REPLACEABLE):
        log.info("job %s exists (%s); not starting it again", req.job_id, runtime)
        return req.job_id, False
    try:
        await client.start_new(ORCHESTRATOR, req.job_id, start_input(req, settings))
    except Exception as exc:
        # Two deliveries racing: the other one started it between our check and our start.
        again = await client.get_status(req.job_id)
        if again and again.runtime_status:
            log.info("job %s was started concurrently: %s", req.job_id, exc)
            return req.job_id, False
        raise
    return req.job_id, True

