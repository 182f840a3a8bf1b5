"""Split: plan the chunks and cut a video's stream into one Matroska file per chunk.

Two ways, both with PyAV in-process (no ffmpeg subprocess):
- ``copy`` (the keyframes allow it): packets are copied, cut at clean IDR keyframes;
- ``reencode`` (sparse or open-GOP keyframes): the video is decoded once and every chunk gets
  a fresh libx264 encoder (near-lossless, fast preset), so it starts on an IDR frame.
Every frame keeps its timestamp; a chunk covers frames ``[start, start + frames)`` in
presentation order.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from shared.video.common import Source, VideoError, libav_error, opened, stream_at
from shared.video.probing import Probe
from shared.video.timestamps import frame_timestamps

OnChunk = Callable[[int, Path], None]  # (chunk index, its file), once the file is complete


@dataclass
class Chunk:
    """Frames ``[start, start + frames)`` of a video, presentation order; ``index`` counts
    chunks from 0."""

    index: int
    start: int  # first frame (presentation order)
    frames: int

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def plan_chunks(p: Probe, frames_per_chunk: int) -> tuple[str, list[Chunk]]:
    """Choose the split: ("copy", chunks at clean keyframes) when the keyframes allow chunks of
    at most twice the target, else ("reencode", chunks of exactly ``frames_per_chunk``).

    Both make as many chunks as the re-encode would (``shared.plan`` sizes chunks so that
    their count fills whole waves of the pool): the copy split cuts at the keyframe nearest to
    each of the evenly spaced boundaries, so keyframes a few frames apart neither shrink the
    count (a ragged last wave) nor leave a runt chunk."""
    assert frames_per_chunk >= 1
    n = p.frames
    if n <= frames_per_chunk and p.cuts[:1] == [0]:
        return "copy", [Chunk(0, 0, n)]
    even = list(range(0, n, frames_per_chunk))
    if len(even) > 1 and n - even[-1] < frames_per_chunk // 4:
        even.pop()  # fold a tiny tail into the previous chunk
    if p.cuts[:1] == [0]:
        starts = [0]
        smallest = max(1, frames_per_chunk // 2)
        for k in range(1, len(even)):
            target = round(k * n / len(even))
            i = bisect.bisect_left(p.cuts, target)
            near = p.cuts[max(0, i - 1):i + 1]
            c = min(near, key=lambda c: (abs(c - target), c)) if near else None
            if c is not None and c - starts[-1] >= smallest and n - c >= smallest:
                starts.append(c)
        bounds = [*starts, n]
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        if max(sizes) <= 2 * frames_per_chunk:
            return "copy", [Chunk(i, a, s) for i, (a, s) in enumerate(zip(starts, sizes))]
    bounds = [*even, n]
    return "reencode", [Chunk(i, a, b - a) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]


def _intermediate_pix_fmt(pix_fmt: str) -> str:
    """A pixel format libx264 encodes losslessly enough for an intermediate chunk."""
    ok = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p",
          "yuv420p10le", "yuv422p10le", "yuv444p10le", "nv12", "gray"}
    if pix_fmt in ok:
        return {"yuvj420p": "yuv420p", "yuvj422p": "yuv422p", "yuvj444p": "yuv444p",
                "nv12": "yuv420p"}.get(pix_fmt, pix_fmt)
    return "yuv444p10le" if any(d in pix_fmt for d in ("10", "12", "16")) else "yuv444p"


def split(src: Source, p: Probe, chunks: list[Chunk], mode: str, out_dir: str | os.PathLike[str],
          on_chunk: OnChunk | None = None) -> list[Path]:
    """Cut the video stream of ``src`` into one .mkv per chunk in ``out_dir``.

    ``copy`` copies packets (no quality loss, very fast); ``reencode`` decodes once and
    encodes each chunk with a fresh libx264 encoder (fast preset, near-lossless quality).
    ``on_chunk(index, path)`` is called as soon as each chunk is complete (so it can be
    uploaded and deleted while the rest is still being cut). Returns the chunk paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (_split_copy if mode == "copy" else _split_reencode)(src, p, chunks, out_dir, on_chunk)
    return paths


