"""Blob trigger: an upload to `incoming` starts a job.

In Azure the trigger's source is Event Grid (the only blob trigger Flex Consumption
supports); the function receives a BlobClient (SDK-type binding), so the video itself is
never read into the function's memory. Locally `stylebatch serve` polls the container and
calls this same function.
"""

from __future__ import annotations

import asyncio
import logging

import azure.durable_functions as df
import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_types

from functions.starter import build_request, start_job
from shared.jobs import INCOMING, InvalidName, validate_blob_name
from shared.settings import get_settings

bp = df.Blueprint()
log = logging.getLogger(__name__)


@bp.blob_trigger(arg_name="blob", path=INCOMING + "/{name}", connection="STORAGE",
                 source=func.BlobSource.EVENT_GRID)
@bp.durable_client_input(client_name="client")
async def on_upload(blob: blob_types.BlobClient, client: df.DurableOrchestrationClient) -> None:
    settings = get_settings()
    name = blob.blob_name
    try:
        validate_blob_name(name)
    except InvalidName:
        log.error("ignoring upload with an unusable name: %r", name)
        return
    # async def (the Durable client binding awaits it) on the worker's one event loop: the
    # client's blocking call goes to a thread, so other invocations keep running meanwhile.
    props = await asyncio.to_thread(blob.get_blob_properties)
    req = build_request(name, props.etag.strip('"'), dict(props.metadata or {}), settings)
    job_id, started = await start_job(client, req, settings)
    log.info("%s %s/%s as job %s", "started" if started else "already have", INCOMING, name,
             job_id)
