"""End to end through the real pieces: upload → blob trigger → orchestrator (replayed by the
Durable SDK's own engine) → local Batch (real `python -m scoring` subprocesses) → stitch,
against a real Azurite, checked through ffmpeg's own view of input and output."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import Harness, framemd5, framemd5_header


def _decoded_frames(path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_upload_becomes_a_stylized_video_with_the_same_frames_timestamps_and_audio(
        harness: Harness, clips, tmp_path):
    src = clips["bbb_small"]
    name = harness.upload(src, style="swirl")
    harness.functions.trigger_blob(name)
    job_id = harness.job_id_for(name)
    # Event Grid may deliver BlobCreated twice: the second delivery starts nothing.
    harness.functions.trigger_blob(name)
    assert list(harness.durable.instances) == [job_id]

    final, seen = harness.watch(job_id)
    assert final["state"] == "completed", final
    assert final["frames"]["done"] == final["frames"]["total"] == 40
    assert final["chunks"]["done"] == final["chunks"]["total"] == 3
    assert final["percent"] == 100.0 and final["error"] is None
    assert seen[-1] == "completed" and "scoring" in seen
    assert harness.durable.instances[job_id].episodes > 1  # it really replayed

    out = tmp_path / "out.mp4"
    harness.store.download_file("outgoing", final["output"].removeprefix("outgoing/"), out)
    assert harness.store.exists("outgoing", final["preview"].removeprefix("outgoing/"))
    assert harness.store.exists("incoming", name)  # the input is kept

    # Same per-frame presentation timestamps and frame count (ffmpeg's view).
    v_in = framemd5(src, "-map", "0:v", "-fps_mode", "passthrough")
    v_out = framemd5(out, "-map", "0:v", "-fps_mode", "passthrough")
    assert [r[2] for r in v_out] == [r[2] for r in v_in]
    # Same size (the dimensions line of the decoded video).
    dims = [h for h in framemd5_header(src, "-map", "0:v") if h.startswith("#dimensions")]
    assert dims == [h for h in framemd5_header(out, "-map", "0:v") if h.startswith("#dimensions")]
    # Audio packets bit-identical, timestamps included.
    assert framemd5(out, "-map", "0:a", "-c", "copy") == framemd5(src, "-map", "0:a", "-c", "copy")
    # Pixels clearly changed: it was restyled, not copied.
    a, b = _decoded_frames(src), _decoded_frames(out)
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 12

    # Intermediates are cleaned up after success; the job is still visible in the list.
    assert not list(harness.store.list("work", f"{job_id}/"))
    listed = harness.functions.http("GET", "/api/jobs")
    assert job_id in listed.get_body().decode()


@pytest.mark.parametrize("content,reason", [
    (b"", "empty"),
    (b"hello, this is not a video at all\n" * 20, "not a video"),
    (bytes(range(256)) * 400, "not a video"),
])
def test_bad_input_fails_with_a_readable_error_and_keeps_the_input(
        harness: Harness, tmp_path, content: bytes, reason: str):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(content)
    name = harness.upload(bad)
    harness.functions.trigger_blob(name)
    final, _ = harness.watch(harness.job_id_for(name), timeout=60)
    assert final["state"] == "failed"
    assert reason in final["error"]
    assert harness.store.exists("incoming", name)
    assert not harness.store.exists("outgoing", final["output"].removeprefix("outgoing/"))


def test_audio_only_and_image_uploads_fail_cleanly(harness: Harness, clips, tmp_path):
    from tests.conftest import ffmpeg

    audio = tmp_path / "voice.mp4"
    ffmpeg("-i", str(clips["bbb_small"]), "-vn", "-c:a", "copy", str(audio))
    image = tmp_path / "photo.mp4"
    ffmpeg("-i", str(clips["bbb_small"]), "-frames:v", "1", "-f", "image2", "-c:v", "mjpeg",
           str(image))
    for path, reason in ((audio, "no video stream"), (image, "still image")):
        name = harness.upload(path)
        harness.functions.trigger_blob(name)
        final, _ = harness.watch(harness.job_id_for(name), timeout=60)
        assert final["state"] == "failed" and reason in final["error"], final


def test_unknown_style_fails_with_the_name_of_the_missing_style(harness: Harness, clips):
    name = harness.upload(clips["bbb_small"], style="nosuchstyle")
    harness.functions.trigger_blob(name)
    final, _ = harness.watch(harness.job_id_for(name), timeout=60)
    assert final["state"] == "failed" and "nosuchstyle" in final["error"]


def test_status_endpoint_rejects_malformed_ids_and_404s_unknown_ones(harness: Harness):
    for bad in ("UPPER", "../etc", "a" * 80, "x--", "-x"):
        resp = harness.functions.http("GET", f"/api/jobs/{bad}")
        assert resp.status_code in (400, 404), bad
        if "/" not in bad:
            assert resp.status_code == 400, bad
    assert harness.functions.http("GET", "/api/jobs/clip-0123abcd").status_code == 404


def test_post_starts_a_job_for_an_existing_blob_and_is_idempotent(harness: Harness, clips):
    name = harness.upload(clips["bbb_small"])
    resp = harness.functions.http("POST", "/api/jobs", {"blob": name, "style": "swirl"})
    assert resp.status_code == 202
    import json

    body = json.loads(resp.get_body())
    assert body["started"] is True
    again = json.loads(harness.functions.http("POST", "/api/jobs",
                                              {"blob": name, "style": "swirl"}).get_body())
    assert again == {**body, "started": False}
    harness.functions.http("DELETE", f"/api/jobs/{body['id']}")
    for bad in ({"blob": "../x.mp4"}, {"blob": name, "style": "Bad Style!"}, {"nope": 1}):
        assert harness.functions.http("POST", "/api/jobs", bad).status_code == 400, bad
    assert harness.functions.http("POST", "/api/jobs", {"blob": "missing.mp4"}).status_code == 404


def test_fast_model_with_a_new_style_trains_first_then_scores(make_harness, clips, tmp_path):
    from PIL import Image

    h = make_harness(TRAIN_STEPS="3")
    # A style nobody has trained a model for: stripes.
    stripes = np.zeros((96, 96, 3), np.uint8)
    stripes[:, ::12] = (255, 40, 0)
    stripes[::12, :] = (0, 80, 255)
    path = tmp_path / "stripes.png"
    Image.fromarray(stripes).save(path)
    h.store.upload_file("styles", "stripes.png", path)
    assert not h.store.exists("models", "stripes.pt")

    name = h.upload(clips["bbb_small"], style="stripes", model="fast")
    h.functions.trigger_blob(name)
    final, seen = h.watch(h.job_id_for(name))
    assert final["state"] == "completed", final
    assert "training" in seen and seen.index("training") < seen.index("scoring")
    assert final["model"] == "fast" and final["frames"]["done"] == 40
    assert h.store.exists("models", "stripes.pt")  # the next job with this style reuses it

    again = h.upload(clips["bbb_small"], style="stripes", model="fast")
    h.functions.trigger_blob(again)
    final2, seen2 = h.watch(h.job_id_for(again))
    assert final2["state"] == "completed" and "training" not in seen2