def _split_copy(src: Source, p: Probe, chunks: list[Chunk], out_dir: Path,
                on_chunk: OnChunk | None) -> list[Path]:
    paths: list[Path] = []
    starts = {c.start: c for c in chunks}
    with opened(src) as container:
        vs = stream_at(container, p.video_index)
        dst = None
        current: Chunk | None = None
        count = 0
        position = 0  # decode position among shown packets == frame index at clean cuts

        def close() -> None:
            nonlocal dst
            if dst is not None:
                dst.close()
                assert current is not None
                if count != current.frames:
                    raise VideoError(f"chunk {current.index}: cut {count} frames, planned "
                                     f"{current.frames}", bad_input=False)
                paths.append(out_dir / f"{current.index:05d}.mkv")
                if on_chunk:
                    on_chunk(current.index, paths[-1])
            dst = None

        for packet in container.demux(vs):
            if packet.pts is None or packet.is_discard:
                continue
            if position in starts:
                close()
                current, count = starts[position], 0
                dst = av.open(str(out_dir / f"{current.index:05d}.mkv"), "w", format="matroska")
                out_stream = dst.add_stream_from_template(vs, opaque=True)
            assert dst is not None
            packet.stream = out_stream
            dst.mux(packet)
            count += 1
            position += 1
        close()
    return paths


def _split_reencode(src: Source, p: Probe, chunks: list[Chunk], out_dir: Path,
                    on_chunk: OnChunk | None) -> list[Path]:
    """Decode once, encode each chunk with a fresh encoder: its first frame is an IDR frame by
    construction, and every frame keeps its timestamp. Fast preset, near-lossless quality."""
    pix_fmt = _intermediate_pix_fmt(p.pix_fmt)
    paths: list[Path] = []
    index = 0  # frame index, presentation order (the decoder outputs frames in that order)
    with opened(src) as container:
        vs = stream_at(container, p.video_index)
        vs.thread_type = "AUTO"
        time_base = vs.time_base
        rate = vs.average_rate or vs.guessed_rate or Fraction(25)
        writer: _ChunkWriter | None = None
        try:
            for frame in container.decode(vs):
                if index >= p.frames:
                    raise VideoError(f"the video decodes to more frames than the {p.frames} its "
                                     "index lists (the file is damaged)")
                chunk = chunks[len(paths)]
                if writer is None:
                    writer = _ChunkWriter(out_dir / f"{chunk.index:05d}.mkv", frame, pix_fmt,
                                          time_base, rate)
                frame.pts = p.pts[index] if frame.pts is None else frame.pts
                frame.time_base = time_base
                writer.write(frame)
                index += 1
                if index == chunk.start + chunk.frames:
                    writer.close()
                    writer = None
                    paths.append(out_dir / f"{chunk.index:05d}.mkv")
                    _check_chunk(paths[-1], chunk)
                    if on_chunk:
                        on_chunk(chunk.index, paths[-1])
        except av.error.FFmpegError as exc:
            raise libav_error(f"the video cannot be decoded after frame {index}", exc) from exc
        finally:
            if writer is not None:
                writer.close()
    if index != p.frames:
        raise VideoError(f"the video decodes to {index} frames but its index lists {p.frames} "
                         "(the file is truncated or damaged)")
    return paths


class _ChunkWriter:
    """One intermediate chunk: libx264 (fast, near-lossless) in Matroska."""

    def __init__(self, path: Path, first: Any, pix_fmt: str, time_base: Fraction,
                 rate: Fraction):
        self.container = av.open(str(path), "w", format="matroska")
        self.stream = self.container.add_stream("libx264", rate=rate)
        cc = self.stream.codec_context
        cc.width, cc.height = first.width, first.height
        cc.pix_fmt = pix_fmt
        cc.time_base = time_base
        cc.options = {"crf": "12", "preset": "veryfast", "tune": "fastdecode",
                      "x264-params": "scenecut=0:open-gop=0:keyint=infinite"}
        self.pix_fmt = pix_fmt

    def write(self, frame: Any) -> None:
        if frame.format.name != self.pix_fmt:
            pts, tb = frame.pts, frame.time_base
            frame = frame.reformat(format=self.pix_fmt)
            frame.pts, frame.time_base = pts, tb
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()


def _check_chunk(path: Path, chunk: Chunk) -> None:
    _, pts = frame_timestamps(path)
    if len(pts) != chunk.frames:
        raise VideoError(f"chunk {chunk.index} has {len(pts)} frames, expected {chunk.frames}: "
                         f"the video does not decode to the frames its index lists")

