"""The scan task on the Azure backend: built by the pipeline, added through the real azure-batch
SDK to the loopback Batch fake, run by the fake's node for real (the node launcher, the
application package holding this repo's ``scoring/`` and ``shared/``), its input downloaded and
its probe uploaded with one-blob SAS URLs to a real Azurite.

A sound input comes back as work/<job>/probe.json, exactly the full probe of the file; a
damaged one exits 2 with the reason, which the backend reports as bad input."""

from __future__ import annotations

import shutil
import sys
import urllib.parse
from pathlib import Path

import pytest

from shared import pipeline
from shared.batch.azure import AzureBatchBackend
from shared.jobs import WORK, new_job_request
from shared.video import probe
from tests.batch.conftest import azure_settings
from tests.batch.fake_batch_api import FakeBatchService, subprocess_executor, wait_for
from tests.test_bad_input import _damage_middle_index

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def node(tmp_path) -> FakeBatchService:
    """One node that runs commands for real, with this repo as the application package."""
    app = tmp_path / "app"
    app.mkdir()
    for package in ("scoring", "shared"):
        (app / package).symlink_to(REPO / package)
    with FakeBatchService(nodes=1, executor=subprocess_executor) as fake:
        fake.app_packages["stylebatch"] = app
        for shared in fake.node_shared_dirs():
            (shared / "stylebatch").mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / "infra" / "batch" / "run.sh", shared / "stylebatch" / "run.sh")
        yield fake


def _scan(node: FakeBatchService, batch_azurite, batch_store, path: Path):
    blob = f"scan-{path.name}"
    batch_store.upload_file("incoming", blob, path)
    info = batch_store.info("incoming", blob)
    req = new_job_request(blob, info.etag, "mosaic", "gatys", "2026-12-01T00:00:00Z")
    settings = azure_settings(node, batch_azurite)
    backend = AzureBatchBackend(settings, batch_store)
    spec = pipeline.scan_task(req, settings, 1)
    spec.env["STYLEBATCH_PYTHON"] = sys.executable  # this machine has the dependencies
    backend.submit(req.job_id, [spec])
    ctx = pipeline.Context(settings=settings, store=batch_store)
    state: dict = {}

    def ended() -> bool:
        state.update(pipeline.scan_state(ctx, req, 1))
        return state["state"] in ("succeeded", "failed")

    wait_for(ended, timeout=120, what="the scan task")
    return req, state, node.task(req.job_id, spec.id)


def test_the_scan_task_uploads_the_full_probe_with_a_one_blob_signature(
        node, batch_azurite, batch_store, clips):
    src = clips["bbb_small"]
    req, state, task = _scan(node, batch_azurite, batch_store, src)
    assert state["state"] == "succeeded", state
    probe_json = batch_store.read_json(WORK, f"{req.job_id}/probe.json")
    assert probe_json == probe(str(src), size_bytes=src.stat().st_size).to_json()
    (out,) = [o for o in task["outputFiles"] if o["filePattern"] == "probe.json"]
    dest = out["destination"]["container"]
    params = urllib.parse.parse_qs(urllib.parse.urlparse(dest["containerUrl"]).query)
    assert dest["path"] == f"{req.job_id}/probe.json" and params["sr"] == ["b"]


def test_a_damaged_input_fails_the_scan_task_as_bad_input_with_the_reason(
        node, batch_azurite, batch_store, clips, tmp_path):
    damaged = tmp_path / "damaged.mp4"
    faststart = tmp_path / "faststart.mp4"
    from tests.conftest import ffmpeg

    ffmpeg("-i", str(clips["bbb_small"]), "-c", "copy", "-movflags", "+faststart",
           str(faststart))
    damaged.write_bytes(_damage_middle_index(faststart.read_bytes()))
    req, state, _ = _scan(node, batch_azurite, batch_store, damaged)
    assert state["state"] == "failed" and state["exit_code"] == 2, state
    assert state["bad_input"] and "its index lists 40 frames but only" in state["error"], state
    assert not batch_store.exists(WORK, f"{req.job_id}/probe.json")
