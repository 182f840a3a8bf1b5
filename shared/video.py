"""Video plumbing with exact frames and timestamps: probe, split, restamp, stitch.

No Azure imports: the Function app and the Batch nodes (scoring/) both use this module.

Two tools, each for what it is best at:
- PyAV (libav* in-process) for everything at packet level: probing without decoding,
  stream-copy splitting, and muxing packets with the *original* per-frame timestamps;
- the ffmpeg CLI of imageio-ffmpeg for transcoding (the split's re-encode path), run as a
  streaming subprocess so memory stays flat whatever the input's length.

Frame identity is by presentation order: frame *i* of a video is the *i*-th frame its
decoder shows (``ffmpeg -fps_mode passthrough``). A chunk covers frames ``[start, start+n)``;
the stitch gives stylized frame *i* the original frame *i*'s timestamp.

    python -m shared.video probe clip.mp4
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av

from shared.procs import die_with_parent
from shared.redact import redact

log = logging.getLogger(__name__)
# PyAV's default (no Python log callback) on purpose: a callback deadlocks when a libav decoder
# thread logs while the GIL-holding thread closes that decoder. Errors still raise exceptions.


class VideoError(Exception):
    """The video cannot be processed. ``bad_input`` is True when the file itself is at fault
    (retrying will not help) and the message is meant for a person."""

    def __init__(self, message: str, bad_input: bool = True):
        super().__init__(message)
        self.bad_input = bad_input


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str]) -> subprocess.CompletedProcess:
    """Run the bundled ffmpeg with ``args``; raise VideoError with its last stderr lines."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]
    proc = subprocess.run(cmd, capture_output=True, preexec_fn=die_with_parent())
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        # ffmpeg echoes the URLs it was given, a SAS signature included.
        raise VideoError(redact("ffmpeg failed: " + " | ".join(tail)), bad_input=False)
    return proc


# --------------------------------------------------------------------------------------------
# timestamps and restamping


Source = Any  # a local path, or an object whose .open() returns a seekable binary file
#              (shared.storage.BlobSource: a blob read through the SDK, never held whole)


@contextmanager
def _opened(src: Source, mode: str = "r", **kwargs: Any) -> Iterator[Any]:
    """Open a path or a re-openable source with libav; close everything on exit."""
    is_path = isinstance(src, str | os.PathLike)
    fileobj = None if is_path or mode != "r" else src.open()
    try:
        try:
            container = av.open(fileobj if fileobj is not None else str(src), mode, **kwargs)
        except av.error.InvalidDataError as exc:
            raise VideoError("not a video file, or a damaged one (no container format "
                             "recognised)") from exc
        except av.error.FFmpegError as exc:
            raise VideoError(f"cannot open the file: {exc.strerror or exc}") from exc
        with container:
            yield container
    finally:
        if fileobj is not None:
            fileobj.close()


def _stream(container: Any, index: int) -> Any:
    """The stream whose index in the file is ``index`` (PyAV's ``streams[i]`` means otherwise)."""
    return next(s for s in container.streams if s.index == index)


def frame_timestamps(path: str | os.PathLike) -> tuple[Fraction, list[int]]:
    """Presentation timestamps of the first video stream's frames, in display order.

    Read from packets (no decoding). Returns (time_base, pts list).
    """
    with _opened(path) as container:
        if not container.streams.video:
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.pts is not None and not p.is_discard]
        return Fraction(stream.time_base), sorted(pts)


