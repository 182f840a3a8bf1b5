"""Bad input ends the job `failed` within seconds with a reason a person understands; the
input stays in `incoming`, nothing appears in `outgoing`, nothing is retried.

Policy for truncated files (README "Bad input"): the job fails and says the file is truncated,
rather than silently producing a shorter video than the one uploaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Harness, ffmpeg
from tests.corpus import CASES_BY_NAME, build

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    good = build(CASES_BY_NAME["single_keyframe"], d)  # moov at the end, as recorders write
    mkv = build(CASES_BY_NAME["short_gops"], d)
    faststart = d / "faststart.mp4"
    ffmpeg("-i", str(good), "-c", "copy", "-movflags", "+faststart", str(faststart))
    out: dict[str, Path] = {"good": good}

    def cut(name: str, src: Path, fraction: float) -> None:
        data = src.read_bytes()
        (d / name).write_bytes(data[: int(len(data) * fraction)])
        out[name] = d / name

    cut("truncated_moov_at_end.mp4", good, 0.6)
    cut("truncated_faststart.mp4", faststart, 0.6)
    cut("truncated.mkv", mkv, 0.6)
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("Meeting notes\n" * 200)
    (d / "random.mp4").write_bytes(os.urandom(200_000))
    photo = d / "photo.mp4"
    ffmpeg("-i", str(good), "-frames:v", "1", "-f", "image2", "-c:v", "mjpeg", str(photo))
    # 64x64 by ffmpeg's own JPEG encoder: small enough that a libav build may read it with the
    # raw mjpeg demuxer rather than as an image.
    tiny = d / "tiny_photo.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", "-c:v", "mjpeg",
           "-f", "image2", str(tiny))
    audio = d / "podcast.mp4"
    ffmpeg("-i", str(good), "-vn", "-c:a", "copy", str(audio))
    # A header that lies: the index promises every frame, but the frame data is not there.
    lying = d / "lying_header.mp4"
    data = faststart.read_bytes()
    lying.write_bytes(data[: len(data) // 3])
    out.update({p.name: p for p in (d / "empty.mp4", d / "notes.mp4", d / "random.mp4", photo,
                                    tiny, audio, lying)})
    return out


CASES = [
    ("empty.mp4", "the file is empty"),
    ("notes.mp4", "not a video"),
    ("random.mp4", "not a video"),
    ("photo.mp4", "still image"),
    ("tiny_photo.mp4", "still image (mjpeg, 64x64, one frame"),
    ("podcast.mp4", "no video stream"),
    ("truncated_moov_at_end.mp4", "index (moov box) is missing"),
    ("truncated_faststart.mp4", "truncated"),
    ("truncated.mkv", "truncated"),
    ("lying_header.mp4", "truncated"),
]


@pytest.mark.parametrize("name,reason", CASES, ids=[c[0] for c in CASES])
def test_bad_upload_fails_fast_with_a_reason_and_loses_nothing(harness: Harness, samples,
                                                               name: str, reason: str):
    blob = harness.upload(samples[name])
    harness.functions.trigger_blob(blob)
    job_id = harness.job_id_for(blob)
    final, seen = harness.watch(job_id, timeout=60)
    assert final["state"] == "failed"
    assert reason in final["error"], final["error"]
    assert "scoring" not in seen  # it never got as far as spending GPU time
    assert harness.store.exists("incoming", blob)
    assert not harness.store.exists("outgoing", final["output"].removeprefix("outgoing/"))
    inst = harness.durable.instances[job_id]
    probes = [e for e in inst.history if e["EventType"] == 4 and e["Name"] == "probe"]
    assert len(probes) == 1, "bad input is not retried"


@pytest.mark.parametrize("env,reason", [
    ({"MAX_WIDTH": "100"}, "larger than the limit MAX_WIDTH x MAX_HEIGHT = 100x"),
    ({"MAX_DURATION_S": "0.5"}, "longer than MAX_DURATION_S=0.5"),
    ({"MAX_INPUT_BYTES": "1000"}, "larger than MAX_INPUT_BYTES=1000"),
    ({"MAX_FRAMES": "10"}, "more than MAX_FRAMES=10"),
])
def test_limits_are_enforced_with_the_setting_named(make_harness, samples, env, reason):
    h = make_harness(**env)
    blob = h.upload(samples["good"])
    h.functions.trigger_blob(blob)
    final, _ = h.watch(h.job_id_for(blob), timeout=60)
    assert final["state"] == "failed" and reason in final["error"], final["error"]


def test_stylebatch_run_exits_non_zero_and_prints_the_error(samples, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORAGE")}
    proc = subprocess.run([sys.executable, "-m", "stylebatch.cli", "run",
                           str(samples["notes.mp4"]), "-o", str(tmp_path / "x.mp4"), "-q"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert proc.returncode == 1
    assert "failed" in proc.stderr and "not a video" in proc.stderr
    assert not (tmp_path / "x.mp4").exists()
