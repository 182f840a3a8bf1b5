"""Every real-world shape in the corpus comes back whole: the full product path (upload → blob
trigger → orchestrator → local Batch scoring → stitch) and the output rules checked through
ffmpeg's own view of both files.

Output rules (README "What comes back"): same frame count; same per-frame presentation
timestamps (within one tick of the output's time base); same coded size, pixel aspect and
rotation (kept as metadata); every audio stream bit-identical with its language tag and start;
subtitles kept; the container follows the input's.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from shared.video import frame_timestamps, probe
from tests.conftest import Harness, framemd5
from tests.corpus import CASES, build


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="module")
def corpus_harness(azurite):
    # Small chunks so that even 1-second clips cross chunk boundaries.
    from tests.conftest import FAST_SCORING

    h = Harness(azurite, {"STORAGE": azurite.connection_string, **FAST_SCORING,
                          "FRAMES_PER_CHUNK": "20", "SCORING_MAX_SIDE": "32"})
    yield h
    h.close()


def _run(h: Harness, src: Path, tmp: Path) -> tuple[Path, dict]:
    # The bundled fast model: what is checked here is the media around the pixels, which the
    # model does not touch, and a chunk task of it costs a fraction of a gatys one's.
    name = h.upload(src, style="swirl", model="fast")
    h.functions.trigger_blob(name)
    final, _ = h.watch(h.job_id_for(name), timeout=300)
    assert final["state"] == "completed", final
    out = tmp / Path(final["output"]).name
    h.store.download_file("outgoing", final["output"].removeprefix("outgoing/"), out)
    return out, final


def _seconds(tb: Fraction, pts: list[int]) -> list[Fraction]:
    return [tb * p for p in pts]


def assert_output_rules(src: Path, out: Path) -> None:
    assert out.suffix == src.suffix, "the output container follows the input's"
    pin, pout = probe(str(src)), probe(str(out))
    # Frames and timestamps.
    assert pout.frames == pin.frames
    tb_in, pts_in = frame_timestamps(src)
    tb_out, pts_out = frame_timestamps(out)
    for i, (a, b) in enumerate(zip(_seconds(tb_in, pts_in), _seconds(tb_out, pts_out),
                                   strict=True)):
        assert abs(a - b) <= tb_out, f"frame {i}: {float(a)} s in, {float(b)} s out"
    seen_in = framemd5(src, "-map", "0:v:0", "-fps_mode", "passthrough")
    seen_out = framemd5(out, "-map", "0:v:0", "-fps_mode", "passthrough")
    assert len(seen_out) == len(seen_in), "ffmpeg decodes as many frames from both"
    # Display geometry: coded size, pixel aspect, rotation.
    assert (pout.width, pout.height, pout.sar, pout.rotation) == \
        (pin.width, pin.height, pin.sar, pin.rotation)
    assert pout.display_size == pin.display_size
    # Audio: every stream, bit-identical packets and timestamps, language and start kept.
    a_in = [s for s in pin.streams if s.kind == "audio"]
    a_out = [s for s in pout.streams if s.kind == "audio"]
    assert [(s.codec, s.channels, s.language) for s in a_out] == \
        [(s.codec, s.channels, s.language) for s in a_in]
    for i in range(len(a_in)):
        assert framemd5(out, "-map", f"0:a:{i}", "-c", "copy") == \
            framemd5(src, "-map", f"0:a:{i}", "-c", "copy"), f"audio stream {i} differs"
    # Subtitles kept, packet for packet.
    s_in = [s for s in pin.streams if s.kind == "subtitle"]
    assert [(s.codec, s.language) for s in pout.streams if s.kind == "subtitle"] == \
        [(s.codec, s.language) for s in s_in]
    if s_in:
        assert framemd5(out, "-map", "0:s", "-c", "copy") == \
            framemd5(src, "-map", "0:s", "-c", "copy")


def _frames(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(int)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_clip_comes_back_whole(case, corpus_harness: Harness, corpus_dir: Path,
                                      tmp_path: Path):
    src = build(case, corpus_dir)
    out, final = _run(corpus_harness, src, tmp_path)
    assert_output_rules(src, out)
    assert np.abs(_frames(src) - _frames(out)).mean() > 8, "pixels clearly changed"
    assert final["frames"]["done"] == final["frames"]["total"]
    if "data" in case.tags:  # a stream the container cannot carry is reported, not silent
        kept = any(s.kind == "data" for s in probe(str(out)).streams)
        assert kept or any("dropped" in w for w in final.get("warnings", [])), final


def test_chunk_boundaries_are_invisible(corpus_harness: Harness, tmp_path: Path):
    """A clip whose frames carry their position in the sequence (a white box steps round the
    four quarters of the picture, one quarter per frame) comes back with every frame showing
    its own quarter: nothing duplicated, dropped or reordered at any chunk boundary."""
    import av

    src = tmp_path / "walker.mp4"
    with av.open(str(src), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        for i in range(90):
            image = np.zeros((96, 160, 3), np.uint8)
            row, col = (i // 2) % 2, i % 2
            image[row * 48:(row + 1) * 48, col * 80:(col + 1) * 80] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    out, final = _run(corpus_harness, src, tmp_path)
    assert final["chunks"]["total"] >= 3, final["chunks"]
    assert_output_rules(src, out)
    quarters = _frames(out).mean(axis=3).reshape(-1, 2, 48, 2, 80).mean(axis=(2, 4))
    quarters -= np.median(quarters, axis=0)  # what the style paints everywhere is not the box
    shown = [tuple(int(x) for x in np.unravel_index(np.argmax(q), q.shape)) for q in quarters]
    assert shown == [((i // 2) % 2, i % 2) for i in range(90)]
