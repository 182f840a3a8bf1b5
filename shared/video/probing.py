"""Probe: what a video holds (streams, frame count, every frame's timestamp, where it may be
cut by stream copy), read from packets without decoding, with a clear reason for bad input.

Two depths: ``probe_header`` reads the container's header and index and the first packets
(bounded whatever the length: the Function app's door), ``probe`` also scans every packet
for the per-frame timestamps (linear in the input: the scan task on a Batch node).

    python -m shared.video probe clip.mp4
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import av

from shared.contract import LIMITS, InputLimits
from shared.video.bitstream import is_clean_random_access
from shared.video.common import Source, VideoError, is_path, libav_error, opened, stream_at

# Codecs that also code single pictures. A stream of one of these with one frame and no
# timing (no duration in the container) is a photo, whichever demuxer libav picked for it
# (jpeg_pipe, image2, or the raw mjpeg demuxer all read a plain JPEG).
_STILL_IMAGE_CODECS = {"mjpeg", "jpegls", "ljpeg", "png", "bmp", "gif", "webp", "tiff",
                       "jpeg2000", "jpegxl", "ppm", "pgm", "pgmyuv", "pbm", "pam", "qoi", "sgi",
                       "targa", "dpx", "exr", "hdr", "pcx", "xbm", "xpm", "xwd", "sunrast",
                       "svg", "psd", "dds", "avif"}


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


def probe(src: Source, *, limits: InputLimits = LIMITS, size_bytes: int = 0,
          on_frames: Callable[[int], None] | None = None) -> Probe:
    """Read a video's streams, frame count and per-frame timestamps without decoding it
    (one frame is decoded to check the stream really decodes and to read its rotation).

    ``src`` is a path or a ``BlobFile`` (libav reads a blob through range requests).
    ``on_frames`` is told the video frames scanned so far, every ``PROGRESS_FRAMES``.
    Raises VideoError(bad_input=True) with a human-readable reason for unusable input.
    """
    try:
        return _probe(src, limits, size_bytes, on_frames)
    except VideoError as exc:
        better = _explained(exc, src)
        if better is exc:
            raise
        raise better from exc


# The header probe's bound: besides the header and index the demuxer reads when it opens the
# file (and libav's stream-info window, ``probesize``, 5 MB by default), it demuxes at most
# this many packets of any stream (other streams' packets come first in some files: several
# audio tracks interleaved ahead of the video), and of them at most this many video packets,
# to decode the first frame.
HEADER_PACKETS = 1024
HEADER_VIDEO_PACKETS = 64
PROGRESS_FRAMES = 2000  # the full scan reports its progress every this many frames


def probe_header(src: Source, *, limits: InputLimits = LIMITS, size_bytes: int = 0) -> Probe:
    """What the container's header says, checked as far as the header allows, in a bounded
    read whatever the video's length: streams, size, duration and the input limits, and the
    first frame decoded (proof that the stream decodes; rotation, pixel format). A still
    image, a file with no video frame, one that is not a video and an MP4 without its index
    fail here with the same reasons as ``probe``.

    The result has no per-frame lists (``pts``, ``cuts`` are empty) and its ``frames`` is an
    estimate: the count the index lists (MP4/MOV), else duration × frame rate (0 when the
    container gives neither). The packet scan (``probe``) finds the rest: truncated or damaged
    files, timestamps, the exact count."""
    try:
        return _probe_header(src, limits, size_bytes)
    except VideoError as exc:
        better = _explained(exc, src)
        if better is exc:
            raise
        raise better from exc


def _explained(exc: VideoError, src: Source) -> VideoError:
    if exc.bad_input and "no container format" in str(exc) and _looks_like_iso_bmff(src):
        return VideoError("the MP4/MOV file is incomplete: its index (moov box) is missing, "
                          "so the upload was probably cut short")
    return exc


def _probe_header(src: Source, limits: InputLimits, size_bytes: int) -> Probe:
    with opened(src) as container:
        fmt = container.format.name
        streams = [_stream_info(s) for s in container.streams]
        vs = _video_stream(container, streams)
        cc = vs.codec_context
        codec = cc.codec.canonical_name
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        _check_limits(cc.width, cc.height, duration, limits)
        listed = vs.frames or 0
        if listed > limits.max_frames:
            raise VideoError(f"the video has {listed} frames, more than "
                             f"MAX_FRAMES={limits.max_frames}")
        rate = vs.average_rate or vs.guessed_rate
        first, packets, ended = _first_frame_bounded(container, vs)
        if codec in _STILL_IMAGE_CODECS and not duration and ended and packets == 1:
            raise VideoError(f"not a video: the file is a still image ({codec}, "
                             f"{cc.width}x{cc.height}, one frame, no duration)")
        if packets == 0 and ended:
            raise VideoError("the video stream has no frames (empty or truncated file)")
        if packets and first is None:
            raise VideoError("the video stream cannot be decoded: no frame came out of the "
                             f"decoder from its first {packets} packets")
        # No video packet within the bound (a file whose other streams come far ahead): the
        # scan task reads on and decodes the first frame; the header's facts stand till then.
        pix_fmt = first.format.name if first is not None else (
            cc.format.name if cc.format else "unknown")
        rotation = int(round(first.rotation or 0)) % 360 if first is not None else 0
        sar = vs.sample_aspect_ratio or cc.sample_aspect_ratio
        estimate = listed or (round(duration * float(rate)) if rate and duration else 0)
        return Probe(
            format=fmt, duration_s=duration, video_index=vs.index, codec=codec,
            width=cc.width, height=cc.height, pix_fmt=pix_fmt,
            sar=f"{sar.numerator}:{sar.denominator}" if sar else "1:1", rotation=rotation,
            fps=str(rate or Fraction(25)), time_base=str(vs.time_base), frames=estimate,
            pts=[], cuts=[], streams=streams, size_bytes=size_bytes)


def _first_frame_bounded(container: Any, vs: Any) -> tuple[Any, int, bool]:
    """(the first decoded frame or None, video packets demuxed, whether the file ended), from
    at most HEADER_PACKETS packets, HEADER_VIDEO_PACKETS of them video: it stops once it has
    the first frame and a second video packet (a still image has none)."""
    vs.thread_type = "AUTO"
    first = None
    seen = packets = 0
    ended = False
    try:
        for packet in container.demux():
            if packet.size == 0 and packet.pts is None:
                continue  # flush packet
            seen += 1
            if packet.stream.index == vs.index:
                packets += 1
                if first is None:
                    first = next(iter(vs.decode(packet)), None)
                if first is not None and packets >= 2:
                    return first, packets, False
                if packets >= HEADER_VIDEO_PACKETS:
                    break
            if seen >= HEADER_PACKETS:
                break
        else:
            ended = True
        if first is None and packets:
            first = next(iter(vs.decode(None)), None)  # what the decoder still holds
    except av.error.FFmpegError as exc:
        raise libav_error("the video stream cannot be decoded", exc) from exc
    return first, packets, ended


def _looks_like_iso_bmff(src: Source) -> bool:
    """An MP4/MOV starts with a box whose type is ftyp (or a free/mdat box before moov)."""
    try:
        with open(src, "rb") if is_path(src) else src.open() as fh:  # type: ignore
            head = fh.read(12)
    except OSError:
        return False
    return head[4:8] in (b"ftyp", b"mdat", b"free", b"wide", b"moov")


def _probe(src: Source, limits: InputLimits, size_bytes: int,
           on_frames: Callable[[int], None] | None = None) -> Probe:
    with opened(src) as container:
        fmt = container.format.name
        streams = [_stream_info(s) for s in container.streams]
        vs = _video_stream(container, streams)
        cc = vs.codec_context
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        _check_limits(cc.width, cc.height, duration, limits)
        scan = _scan_packets(container, vs.index, cc.codec.canonical_name, limits, on_frames)
        _check_scan(scan, vs, fmt, duration)
        sar = vs.sample_aspect_ratio or cc.sample_aspect_ratio
        fps = str(vs.average_rate or vs.guessed_rate or Fraction(25))
        video_index, codec, time_base = vs.index, cc.codec.canonical_name, str(vs.time_base)
        width, height = cc.width, cc.height

    # Decode the first frame: proves the stream decodes, and gives rotation and pixel format.
    first = _first_frame(src, video_index)
    pts_sorted = sorted(scan.pts_decode)
    if len(set(pts_sorted)) != len(pts_sorted):
        raise VideoError("several video frames share one timestamp: the file is damaged")
    warnings = []
    if scan.discarded:
        warnings.append(f"{scan.discarded} frames are hidden by an edit list; "
                        "the split re-encodes")
    return Probe(
        format=fmt, duration_s=duration, video_index=video_index, codec=codec,
        width=width, height=height, pix_fmt=first.format.name,
        sar=f"{sar.numerator}:{sar.denominator}" if sar else "1:1",
        rotation=int(round(first.rotation or 0)) % 360,
        fps=fps, time_base=time_base, frames=len(pts_sorted), pts=pts_sorted,
        cuts=_clean_cuts(scan.pts_decode, scan.keyframes) if not scan.discarded else [0],
        streams=streams, size_bytes=size_bytes, warnings=warnings)


def _video_stream(container: Any, streams: list[StreamInfo]) -> Any:
    """The first real video stream (cover art is not one); its picture size must be known."""
    videos = [s for s in container.streams if _kind(s) == "video"]
    if not videos:
        kinds = sorted({s.kind for s in streams}) or ["no streams"]
        raise VideoError(f"no video stream (the file has {', '.join(kinds)})")
    cc = videos[0].codec_context
    if not cc.width or not cc.height:
        raise VideoError("the video stream has no picture size: the header is damaged")
    return videos[0]


def _check_limits(width: int, height: int, duration: float, limits: InputLimits) -> None:
    if width > limits.max_width or height > limits.max_height:
        raise VideoError(f"the video is {width}x{height}, larger than the limit "
                         f"MAX_WIDTH x MAX_HEIGHT = {limits.max_width}x{limits.max_height}")
    if duration > limits.max_duration_s:
        raise VideoError(f"the video is {duration:.0f} s long, longer than "
                         f"MAX_DURATION_S={limits.max_duration_s:g}")


@dataclass
class _PacketScan:
    """One pass over every packet of the file (no decoding)."""

    pts_decode: list[int] = field(default_factory=list)  # video frames, decode order
    keyframes: list[int] = field(default_factory=list)  # decode positions of clean IDR points
    discarded: int = 0  # video packets an edit list hides
    missing_pts: int = 0  # video packets with no timestamp
    stream_end: float = 0.0  # where the last packet of any stream ends, in seconds

    @property
    def packets(self) -> int:
        return len(self.pts_decode) + self.discarded + self.missing_pts


def _scan_packets(container: Any, video_index: int, codec: str, limits: InputLimits,
                  on_frames: Callable[[int], None] | None = None) -> _PacketScan:
    scan = _PacketScan()
    try:
        for packet in container.demux():
            if packet.size == 0 and packet.pts is None:
                continue  # flush packet
            if packet.pts is not None and packet.time_base:
                end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                scan.stream_end = max(scan.stream_end, end)
            if packet.stream.index != video_index:
                continue
            if packet.is_discard:
                scan.discarded += 1
            elif packet.pts is None:
                scan.missing_pts += 1
            else:
                if packet.is_keyframe and is_clean_random_access(codec, bytes(packet)):
                    scan.keyframes.append(len(scan.pts_decode))
                scan.pts_decode.append(packet.pts)
                if on_frames is not None and len(scan.pts_decode) % PROGRESS_FRAMES == 0:
                    on_frames(len(scan.pts_decode))
                if len(scan.pts_decode) > limits.max_frames:
                    raise VideoError(
                        f"the video has more than MAX_FRAMES={limits.max_frames} frames")
    except av.error.FFmpegError as exc:
        raise libav_error(f"the file is truncated or damaged after {len(scan.pts_decode)} "
                          "frames", exc) from exc
    return scan


def _check_scan(scan: _PacketScan, vs: Any, fmt: str, duration: float) -> None:
    """Bad input the packet scan shows: a still image, no frames, a cut file, no timestamps."""
    cc = vs.codec_context
    codec = cc.codec.canonical_name
    if codec in _STILL_IMAGE_CODECS and not duration and scan.packets == 1:
        raise VideoError(f"not a video: the file is a still image ({codec}, "
                         f"{cc.width}x{cc.height}, one frame, no duration)")
    if not scan.pts_decode:
        raise VideoError("the video stream has no frames (empty or truncated file)")
    listed = vs.frames or 0
    if listed and scan.packets < listed:
        raise VideoError(f"the file is truncated: its index lists {listed} frames but only "
                         f"{len(scan.pts_decode)} are present")
    if scan.missing_pts:
        raise VideoError(f"{scan.missing_pts} video packets carry no timestamps; remux the file "
                         f"(e.g. into mp4 or mkv) and upload it again")
    if "matroska" in fmt and duration > 1.0 and scan.stream_end < 0.9 * duration - 0.25:
        # Matroska/WebM have no frame index: a cut file just stops where the bytes stop.
        # Its header's duration is where the streams end (an absolute time), so compare that.
        raise VideoError(f"the file is truncated: its streams stop at {scan.stream_end:.1f} s "
                         f"of the {duration:.1f} s it announces")


def _first_frame(src: Source, index: int) -> Any:
    try:
        with opened(src) as container:
            stream = stream_at(container, index)
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                return frame
    except av.error.FFmpegError as exc:
        raise libav_error("the video stream cannot be decoded", exc) from exc
    raise VideoError("the video stream cannot be decoded: no frame came out of the decoder")


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

