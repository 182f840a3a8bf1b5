"""shared.video on real clips: probe without decoding, frame-exact splits (stream copy at clean
cuts; re-encode when the keyframes do not allow it), and retiming invariants."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from shared.video import (
    Chunk,
    VideoError,
    frame_timestamps,
    plan_chunks,
    probe,
    retime_packets,
    split,
)
from tests.conftest import BBB, BIKES, ffmpeg, framemd5


@pytest.fixture(scope="module")
def gop_clip(tmp_path_factory) -> Path:
    """bikes with a closed GOP every 20 frames and B-frames (so copy cuts are possible)."""
    out = tmp_path_factory.mktemp("gop") / "bikes_gop20.mp4"
    ffmpeg("-i", str(BIKES), "-t", "4", "-c:v", "libx264", "-preset", "veryfast", "-g", "20",
           "-keyint_min", "20", "-sc_threshold", "0", "-bf", "2", str(out))
    return out


def test_probe_reads_frames_timestamps_and_streams_without_decoding():
    p = probe(str(BBB))
    assert (p.width, p.height, p.frames, p.fps) == (1280, 720, 132, "25")
    assert p.pts == sorted(p.pts) and len(set(p.pts)) == 132
    audio = [s for s in p.streams if s.kind == "audio"]
    assert len(audio) == 1 and audio[0].channels == 6
    assert p.cuts == [0]  # one keyframe for the whole clip


def test_single_keyframe_clip_is_split_by_reencode_into_exact_chunks(tmp_path):
    p = probe(str(BBB))
    mode, chunks = plan_chunks(p, 48)
    assert mode == "reencode" and [c.frames for c in chunks] == [48, 48, 36]
    paths = split(str(BBB), p, chunks, mode, tmp_path)
    got = [frame_timestamps(path)[1] for path in paths]
    assert [len(g) for g in got] == [48, 48, 36]
    tb_in, pts_in = frame_timestamps(BBB)
    tb_out, _ = frame_timestamps(paths[0])
    # Every chunk keeps its frames' original presentation times (to the chunk's precision).
    flat = [t * tb_out for g in got for t in g]
    assert all(abs(a - b * tb_in) <= tb_out for a, b in zip(flat, pts_in, strict=True))


def test_clean_gops_are_split_by_stream_copy_bit_exactly(gop_clip: Path, tmp_path):
    p = probe(str(gop_clip))
    assert p.cuts[:3] == [0, 20, 40]
    mode, chunks = plan_chunks(p, 30)
    assert mode == "copy"
    assert all(c.start in p.cuts for c in chunks)
    paths = split(str(gop_clip), p, chunks, mode, tmp_path)
    # Decoding the chunks one after another gives exactly the original's frames.
    original = [row[-1] for row in framemd5(gop_clip, "-map", "0:v", "-fps_mode", "passthrough")]
    pieces = [row[-1] for path in paths
              for row in framemd5(path, "-map", "0:v", "-fps_mode", "passthrough")]
    assert pieces == original


def test_plan_never_loses_or_duplicates_a_frame():
    class FakeProbe:
        def __init__(self, frames: int, cuts: list[int]):
            self.frames, self.cuts = frames, cuts

    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(1, 2000)
        cuts = sorted({0, *rng.sample(range(n), min(n, rng.randint(0, 40)))})
        target = rng.randint(1, 200)
        _, chunks = plan_chunks(FakeProbe(n, cuts), target)  # type: ignore[arg-type]
        assert chunks[0].start == 0
        assert all(a.start + a.frames == b.start for a, b in zip(chunks, chunks[1:]))
        assert chunks[-1].start + chunks[-1].frames == n
        assert all(c.frames >= 1 for c in chunks)
        assert [c.index for c in chunks] == list(range(len(chunks)))


def test_a_stream_copy_split_makes_as_many_chunks_as_planned():
    """The planner rounds the chunk count to whole waves of the pool; cutting each chunk at the
    first keyframe past its target would lose chunks (and even up the last wave no more)."""
    class FakeProbe:
        def __init__(self, frames: int, cuts: list[int]):
            self.frames, self.cuts = frames, cuts

    for frames, gop, target in ((180_000, 50, 693), (180_000, 50, 3000), (9_000, 250, 900),
                                (1_000, 12, 100)):
        mode, chunks = plan_chunks(FakeProbe(frames, list(range(0, frames, gop))), target)
        assert mode == "copy"
        assert len(chunks) == math.ceil(frames / target), (frames, gop, target)
        assert all(c.start % gop == 0 for c in chunks)
        assert all(abs(c.frames - frames / len(chunks)) <= gop for c in chunks)


def test_retime_keeps_dts_increasing_and_before_pts():
    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(1, 60)
        shown = sorted(rng.sample(range(0, 100_000), n))
        # a decode order with B-frame style reordering: swap some neighbours
        decode = list(range(n))
        for i in range(1, n - 1, 3):
            if rng.random() < 0.5:
                decode[i], decode[i + 1] = decode[i + 1], decode[i]
        old_pts = [shown[k] for k in decode]
        new = sorted(rng.sample(range(0, 10_000_000), n))
        pts, dts = retime_packets(old_pts, new, room=500)
        assert sorted(pts) == new
        assert all(d <= p for d, p in zip(dts, pts, strict=True))
        assert all(a < b for a, b in zip(dts, dts[1:]))


@pytest.mark.parametrize("content,reason", [
    (b"", "not a video"),
    (b"just text\n" * 100, "not a video"),
])
def test_probe_rejects_non_video(tmp_path, content: bytes, reason: str):
    path = tmp_path / "x.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match=reason) as err:
        probe(str(path))
    assert err.value.bad_input


@pytest.mark.parametrize("encoder,demuxer", [
    ("mjpeg", None), ("mjpeg", "mjpeg"), ("mjpeg", "jpeg_pipe"), ("png", None)])
def test_still_image_renamed_mp4_is_refused_whichever_demuxer_reads_it(
        tmp_path, monkeypatch, encoder: str, demuxer: str | None):
    """A 64x64 picture from ffmpeg's own image encoder, renamed .mp4. Another libav build may
    pick another demuxer for the same bytes (the raw ``mjpeg`` one reads a plain JPEG as a
    one-frame stream): the decision rests on what the file is, not the demuxer's name."""
    import av

    photo = tmp_path / "photo.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", "-c:v", encoder,
           "-f", "image2", str(photo))
    if demuxer:
        real_open = av.open
        monkeypatch.setattr(av, "open", lambda f, mode="r", **kw: real_open(
            f, mode, **({"format": demuxer} if mode == "r" else {}), **kw))
        with av.open(str(photo)) as c:
            assert c.format.name == demuxer
    with pytest.raises(VideoError, match=f"still image \\({encoder}, 64x64, one frame"):
        probe(str(photo))


