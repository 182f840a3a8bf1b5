"""What a monitor poll costs in storage: the progress step needs the job's chunk plan
(work/<job>/chunks.json, ~600 KB at MAX_CHUNKS) on every poll, but transfers it once per
process and plan version — later polls revalidate it with a conditional read that moves no
content — and a rewritten plan is never served stale. Real Azurite, the real progress step;
every download of the plan is counted where the storage SDK makes it."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import ResourceModifiedError, ResourceNotModifiedError
from azure.storage.blob import BlobClient

from shared import pipeline
from shared.jobs import new_job_request
from shared.settings import settings_from_env
from shared.storage import get_store
from shared.video import Chunk

CHUNKS = 10_000
POLLS = 30


@pytest.fixture
def reads(monkeypatch) -> list[dict[str, Any]]:
    """Every download of a chunks.json: the bytes it moved (0 when not modified)."""
    seen: list[dict[str, Any]] = []
    real = BlobClient.download_blob

    def counted(self, *args, **kwargs):
        if not self.blob_name.endswith("/chunks.json"):
            return real(self, *args, **kwargs)
        try:
            downloader = real(self, *args, **kwargs)
        except (ResourceNotModifiedError, ResourceModifiedError) as exc:
            assert exc.status_code == 304, exc
            seen.append({"blob": self.blob_name, "bytes": 0})
            raise
        seen.append({"blob": self.blob_name, "bytes": downloader.size})
        return downloader

    monkeypatch.setattr(BlobClient, "download_blob", counted)
    return seen


def _plan(frames_each: int) -> list[Chunk]:
    return [Chunk(i, i * frames_each, frames_each) for i in range(CHUNKS)]


def test_polls_transfer_the_chunk_plan_once_and_never_use_a_stale_one(azurite, reads):
    settings = settings_from_env({"STORAGE": azurite.connection_string, "MAX_CHUNKS": "10000"})
    store = get_store(settings)
    store.ensure_containers()
    ctx = pipeline.Context(settings=settings, store=store)
    req = new_job_request("film.mp4", "0x8D1", "swirl", "gatys", "2026-12-01T00:00:00Z")
    pipeline.save_chunks(ctx, req.job_id, "reencode", _plan(2))
    size = store.info("work", f"{req.job_id}/chunks.json").size
    assert size > 300_000  # what every poll used to download

    def poll() -> dict[str, Any]:
        return pipeline.progress_job(ctx, req, CHUNKS, {}, slots=4)

    first = poll()
    assert first["counts"]["missing"] == CHUNKS  # no task submitted yet
    results = [poll() for _ in range(POLLS - 1)]
    assert all(r == first for r in results)
    assert len(reads) == POLLS, "one request a poll, to revalidate"
    assert sum(r["bytes"] for r in reads) == size, "the plan itself moved once"

    # A process that never saw the job (another instance, a restarted host) reads it once,
    # and answers as the first did.
    pipeline._plans.clear()
    assert poll() == first and reads[-1]["bytes"] == size

    # A rewritten plan (a split run again, the job restarted): the next poll uses it.
    pipeline.save_chunks(ctx, req.job_id, "reencode", _plan(3))
    rewritten = poll()
    assert reads[-1]["bytes"] > 0
    assert rewritten["makespan_frames"] == first["makespan_frames"] * 3 / 2
    assert [c.frames for c in pipeline.load_chunks(ctx, req.job_id)] == [3] * CHUNKS
    assert len(pipeline._plans) <= pipeline.PLAN_CACHE_JOBS
