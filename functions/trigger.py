"""Blob trigger: an upload to `incoming` starts a job.

In Azure the trigger's source is Event Grid (the only blob trigger Flex Consumption
supports); the function receives a BlobClient (SDK-type binding), so the video itself is
never read into the function's memory. Locally `stylebatch serve` polls the container and
calls this same function.

An upload through the web page's upload URL starts its job here too, as the job of the caller
who asked for the URL (``shared/uploads.py``); the page then looks that job up, it starts none.
"""

from __future__ import annotations

import asyncio
import logging

import azure.durable_functions as df
import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_types
from azure.core.exceptions import HttpResponseError

from functions.starter import start_job, upload_request
from shared import telemetry, uploads
from shared.jobs import INCOMING, InvalidName, validate_blob_name
from shared.settings import get_settings
from shared.storage import get_store

bp = df.Blueprint()
log = logging.getLogger(__name__)


@bp.blob_trigger(arg_name="blob", path=INCOMING + "/{name}", connection="STORAGE",
                 source=func.BlobSource.EVENT_GRID)
@bp.durable_client_input(client_name="client")
async def on_upload(blob: blob_types.BlobClient, client: df.DurableOrchestrationClient) -> None:
    settings = get_settings()
    name = blob.blob_name
    try:
        # async def (the Durable client binding awaits it) on the worker's one event loop: the
        # client's blocking call goes to a thread, so other invocations keep running meanwhile.
        props = await asyncio.to_thread(blob.get_blob_properties)
        etag, metadata = props.etag.strip('"'), dict(props.metadata or {})
        committed = props.last_modified
        # Who asked for the upload URL (the page's uploads): the job is theirs.
        record = await asyncio.to_thread(uploads.read, get_store(settings), name)
    except (HttpResponseError, ValueError):
        if _usable(name):
            raise  # a good name: a transient failure, the host retries the event
        etag, metadata, committed, record = "", {}, None, None  # a name storage cannot look up
    # A bad name still makes a job, failed at once with the reason: a record, not a log line.
    req = upload_request(name, etag, metadata, committed, record, settings)
    with telemetry.trigger_span(req.job_id, name):  # the first span of the job's trace
        job_id, started = await start_job(client, req, settings)
    log.info("%s %s/%r as job %s", "started" if started else "already have", INCOMING, name,
             job_id)


def _usable(name: str) -> bool:
    try:
        validate_blob_name(name)
        return True
    except InvalidName:
        return False
