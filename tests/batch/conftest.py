"""Fixtures for tests/batch: one Azurite per session, a fresh fake Batch service per test, and
an AzureBatchBackend wired to both (shared key over http, as emulators connect)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from shared.batch.azure import AzureBatchBackend
from shared.batch.base import BlobRef, OutputFile, ResourceFile, TaskSpec, chunk_task_id
from shared.settings import Settings
from shared.storage import BlobStore
from stylebatch.azurite import Azurite
from tests.batch.fake_batch_api import FakeBatchService


@pytest.fixture(scope="session")
def batch_azurite(azurite: Azurite) -> Azurite:
    """The suite's one Azurite (tests/conftest.py)."""
    return azurite


@pytest.fixture(scope="session")
def batch_store(batch_azurite: Azurite) -> BlobStore:
    store = BlobStore.from_settings(Settings(
        storage_connection_string=batch_azurite.connection_string))
    store.ensure_containers()
    store.write_bytes("styles", "mosaic.jpg", b"\xff\xd8style")
    return store


@pytest.fixture
def fake() -> Iterator[FakeBatchService]:
    with FakeBatchService(nodes=4) as service:
        yield service


def azure_settings(fake: FakeBatchService, azurite: Azurite, **overrides) -> Settings:
    values = dict(storage_connection_string=azurite.connection_string, batch_backend="azure",
                  batch_account_url=fake.url, batch_account_name=fake.account,
                  batch_account_key=fake.key, batch_pool_id=fake.pool_id)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_backend(fake: FakeBatchService, batch_azurite: Azurite, batch_store: BlobStore
                 ) -> Callable[..., AzureBatchBackend]:
    def make(**overrides) -> AzureBatchBackend:
        return AzureBatchBackend(azure_settings(fake, batch_azurite, **overrides), batch_store)
    return make


@pytest.fixture
def job_id() -> str:
    return f"clip-{uuid.uuid4().hex[:8]}"


def chunk_spec(job: str, chunk: int, attempt: int = 1, *, store: BlobStore | None = None,
               frames: int = 48, max_wall_s: int = 3600, extra_args: list[str] | None = None
               ) -> TaskSpec:
    """A chunk task exactly as the pipeline builds it; uploads its input chunk when given a
    store."""
    task_id = chunk_task_id(chunk, attempt)
    if store is not None:
        store.write_bytes("work", f"{job}/chunks/{chunk:05d}.mkv", f"chunk {chunk}".encode())
    return TaskSpec(
        id=task_id,
        command=["python", "-m", "scoring", "stylize", "--input", "chunk.mkv", "--output",
                 "out.mkv", "--style", "style.jpg", "--model", "gatys", "--max-side", "320",
                 "--steps", "40", "--warm-steps", "6", *(extra_args or [])],
        resource_files=[ResourceFile(BlobRef("work", f"{job}/chunks/{chunk:05d}.mkv"),
                                     "chunk.mkv"),
                        ResourceFile(BlobRef("styles", "mosaic.jpg"), "style.jpg")],
        output_files=[
            OutputFile("out.mkv", BlobRef("work", f"{job}/stylized/{chunk:05d}.mkv"), "success"),
            OutputFile("stdout.txt", BlobRef("work", f"{job}/logs/{task_id}.stdout.txt"),
                       "always"),
            OutputFile("stderr.txt", BlobRef("work", f"{job}/logs/{task_id}.stderr.txt"),
                       "always")],
        env={}, kind="chunk", chunk=chunk, frames=frames, max_wall_s=max_wall_s,
        max_retries=2)
