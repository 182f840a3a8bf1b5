"""Bad input ends the job `failed` within seconds with a reason a person understands; the
input stays in `incoming`, nothing appears in `outgoing`, nothing is retried.

Two places refuse it, both before any chunk is scored: the door (the probe activity, which
reads the container's header and decodes the first frame: what the header shows) and the
scan task (every packet read on the pool: what only the whole file shows, such as a file cut
short behind an intact index, or a damaged index entry in the middle).

Policy for truncated files (README "Bad input"): the job fails and says the file is truncated,
rather than silently producing a shorter video than the one uploaded.
"""

from __future__ import annotations

import os
import struct
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
    out: dict[str, Path] = {"good": good, "good.mkv": mkv}

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
    # An index entry in the middle that points past the end of the file: the header and the
    # first frames are sound, the damage shows only where the scan reaches it.
    damaged = d / "damaged_middle.mp4"
    damaged.write_bytes(_damage_middle_index(faststart.read_bytes()))
    out.update({p.name: p for p in (d / "empty.mp4", d / "notes.mp4", d / "random.mp4", photo,
                                    tiny, audio, lying, damaged)})
    return out


def _damage_middle_index(data: bytes) -> bytes:
    """The MP4 with the middle entry of its chunk-offset table (stco) pointing past its end."""
    at = data.find(b"stco")
    assert at > 0, "no stco box"
    count = struct.unpack(">I", data[at + 8:at + 12])[0]
    entry = at + 12 + 4 * (count // 2)
    return data[:entry] + struct.pack(">I", 2 * len(data)) + data[entry + 4:]


# (file, reason, where it is refused: "door" = the probe activity, "scan" = the scan task)
CASES = [
    ("empty.mp4", "the file is empty", "door"),
    ("notes.mp4", "not a video", "door"),
    ("random.mp4", "not a video", "door"),
    ("photo.mp4", "still image", "door"),
    ("tiny_photo.mp4", "still image (mjpeg, 64x64, one frame", "door"),
    ("podcast.mp4", "no video stream", "door"),
    ("truncated_moov_at_end.mp4", "index (moov box) is missing", "door"),
    ("truncated_faststart.mp4", "truncated", "scan"),
    ("truncated.mkv", "truncated", "scan"),
    ("lying_header.mp4", "truncated", "scan"),
    ("damaged_middle.mp4", "its index lists 40 frames but only", "scan"),
]


def _activities(h: Harness, job_id: str, name: str) -> int:
    inst = h.durable.instances[job_id]
    return sum(1 for e in inst.history if e["EventType"] == 4 and e["Name"] == name)


@pytest.mark.parametrize("name,reason,where", CASES, ids=[c[0] for c in CASES])
def test_bad_upload_fails_fast_with_a_reason_and_loses_nothing(harness: Harness, samples,
                                                               name: str, reason: str,
                                                               where: str):
    blob = harness.upload(samples[name])
    harness.functions.trigger_blob(blob)
    job_id = harness.job_id_for(blob)
    final, seen = harness.watch(job_id, timeout=60)
    assert final["state"] == "failed"
    assert reason in final["error"], final["error"]
    assert not {"splitting", "scoring"} & set(seen)  # no chunk cut, no GPU time spent
    assert final["chunks"]["done"] == 0
    assert harness.store.exists("incoming", blob)
    assert not harness.store.exists("outgoing", final["output"].removeprefix("outgoing/"))
    assert _activities(harness, job_id, "probe") == 1, "bad input is not retried"
    # Refused at the door: no Batch task at all; at the scan: one scan task, never repeated.
    assert _activities(harness, job_id, "scan") == (where == "scan"), where
    assert ("scanning" in seen) == (where == "scan"), seen


@pytest.mark.parametrize("env,sample,reason,where", [
    ({"MAX_WIDTH": "100"}, "good", "larger than the limit MAX_WIDTH x MAX_HEIGHT = 100x",
     "door"),
    ({"MAX_DURATION_S": "0.5"}, "good", "longer than MAX_DURATION_S=0.5", "door"),
    ({"MAX_INPUT_BYTES": "1000"}, "good", "larger than MAX_INPUT_BYTES=1000", "door"),
    # An MP4's index lists its frames; a Matroska file's count is known once scanned.
    ({"MAX_FRAMES": "10"}, "good", "more than MAX_FRAMES=10", "door"),
    ({"MAX_FRAMES": "10"}, "good.mkv", "more than MAX_FRAMES=10", "scan"),
], ids=["width", "duration", "bytes", "frames-mp4", "frames-mkv"])
def test_limits_are_enforced_with_the_setting_named(make_harness, samples, env, sample, reason,
                                                    where):
    h = make_harness(**env)
    blob = h.upload(samples[sample])
    h.functions.trigger_blob(blob)
    job_id = h.job_id_for(blob)
    final, seen = h.watch(job_id, timeout=60)
    assert final["state"] == "failed" and reason in final["error"], final["error"]
    assert _activities(h, job_id, "scan") == (where == "scan"), where
    assert "splitting" not in seen and h.store.exists("incoming", blob)


def test_stylebatch_run_exits_non_zero_and_prints_the_error(samples, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORAGE")}
    proc = subprocess.run([sys.executable, "-m", "stylebatch.cli", "run",
                           str(samples["notes.mp4"]), "-o", str(tmp_path / "x.mp4"), "-q"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert proc.returncode == 1
    assert "failed" in proc.stderr and "not a video" in proc.stderr
    assert not (tmp_path / "x.mp4").exists()