def retime_packets(old_pts: list[int], new_pts_sorted: list[int],
                   room: int) -> tuple[list[int], list[int]]:
    """Map packets (decode order, old pts) onto new presentation timestamps.

    Returns (pts, dts) lists in decode order: the packet shown *j*-th gets
    ``new_pts_sorted[j]``; dts strictly increases and is never after pts: packet *k* gets
    ``P[k-d]`` with *d* the reorder delay, and the first *d* packets are spread over the
    ``room`` ticks before ``P[0]`` (the gap since the previous frame), so a chunk's dts stay
    after the previous chunk's.
    """
    n = len(old_pts)
    assert n == len(new_pts_sorted), (n, len(new_pts_sorted))
    order = sorted(range(n), key=lambda k: old_pts[k])  # presentation rank -> decode position
    rank = [0] * n
    for r, k in enumerate(order):
        rank[k] = r
    pts = [new_pts_sorted[rank[k]] for k in range(n)]
    delay = max((k - rank[k] for k in range(n)), default=0)  # how far decoding runs ahead
    step = max(1, room // (delay + 1))
    dts = [new_pts_sorted[k - delay] if k >= delay else new_pts_sorted[0] - (delay - k) * step
           for k in range(n)]
    assert all(d <= p for d, p in zip(dts, pts)), "dts after pts"
    assert all(a < b for a, b in zip(dts, dts[1:])), "dts not increasing"
    return pts, dts


def _typical_gap(pts: list[int]) -> int:
    gaps = sorted(b - a for a, b in zip(pts, pts[1:]))
    return gaps[len(gaps) // 2] if gaps else 1


def restamp(encoded: str | os.PathLike, reference: str | os.PathLike,
            output: str | os.PathLike) -> int:
    """Write ``output``: the video packets of ``encoded`` with ``reference``'s frame timestamps.

    Both must hold the same number of frames. Returns that number. Stream copy, no decoding.
    Used by the chunk task so its output chunk keeps the input chunk's timestamps.
    """
    time_base, new_pts = frame_timestamps(reference)
    with _opened(encoded) as src:
        stream = src.streams.video[0]
        packets = [p for p in src.demux(stream) if p.size and p.pts is not None]
        if len(packets) != len(new_pts):
            raise VideoError(f"frame count changed: {len(packets)} frames encoded, "
                             f"{len(new_pts)} in the reference", bad_input=False)
        pts, dts = retime_packets([p.pts for p in packets], new_pts, _typical_gap(new_pts))
        tmp = Path(f"{output}.part{Path(output).suffix}")
        with _opened(tmp, "w") as dst:
            out_stream = dst.add_stream_from_template(stream, opaque=True)
            out_stream.time_base = time_base
            for packet, p, d in zip(packets, pts, dts):
                packet.stream = out_stream
                packet.time_base = time_base
                packet.pts, packet.dts = p, d
                packet.duration = 0
                dst.mux(packet)
    os.replace(tmp, output)
    return len(new_pts)


# --------------------------------------------------------------------------------------------
# probe

# Codecs that also code single pictures. A stream of one of these with one frame and no
# timing (no duration in the container) is a photo, whichever demuxer libav picked for it
# (jpeg_pipe, image2, or the raw mjpeg demuxer all read a plain JPEG).
_STILL_IMAGE_CODECS = {"mjpeg", "jpegls", "ljpeg", "png", "bmp", "gif", "webp", "tiff",
                       "jpeg2000", "jpegxl", "ppm", "pgm", "pgmyuv", "pbm", "pam", "qoi", "sgi",
                       "targa", "dpx", "exr", "hdr", "pcx", "xbm", "xpm", "xwd", "sunrast",
                       "svg", "psd", "dds", "avif"}
_FORMAT_EXT = {"mp4": "mp4", "m4v": "mp4", "mov": "mov", "mkv": "matroska", "webm": "webm"}


@dataclass
class StreamInfo:
    index: int
    kind: str  # video | audio | subtitle | data | attachment
    codec: str
    language: str | None = None
    title: str | None = None
    start_s: float | None = None
    channels: int = 0
    sample_rate: int = 0
    layout: str | None = None
    default: bool = False


@dataclass
class Probe:
    """What the pipeline needs to know about an input video (JSON-serialisable)."""

    format: str
    duration_s: float
    video_index: int
    codec: str
    width: int  # coded size, before rotation and pixel aspect
    height: int
    pix_fmt: str
    sar: str  # sample (pixel) aspect ratio, "num:den"
    rotation: int  # display rotation, degrees counter-clockwise (PyAV/libav convention)
    fps: str  # average frame rate "num/den"
    time_base: str  # of the video stream, "num/den"
    frames: int
    pts: list[int] = field(repr=False)  # per frame, presentation order, in time_base
    cuts: list[int] = field(repr=False)  # frame indices where a stream-copy chunk may start
    streams: list[StreamInfo] = field(default_factory=list)
    size_bytes: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as the picture is shown: pixel aspect applied, then rotation."""
        num, den = (int(x) for x in self.sar.split(":"))
        w = round(self.width * num / den) if num and den else self.width
        h = self.height
        return (h, w) if self.rotation % 180 else (w, h)

    def summary(self) -> dict[str, Any]:
        """The small part for orchestration history (no per-frame lists)."""
        d = asdict(self)
        d.pop("pts")
        d.pop("cuts")
        d["audio_streams"] = sum(1 for s in self.streams if s.kind == "audio")
        d["display_size"] = list(self.display_size)
        return d

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Probe:
        data = dict(data)
        data["streams"] = [StreamInfo(**s) for s in data.get("streams", [])]
        return cls(**data)


@dataclass(frozen=True)
class Limits:
    max_duration_s: float = 3 * 3600.0
    max_width: int = 7680
    max_height: int = 4320
    max_frames: int = 500_000


def _kind(stream: Any) -> str:
    t = stream.type
    if t == "video" and int(stream.disposition) & int(av.stream.Disposition.attached_pic):
        return "attachment"  # cover art in an audio file is not a video
    return t if t in ("video", "audio", "subtitle", "data", "attachment") else "data"


def _stream_info(stream: Any) -> StreamInfo:
    kind = _kind(stream)
    meta = dict(stream.metadata or {})
    start = (float(stream.start_time * stream.time_base)
             if stream.start_time is not None and stream.time_base else None)
    info = StreamInfo(index=stream.index, kind=kind,
                      codec=stream.codec_context.name if stream.codec_context else "unknown",
                      language=meta.get("language"), title=meta.get("title"), start_s=start,
                      default=bool(int(stream.disposition) & int(av.stream.Disposition.default)))
    if kind == "audio":
        cc = stream.codec_context
        info.channels = cc.channels
        info.sample_rate = cc.sample_rate
        info.layout = cc.layout.name if cc.layout else None
    return info


def _nal_types(data: bytes, hevc: bool) -> Iterator[int]:
    """NAL unit types of an H.264/HEVC access unit, length-prefixed (mp4/mkv) or Annex B."""
    if data[:3] == b"\x00\x00\x01" or data[:4] == b"\x00\x00\x00\x01":
        i = 0
        while True:
            i = data.find(b"\x00\x00\x01", i)
            if i < 0 or i + 3 >= len(data):
                return
            b = data[i + 3]
            yield (b >> 1) & 0x3F if hevc else b & 0x1F
            i += 3
    i = 0
    while i + 4 < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        b = data[i + 4]
        yield (b >> 1) & 0x3F if hevc else b & 0x1F
        i += 4 + n


def _is_clean_random_access(codec: str, data: bytes) -> bool:
    """True when decoding may start at this keyframe with no reference to earlier frames."""
    if codec == "h264":
        return 5 in set(_nal_types(data, hevc=False))  # IDR
    if codec == "hevc":
        return bool({19, 20} & set(_nal_types(data, hevc=True)))  # IDR_W_RADL, IDR_N_LP
    return True  # vp8/vp9/av1 key frames, intra-only codecs: a keyframe resets references


def probe(src: Source, *, limits: Limits = Limits(), size_bytes: int = 0) -> Probe:
    """Read a video's streams, frame count and per-frame timestamps without decoding it
    (one frame is decoded to check the stream really decodes and to read its rotation).

    ``src`` is a path or a URL (a SAS URL: ffmpeg reads it with range requests).
    Raises VideoError(bad_input=True) with a human-readable reason for unusable input.
    """
    try:
        return _probe(src, limits, size_bytes)
    except VideoError as exc:
        if exc.bad_input and "no container format" in str(exc) and _looks_like_iso_bmff(src):
            raise VideoError("the MP4/MOV file is incomplete: its index (moov box) is missing, "
                             "so the upload was probably cut short") from exc
        raise


def _looks_like_iso_bmff(src: Source) -> bool:
    """An MP4/MOV starts with a box whose type is ftyp (or a free/mdat box before moov)."""
    try:
        if isinstance(src, str | os.PathLike):
            with open(src, "rb") as fh:
                head = fh.read(12)
        else:
            with src.open() as fh:
                head = fh.read(12)
    except OSError:
        return False
    return head[4:8] in (b"ftyp", b"mdat", b"free", b"wide", b"moov")


def _probe(src: Source, limits: Limits, size_bytes: int) -> Probe:
    with _opened(src) as container:
        fmt = container.format.name
        streams = [_stream_info(s) for s in container.streams]
        videos = [s for s in container.streams if _kind(s) == "video"]
        if not videos:
            kinds = sorted({s.kind for s in streams}) or ["no streams"]
            raise VideoError(f"no video stream (the file has {', '.join(kinds)})")
        vs = videos[0]
        video_index = vs.index
        cc = vs.codec_context
        if not cc.width or not cc.height:
            raise VideoError("the video stream has no picture size: the header is damaged")
        if cc.width > limits.max_width or cc.height > limits.max_height:
            raise VideoError(f"the video is {cc.width}x{cc.height}, larger than the limit "
                             f"MAX_WIDTH x MAX_HEIGHT = {limits.max_width}x{limits.max_height}")
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        if duration > limits.max_duration_s:
            raise VideoError(f"the video is {duration:.0f} s long, longer than "
                             f"MAX_DURATION_S={limits.max_duration_s:g}")

        codec = cc.codec.canonical_name
        pts_decode: list[int] = []
        keyframes: list[int] = []  # decode positions of clean random-access points
        discarded = missing_pts = 0
        stream_end = 0.0  # where the last packet of any stream ends, in seconds
        try:
            for packet in container.demux():
                if packet.size == 0 and packet.pts is None:
                    continue  # flush packet
                if packet.pts is not None and packet.time_base:
                    end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                    stream_end = max(stream_end, end)
                if packet.stream.index != video_index:
                    continue
                if packet.is_discard:
                    discarded += 1
                    continue
                if packet.pts is None:
                    missing_pts += 1
                    continue
                if packet.is_keyframe and _is_clean_random_access(codec, bytes(packet)):
                    keyframes.append(len(pts_decode))
                pts_decode.append(packet.pts)
                if len(pts_decode) > limits.max_frames:
                    raise VideoError(
                        f"the video has more than MAX_FRAMES={limits.max_frames} frames")
        except av.error.FFmpegError as exc:
            raise VideoError(f"the file is truncated or damaged after {len(pts_decode)} frames "
                             f"({exc.strerror or exc})") from exc
        listed = vs.frames or 0
        if codec in _STILL_IMAGE_CODECS and not duration and \
                len(pts_decode) + discarded + missing_pts == 1:
            raise VideoError(f"not a video: the file is a still image ({codec}, "
                             f"{cc.width}x{cc.height}, one frame, no duration)")
        if not pts_decode:
            raise VideoError("the video stream has no frames (empty or truncated file)")
        if listed and len(pts_decode) + discarded + missing_pts < listed:
            raise VideoError(f"the file is truncated: its index lists {listed} frames but only "
                             f"{len(pts_decode)} are present")
        if missing_pts:
            raise VideoError(f"{missing_pts} video packets carry no timestamps; remux the file "
                             f"(e.g. into mp4 or mkv) and upload it again")
        if "matroska" in fmt and duration > 1.0 and stream_end < 0.9 * duration - 0.25:
            # Matroska/WebM have no frame index: a cut file just stops where the bytes stop.
            # Its header's duration is where the streams end (an absolute time), so compare that.
            raise VideoError(f"the file is truncated: its streams stop at {stream_end:.1f} s "
                             f"of the {duration:.1f} s it announces")
        sar = vs.sample_aspect_ratio or cc.sample_aspect_ratio
        width, height = cc.width, cc.height
        fps = str(vs.average_rate or vs.guessed_rate or Fraction(25))
        time_base = str(vs.time_base)

    # Decode the first frame: proves the stream decodes, and gives rotation and pixel format.
    first = _first_frame(src, video_index)
    rotation = int(round(first.rotation or 0)) % 360

    pts_sorted = sorted(pts_decode)
    if len(set(pts_sorted)) != len(pts_sorted):
        raise VideoError("several video frames share one timestamp: the file is damaged")
    cuts = _clean_cuts(pts_decode, keyframes) if not discarded else [0]
    warnings = []
    if discarded:
        warnings.append(f"{discarded} frames are hidden by an edit list; the split re-encodes")
    return Probe(
        format=fmt, duration_s=duration, video_index=video_index, codec=codec,
        width=width, height=height, pix_fmt=first.format.name,
        sar=f"{sar.numerator}:{sar.denominator}" if sar else "1:1",
        rotation=rotation,
        fps=fps, time_base=time_base, frames=len(pts_sorted), pts=pts_sorted, cuts=cuts,
        streams=streams, size_bytes=size_bytes, warnings=warnings)


def _first_frame(src: str, index: int) -> Any:
    try:
        with _opened(src) as container:
            stream = _stream(container, index)
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                return frame
    except av.error.FFmpegError as exc:
        raise VideoError(f"the video stream cannot be decoded ({exc.strerror or exc})") from exc
    raise VideoError("the video stream cannot be decoded: no frame came out of the decoder")


def _clean_cuts(pts_decode: list[int], keyframes: list[int]) -> list[int]:
    """Frame indices where the video can be cut by stream copy.

    A keyframe at decode position k is a clean cut when every packet before it shows before
    it and every packet after it shows after it (no open-GOP leading pictures); the frame
    index of that cut is then exactly k.
    """
    n = len(pts_decode)
    prefix_max = [0] * n
    running = None
    for k, p in enumerate(pts_decode):
        prefix_max[k] = running if running is not None else p - 1
        running = p if running is None else max(running, p)
    suffix_min = [0] * (n + 1)
    suffix_min[n] = None  # type: ignore[call-overload]
    for k in range(n - 1, -1, -1):
        nxt = suffix_min[k + 1]
        suffix_min[k] = pts_decode[k] if nxt is None else min(nxt, pts_decode[k])
    return [k for k in keyframes
            if prefix_max[k] < pts_decode[k] and suffix_min[k] == pts_decode[k]]


# --------------------------------------------------------------------------------------------
# split


@dataclass
class Chunk:
    index: int
    start: int  # first frame (presentation order)
    frames: int

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def plan_chunks(p: Probe, frames_per_chunk: int) -> tuple[str, list[Chunk]]:
    """Choose the split: ("copy", chunks at clean keyframes) when the keyframes allow chunks of
    at most twice the target, else ("reencode", chunks of exactly ``frames_per_chunk``)."""
    assert frames_per_chunk >= 1
    n = p.frames
    if n <= frames_per_chunk and p.cuts[:1] == [0]:
        return "copy", [Chunk(0, 0, n)]
    starts = [0]
    if p.cuts[:1] == [0]:
        for c in p.cuts[1:]:
            if c - starts[-1] >= frames_per_chunk and n - c >= frames_per_chunk // 2:
                starts.append(c)
        bounds = [*starts, n]
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        if max(sizes) <= 2 * frames_per_chunk:
            return "copy", [Chunk(i, a, s) for i, (a, s) in enumerate(zip(starts, sizes))]
    starts = list(range(0, n, frames_per_chunk))
    if len(starts) > 1 and n - starts[-1] < frames_per_chunk // 4:
        starts.pop()  # fold a tiny tail into the previous chunk
    bounds = [*starts, n]
    return "reencode", [Chunk(i, a, b - a) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]


def _intermediate_pix_fmt(pix_fmt: str) -> str:
    """A pixel format libx264 encodes losslessly enough for an intermediate chunk."""
    ok = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p",
          "yuv420p10le", "yuv422p10le", "yuv444p10le", "nv12", "gray"}
    if pix_fmt in ok:
        return {"yuvj420p": "yuv420p", "yuvj422p": "yuv422p", "yuvj444p": "yuv444p",
                "nv12": "yuv420p"}.get(pix_fmt, pix_fmt)
    return "yuv444p10le" if any(d in pix_fmt for d in ("10", "12", "16")) else "yuv444p"


def split(src: Source, p: Probe, chunks: list[Chunk], mode: str, out_dir: str | os.PathLike,
          on_chunk: Any = None) -> list[Path]:
    """Cut the video stream of ``src`` into one .mkv per chunk in ``out_dir``.

    ``copy`` copies packets (no quality loss, very fast); ``reencode`` runs one streaming
    ffmpeg with a keyframe forced at every chunk start (fast preset, near-lossless quality).
    ``on_chunk(index, path)`` is called as soon as each chunk is complete (so it can be
    uploaded and deleted while the rest is still being cut). Returns the chunk paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (_split_copy if mode == "copy" else _split_reencode)(src, p, chunks, out_dir, on_chunk)
    return paths


def _split_copy(src: Source, p: Probe, chunks: list[Chunk], out_dir: Path,
                on_chunk: Any) -> list[Path]:
    paths: list[Path] = []
    starts = {c.start: c for c in chunks}
    with _opened(src) as container:
        vs = _stream(container, p.video_index)
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
                    on_chunk: Any) -> list[Path]:
    """Decode once, encode each chunk with a fresh encoder: its first frame is an IDR frame by
    construction, and every frame keeps its timestamp. Fast preset, near-lossless quality."""
    pix_fmt = _intermediate_pix_fmt(p.pix_fmt)
    paths: list[Path] = []
    index = 0  # frame index, presentation order (the decoder outputs frames in that order)
    with _opened(src) as container:
        vs = _stream(container, p.video_index)
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
            raise VideoError(f"the video cannot be decoded after frame {index} "
                             f"({exc.strerror or exc})") from exc
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


# --------------------------------------------------------------------------------------------
# stitch


def output_format(ext: str) -> str:
    """libav muxer for an output extension (the output container follows the input's)."""
    return _FORMAT_EXT.get(ext.lower(), "mp4")


@dataclass
class StitchResult:
    frames: int
    streams_copied: list[int]
    streams_dropped: list[str]
    size_bytes: int


def stitch(original: Source, p: Probe, chunks: list[Chunk], sources: list[Source],
           output: str | os.PathLike, fmt: str) -> StitchResult:
    """Join stylized chunks (``sources[i]`` holds ``chunks[i]``) into ``output``.

    1. PyAV joins the chunks' packets, giving every frame the original frame's timestamp and
       restoring pixel aspect and rotation (an intermediate, video-only MP4);
    2. ffmpeg's own stream copy adds every other stream of ``original`` — audio, subtitles,
       data, attachments — with chapters and metadata, timestamps untouched (``-copyts``).
    Streams the container refuses are dropped and reported (the job status shows them).
    """
    assert len(chunks) == len(sources) and chunks, "one source per chunk"
    assert sum(c.frames for c in chunks) == p.frames, "chunks must cover every frame"
    output = Path(output)
    video_only = output.with_name(output.name + ".video.mp4")
    tmp = output.with_name(output.name + ".part")
    time_base = Fraction(p.time_base)
    try:
        with _opened(video_only, "w", format="mp4") as dst:
            with _opened(sources[0]) as first:
                template = first.streams.video[0]
                codec = template.codec_context.codec.canonical_name
                out_video = dst.add_stream_from_template(template, opaque=True)
            out_video.time_base = time_base
            num, den = (int(x) for x in p.sar.split(":"))
            if num and den and num != den:
                out_video.sample_aspect_ratio = Fraction(num, den)
            if p.rotation:
                out_video.set_display_rotation(p.rotation)
            for packet in _stylized_packets(p, chunks, sources, out_video, time_base):
                dst.mux(packet)
        others = [s for s in p.streams if s.index != p.video_index and s.kind != "video"]
        dropped: list[str] = []
        try:
            _mux_with_original(video_only, codec, original, p, others, tmp, fmt)
        except VideoError:
            # A stream the output container cannot take (a data track, say): keep the rest.
            keep = [s for s in others if s.kind in ("audio", "subtitle")]
            dropped = [f"#{s.index} {s.kind} ({s.codec})" for s in others if s not in keep]
            if not dropped:
                raise
            _mux_with_original(video_only, codec, original, p, keep, tmp, fmt)
            others = keep
    finally:
        video_only.unlink(missing_ok=True)
    frames = len(frame_timestamps(tmp)[1])
    if frames != p.frames:
        tmp.unlink(missing_ok=True)
        raise VideoError(f"stitched video has {frames} frames, expected {p.frames}",
                         bad_input=False)
    os.replace(tmp, output)
    return StitchResult(frames=frames, streams_copied=[s.index for s in others],
                        streams_dropped=dropped, size_bytes=output.stat().st_size)


def _mux_with_original(video: Path, codec: str, original: Source, p: Probe,
                       streams: list[StreamInfo], out: Path, fmt: str) -> None:
    with _served(original) as src:
        _run_mux(video, codec, src, p, streams, out, fmt)


def _run_mux(video: Path, codec: str, src: str, p: Probe, streams: list[StreamInfo],
             out: Path, fmt: str) -> None:
    net = ["-rw_timeout", "60000000"] if src.startswith("http://") else []
    args = ["-i", str(video), *net, "-i", src, "-map", "0:v:0"]
    for s in streams:
        args += ["-map", f"1:{s.index}"]
    # Any explicit per-stream metadata mapping turns the default copying off, so map each.
    args += ["-map_metadata", "1", "-map_metadata:s:0", f"1:s:{p.video_index}"]
    for out_index, s in enumerate(streams, start=1):
        args += [f"-map_metadata:s:{out_index}", f"1:s:{s.index}"]
    args += ["-map_chapters", "1", "-c", "copy", "-copyts"]
    num, den = (int(x) for x in p.sar.split(":"))
    bsf = {"h264": "h264_metadata", "hevc": "hevc_metadata"}.get(codec)
    if bsf and num and den and num != den:
        # Write the pixel aspect into the bitstream too: some players read only that.
        args += ["-bsf:v:0", f"{bsf}=sample_aspect_ratio={num}/{den}"]
    if fmt in ("mp4", "mov"):
        args += ["-movflags", "+faststart"]
    run_ffmpeg([*args, "-f", fmt, "-y", str(out)])


@contextmanager
def _served(src: Source) -> Iterator[str]:
    """What the ffmpeg CLI reads for ``src``: a path as it is; a re-openable source (a blob)
    through a loopback HTTP server with range requests, for as long as the block lasts.

    Not a SAS URL: ffmpeg's URLs hold at most 4096 bytes, which a long non-Latin blob name
    (9 bytes a character once percent-encoded) overflows, and every read goes through
    ``src.open()`` — for a blob, conditional on the job's version of it.
    """
    if isinstance(src, str | os.PathLike):
        yield str(src)
        return
    with src.open() as fh:
        size = fh.seek(0, os.SEEK_END)
    suffix = Path(str(getattr(src, "name", ""))).suffix.lower()
    path = f"/input{suffix if suffix.isascii() and suffix[1:].isalnum() else ''}"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # ffmpeg's errors say what went wrong
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            if self.path != path:
                self.send_error(404)
                return
            start, end = 0, size - 1
            ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if ranged:
                start = int(ranged[1])
                end = min(size - 1, int(ranged[2])) if ranged[2] else size - 1
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            try:
                reader = src.open()  # per request: readers are not shared between threads
            except Exception as exc:  # e.g. the blob was replaced: ffmpeg fails, the caller
                self.send_error(502, type(exc).__name__)  # finds out why
                return
            with reader:
                self.send_response(206 if ranged else 200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(end - start + 1))
                if ranged:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if not body:
                    return
                reader.seek(start)
                left = end - start + 1
                try:
                    while left > 0:
                        data = reader.read(min(left, 1024 * 1024))
                        if not data:
                            break
                        self.wfile.write(data)
                        left -= len(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # ffmpeg seeks by dropping the connection
                except Exception:
                    self.close_connection = True  # a short body: ffmpeg sees the error

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="ffmpeg-input")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        server.shutdown()
        server.server_close()


def _stylized_packets(p: Probe, chunks: list[Chunk], sources: list[str], out_stream: Any,
                      time_base: Fraction) -> Iterator[Any]:
    previous = p.pts[0] - _typical_gap(p.pts)
    for chunk, source in zip(chunks, sources):
        with _opened(source) as src:
            packets = [pk for pk in src.demux(src.streams.video[0])
                       if pk.size and pk.pts is not None]
            if len(packets) != chunk.frames:
                raise VideoError(f"stylized chunk {chunk.index} has {len(packets)} frames, "
                                 f"expected {chunk.frames}", bad_input=False)
            new_pts = p.pts[chunk.start:chunk.start + chunk.frames]
            pts, dts = retime_packets([pk.pts for pk in packets], new_pts, new_pts[0] - previous)
            previous = new_pts[-1]
            for pk, pt, dt in zip(packets, pts, dts):
                pk.stream = out_stream
                pk.time_base = time_base
                pk.pts, pk.dts = pt, dt
                pk.duration = 0
                yield pk


# --------------------------------------------------------------------------------------------
# preview


def first_frame_image(src: str, p: Probe | None = None):
    """First frame of a video as a PIL image, shown as a viewer would (aspect, rotation)."""
    with _opened(src) as container:
        frame = next(container.decode(container.streams.video[0]))
        image = frame.to_image()
    if p is not None:
        num, den = (int(x) for x in p.sar.split(":"))
        if num and den and num != den:
            image = image.resize((max(1, round(image.width * num / den)), image.height))
        if p.rotation:
            image = image.rotate(p.rotation, expand=True)  # both counter-clockwise
    return image


def make_preview(before: str, after: str, p: Probe, output: str | os.PathLike,
                 max_width: int = 1600) -> None:
    """A before/after JPEG: the same frame of the input and of the result, side by side."""
    from PIL import Image, ImageDraw

    left, right = first_frame_image(before, p), first_frame_image(after, p)
    scale = min(1.0, max_width / (left.width * 2 + 8))
    size = (max(1, round(left.width * scale)), max(1, round(left.height * scale)))
    left, right = left.resize(size), right.resize(size)
    canvas = Image.new("RGB", (size[0] * 2 + 8, size[1]), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (size[0] + 8, 0))
    draw = ImageDraw.Draw(canvas)
    for x, label in ((6, "before"), (size[0] + 14, "after")):
        draw.rectangle((x - 2, 4, x + 7 * len(label) + 4, 18), fill="black")
        draw.text((x + 1, 5), label, fill="white")
    tmp = Path(f"{output}.part")
    canvas.save(tmp, format="JPEG", quality=88)
    os.replace(tmp, output)


def main(argv: list[str] | None = None) -> int:
    """python -m shared.video probe FILE — print what the pipeline sees in a file."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m shared.video", description=main.__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("probe", help="print the probe summary as JSON")
    pr.add_argument("file")
    pr.add_argument("--frames", action="store_true", help="include per-frame timestamps")
    args = parser.parse_args(argv)
    try:
        result = probe(args.file, size_bytes=os.path.getsize(args.file))
    except VideoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_json() if args.frames else result.summary(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
