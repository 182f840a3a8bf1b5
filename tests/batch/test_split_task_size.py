"""The split task lists one output file per chunk, each with a SAS for that one blob, and Azure
Batch refuses a task definition over 1 MB: the planner caps a job on Azure Batch at what one
split task can carry (``shared.plan.AZURE_SPLIT_MAX_CHUNKS``). Measured on the task as the
backend builds it — with the user-delegation SAS an Azure deployment signs and the longest
names the app makes — and through the real SDK against the Batch fake, which refuses
request bodies over 1 MB as the service does."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from unittest import mock

from azure.storage.blob import BlobServiceClient, UserDelegationKey

from shared import pipeline, plan
from shared.batch.azure import AzureBatchBackend
from shared.jobs import new_job_request
from shared.settings import Settings
from shared.storage import BlobStore
from shared.video import Chunk
from tests.batch.conftest import azure_settings

BATCH_TASK_LIMIT = 1024 * 1024
LONGEST_ACCOUNT = "a" * 24  # storage account names have at most 24 characters


def _request():
    req = new_job_request("folder/" + "a film with a long title " * 4 + ".mp4", "0x8DC0FFEE",
                          "swirl", "fast", "2026-12-01T00:00:00Z")
    assert len(req.job_id) == 48  # the longest job id the app makes
    return req


def _plan(n: int) -> list[Chunk]:
    return [Chunk(i, 48 * i, 48) for i in range(n)]


def _delegation_store() -> BlobStore:
    """A store that signs as in Azure (a user delegation key), offline."""
    url = f"https://{LONGEST_ACCOUNT}.blob.core.windows.net"
    store = BlobStore(BlobServiceClient(url))
    key = UserDelegationKey()
    key.signed_oid = key.signed_tid = "0f0e0d0c-0b0a-0908-0706-050403020100"
    key.signed_start, key.signed_expiry = "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"
    key.signed_service, key.signed_version = "b", "2025-01-05"
    key.value = base64.b64encode(bytes(32)).decode()
    store._delegation_key, store._delegation_expiry = key, datetime.now(UTC) + timedelta(days=1)
    return store


def test_a_split_task_at_the_cap_fits_a_batch_task_definition_with_azure_signatures():
    settings = Settings(storage_account_url=f"https://{LONGEST_ACCOUNT}.blob.core.windows.net",
                        batch_backend="azure",
                        batch_account_url="https://b.westeurope.batch.azure.com",
                        batch_account_name="b", batch_pool_id="stylebatch-gpu",
                        batch_app_package="stylebatch")
    backend = AzureBatchBackend(settings, _delegation_store(), client=mock.Mock())
    req = _request()

    def size(chunks: int) -> int:
        spec = pipeline.split_task(req, settings, _plan(chunks), 1)
        return len(json.dumps(backend.task_options(spec).as_dict(), separators=(",", ":")))

    at_cap = size(plan.AZURE_SPLIT_MAX_CHUNKS)
    print(f"split task of {plan.AZURE_SPLIT_MAX_CHUNKS} chunks: {at_cap} bytes")
    assert at_cap < 0.9 * BATCH_TASK_LIMIT
    assert size(2 * plan.AZURE_SPLIT_MAX_CHUNKS) > BATCH_TASK_LIMIT  # why the cap exists


def test_the_planner_caps_a_long_film_on_azure_and_its_split_task_is_accepted(
        fake, batch_azurite, make_backend):
    frames = 2 * 3600 * 25  # a two-hour film at the default FRAMES_PER_CHUNK (48)
    local = Settings()
    azure = azure_settings(fake, batch_azurite)
    assert frames // plan.choose_chunk_frames(frames, 1920, 1080, "fast", local) > 3000
    fpc = plan.choose_chunk_frames(frames, 1920, 1080, "fast", azure)
    chunks = -(-frames // fpc)
    assert chunks <= plan.AZURE_SPLIT_MAX_CHUNKS
    est = plan.estimate(frames, 1920, 1080, "fast", 4, "Standard_NC4as_T4_v3", False,
                        settings=azure)
    assert est.chunks == chunks and any("split task" in n for n in est.notes)

    req = _request()
    backend = make_backend()
    backend.submit(req.job_id, [pipeline.split_task(req, azure, _plan(chunks), 1)])
    assert [t.id for t in backend.task_states(req.job_id)] == ["split-a1"]


def test_a_stitch_task_at_the_cap_fits_a_batch_task_definition_with_azure_signatures():
    """The stitch task lists one resource file per chunk (a read SAS for its stylized
    chunk): at the planner's Azure cap it fits the 1 MB task definition as the split does."""
    settings = Settings(storage_account_url=f"https://{LONGEST_ACCOUNT}.blob.core.windows.net",
                        batch_backend="azure",
                        batch_account_url="https://b.westeurope.batch.azure.com",
                        batch_account_name="b", batch_pool_id="stylebatch-gpu",
                        batch_app_package="stylebatch")
    backend = AzureBatchBackend(settings, _delegation_store(), client=mock.Mock())
    req = _request()

    def size(chunks: int) -> int:
        spec = pipeline.stitch_task(req, settings, _plan(chunks), 1)
        assert len(spec.resource_files) == chunks + 4  # input, probe, plan, preview's chunk
        return len(json.dumps(backend.task_options(spec).as_dict(), separators=(",", ":")))

    at_cap = size(plan.AZURE_SPLIT_MAX_CHUNKS)
    print(f"stitch task of {plan.AZURE_SPLIT_MAX_CHUNKS} chunks: {at_cap} bytes")
    assert at_cap < 0.9 * BATCH_TASK_LIMIT
