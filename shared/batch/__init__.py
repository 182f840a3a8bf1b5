"""Batch backends: where chunk tasks run. ``get_backend`` picks one from the settings.

- ``local``: subprocesses on this machine (``shared/batch/local.py``), for `stylebatch run`,
  `stylebatch serve` and the tests;
- ``azure``: Azure Batch (``shared/batch/azure.py``), a GPU pool created by infra/.
"""

from __future__ import annotations

from shared.batch.base import (
    BatchBackend,
    BlobRef,
    OutputFile,
    ResourceFile,
    TaskSpec,
    TaskState,
    chunk_task_id,
    scan_task_id,
    split_task_id,
    stitch_task_id,
    train_task_id,
)
from shared.settings import Settings
from shared.storage import BlobStore

__all__ = ["BatchBackend", "BlobRef", "OutputFile", "ResourceFile", "TaskSpec", "TaskState",
           "chunk_task_id", "scan_task_id", "split_task_id", "stitch_task_id", "train_task_id",
           "get_backend"]


def get_backend(settings: Settings, store: BlobStore) -> BatchBackend:
    if settings.batch_backend == "azure":
        from shared.batch.azure import AzureBatchBackend

        return AzureBatchBackend.shared(settings, store)
    from shared.batch.local import LocalBatchBackend

    return LocalBatchBackend.shared(settings, store)
