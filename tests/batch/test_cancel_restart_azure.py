"""Cancel then restart on the Azure Batch backend (the loopback fake runs the tasks): the cancel
stops the tasks, waits for them, deletes the Batch job and work/<job>/; a restarted run of the
same job id can add its tasks again."""

from __future__ import annotations

from shared import pipeline
from tests.batch.conftest import azure_settings, chunk_spec
from tests.batch.fake_batch_api import Outcome


def test_cancel_then_restart_on_azure_batch(fake, batch_azurite, batch_store, job_id):
    ctx = pipeline.Context(settings=azure_settings(fake, batch_azurite), store=batch_store)
    backend = ctx.backend
    fake.outcome("chunk-*", Outcome(hold=True))
    backend.submit(job_id, [chunk_spec(job_id, i, store=batch_store) for i in range(3)])
    fake.wait_until(lambda: fake.task_state(job_id, "chunk-00000-a1") == "running",
                    what="first task running")

    assert pipeline.cancel_job(ctx, job_id, wait_s=30) is True  # its tasks stopped in time
    assert not list(batch_store.list("work", f"{job_id}/"))
    assert fake.calls("POST", rf"/jobs/{job_id}/terminate$") == 1

    # A restarted run submits the same task ids (attempt 1) again: the terminated Batch job
    # is replaced by a fresh one and they run.
    fake.outcome("chunk-*", Outcome())
    backend.submit(job_id, [chunk_spec(job_id, i, store=batch_store) for i in range(3)])
    fake.wait_until(lambda: {t.state for t in backend.task_states(job_id)} == {"succeeded"}
                    and len(backend.task_states(job_id)) == 3, what="restarted tasks done")
    assert fake.job(job_id)["state"] == "active"
    assert batch_store.exists("work", f"{job_id}/stylized/00002.mkv")
