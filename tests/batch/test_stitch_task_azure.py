"""The stitch task on the Azure Batch backend: the real ``python -m scoring stitch`` run by the
loopback fake as a Linux node runs it (the real launcher, the application package on
PYTHONPATH), its inputs downloaded one SAS per blob and its outputs uploaded to work/<job>/,
then published into outgoing/ by a server-side copy; the result is exact."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from shared import pipeline
from shared.jobs import WORK, chunk_blob, new_job_request, stylized_blob
from shared.video import plan_chunks, probe, split
from tests.batch.conftest import azure_settings
from tests.batch.fake_batch_api import FakeBatchService, subprocess_executor
from tests.test_corpus import assert_output_rules

REPO = Path(__file__).resolve().parents[2]


def test_the_stitch_task_runs_on_azure_batch_and_is_published_exactly(
        batch_azurite, batch_store, clips, tmp_path, monkeypatch):
    src = clips["bbb_small"]
    name = f"stitch-azure/{tmp_path.name}.mp4"
    batch_store.upload_file("incoming", name, src)
    req = new_job_request(name, batch_store.info("incoming", name).etag, "swirl", "gatys",
                          "2026-12-01T00:00:00Z")
    # The job so far: probe, plan, chunks; stylized chunks = the chunks (the stitch needs
    # frames, not a style).
    p = probe(str(src))
    mode, chunks = plan_chunks(p, 16)
    for path, c in zip(split(str(src), p, chunks, mode, tmp_path / "chunks"), chunks,
                       strict=True):
        batch_store.upload_file(WORK, chunk_blob(req.job_id, c.index), path)
        batch_store.upload_file(WORK, stylized_blob(req.job_id, c.index), path)
    batch_store.write_json(WORK, f"{req.job_id}/probe.json", p.to_json())

    app = tmp_path / "app"  # the application package: scoring/ and shared/
    app.mkdir()
    for part in ("scoring", "shared"):
        (app / part).symlink_to(REPO / part)
    with FakeBatchService(nodes=1, executor=subprocess_executor) as fake:
        fake.app_packages["stylebatch"] = app
        for shared in fake.node_shared_dirs():
            (shared / "stylebatch").mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / "infra" / "batch" / "run.sh", shared / "stylebatch" / "run.sh")
        ctx = pipeline.Context(settings=azure_settings(fake, batch_azurite,
                                                       batch_app_package="stylebatch"),
                               store=batch_store)
        pipeline.save_chunks(ctx, req.job_id, mode, chunks)
        real_task = pipeline.stitch_task

        def with_python(*args):
            spec = real_task(*args)
            spec.env["STYLEBATCH_PYTHON"] = sys.executable  # this machine has the packages
            return spec

        monkeypatch.setattr(pipeline, "stitch_task", with_python)
        assert pipeline.stitch_job(ctx, req)["ok"]
        deadline = time.monotonic() + 180
        while (state := pipeline.stitch_state(ctx, req, 1))["state"] not in ("succeeded",
                                                                                "failed"):
            assert time.monotonic() < deadline, "the stitch task did not end"
            time.sleep(0.2)
        assert state["state"] == "succeeded", state
        assert state["frames"] == p.frames and state["streams_dropped"] == []
        for item in ("preview", "video"):
            assert pipeline.publish_job(ctx, req, item)["copy"] == "success"
    out = tmp_path / "out.mp4"
    batch_store.download_file("outgoing", req.output, out)
    assert out.stat().st_size == state["size_bytes"]
    assert_output_rules(src, out)  # every frame, timestamp and audio packet
    assert batch_store.read_bytes("outgoing", req.preview)[:2] == b"\xff\xd8"  # a JPEG