def test_one_frame_of_motion_jpeg_in_a_real_container_is_still_a_video(tmp_path):
    clip = tmp_path / "one.mov"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=25", "-frames:v", "1", "-c:v", "mjpeg",
           str(clip))
    p = probe(str(clip))
    assert p.frames == 1 and p.codec == "mjpeg"


def test_chunk_dataclass_round_trips():
    c = Chunk(3, 96, 48)
    assert Chunk(**c.to_json()) == c


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_a_streamed_stitch_hands_over_the_same_file_in_blocks_with_little_disk(
        tmp_path, monkeypatch, ext: str):
    import shared.video.stitching as stitching
    from shared.video import output_format, stitch

    monkeypatch.setattr(stitching, "BLOCK_BYTES", 32 * 1024)
    monkeypatch.setattr(stitching, "HEAD_BLOCKS", 2)
    src = tmp_path / f"bbb.{ext}"
    ffmpeg("-i", str(BBB), "-c", "copy", str(src))
    p = probe(str(src))
    mode, chunks = plan_chunks(p, 40)
    paths = [str(x) for x in split(str(src), p, chunks, mode, tmp_path / "chunks")]
    whole = stitch(str(src), p, chunks, paths, tmp_path / f"whole.{ext}", output_format(ext))

    class Blocks:
        def __init__(self) -> None:
            self.blocks: dict[int, bytes] = {}

        def stage(self, index: int, data: bytes) -> None:
            self.blocks[index] = data

    sink = Blocks()
    streamed = stitch(str(src), p, chunks, paths, tmp_path / f"scratch.{ext}",
                      output_format(ext), sink=sink)
    assert not (tmp_path / f"scratch.{ext}").exists()  # scratch only
    assert sorted(sink.blocks) == list(range(streamed.blocks)) and streamed.blocks > 8
    joined = tmp_path / f"joined.{ext}"
    joined.write_bytes(b"".join(sink.blocks[i] for i in range(streamed.blocks)))
    assert streamed.size_bytes == joined.stat().st_size == whole.size_bytes
    # The same frames, timestamps and audio as the file written whole (Matroska's header
    # carries a random segment id, so compare what a player decodes, not bytes).
    assert framemd5(joined, "-map", "0:v:0") == framemd5(tmp_path / f"whole.{ext}", "-map", "0:v:0")
    assert framemd5(joined, "-map", "0:a:0", "-c", "copy") == \
        framemd5(src, "-map", "0:a:0", "-c", "copy")
    assert frame_timestamps(joined) == frame_timestamps(tmp_path / f"whole.{ext}")
    # The local disk held the head and a few blocks behind the writer, not the file.
    assert streamed.peak_disk_bytes < whole.size_bytes / 2


def test_the_video_package_imports_without_azure_or_torch():
    """The split and stitch tasks run it on a Batch node (no Azure package) and the probe in
    the Function app (no torch): it needs neither."""
    import subprocess
    import sys

    code = ("import sys, shared.video; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'azure'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
