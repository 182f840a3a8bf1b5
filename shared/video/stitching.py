"""Stitch: join the stylized chunks into the output video, streaming.

One pass, two processes joined by a pipe:
1. PyAV reads the stylized chunks one at a time and writes their video packets, every frame
   given the original frame's timestamp, as NUT (a container that keeps any time base and
   needs no seeking) into ffmpeg's stdin;
2. ffmpeg's own stream copy adds every other stream of the original (audio, subtitles, data,
   attachments) with chapters and metadata, timestamps untouched (``-copyts``), and restores
   pixel aspect and rotation.

The output is a normal file of the input's container (MP4/MOV with the index at the end,
Matroska/WebM with its cues). With a ``sink`` it streams: a follower hands each finished
block of the file to the sink (the output blob's staged blocks) and frees it on the local disk
(a hole), so memory and temp disk stay a few blocks whatever the length. Only the head of the
file stays on disk until the end: the muxers patch sizes and durations there when they close.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av

from shared.video.common import Source, VideoError, opened, run_ffmpeg
from shared.video.probing import Probe, StreamInfo
from shared.video.served import served
from shared.video.splitting import Chunk
from shared.video.timestamps import frame_timestamps, retimed, typical_gap, video_packets

log = logging.getLogger(__name__)

_FORMAT_EXT = {"mp4": "mp4", "m4v": "mp4", "mov": "mov", "mkv": "matroska", "webm": "webm"}

BLOCK_BYTES = 8 * 1024 * 1024  # one staged block of the output blob
HEAD_BLOCKS = 4  # kept on disk until the end: where the muxers patch their headers


def output_format(ext: str) -> str:
    """libav muxer for an output extension (the output container follows the input's)."""
    return _FORMAT_EXT.get(ext.lower(), "mp4")


class BlockSink(Protocol):
    """Where a streamed output goes: block ``index`` covers bytes
    ``[index * BLOCK_BYTES, (index + 1) * BLOCK_BYTES)`` of the file (the last one shorter).
    The file is blocks ``0..StitchResult.blocks-1``: a retried mux may have staged more."""

    def stage(self, index: int, data: bytes) -> None: ...


@dataclass
class StitchResult:
    frames: int
    streams_copied: list[int]
    streams_dropped: list[str]
    size_bytes: int
    blocks: int = 0  # blocks handed to the sink (0 without one)
    peak_disk_bytes: int = 0  # most local disk the output held at once


def stitch(original: Source, p: Probe, chunks: list[Chunk], sources: list[Source],
           output: str | os.PathLike[str], fmt: str, *,
           sink: BlockSink | None = None,
           on_chunk: Callable[[Chunk], None] | None = None) -> StitchResult:
    """Join stylized chunks (``sources[i]`` holds ``chunks[i]``) into ``output``.

    ``original`` is read for its other streams. Streams the container refuses are dropped
    and reported (the job status shows them). With ``sink``, the file is streamed to it
    block by block and ``output`` is only scratch (deleted at the end); without, ``output``
    is the finished file, its frame count checked. ``on_chunk(chunk)`` is called once each
    chunk's packets have gone to the muxer (progress; again from the start if a stream the
    container refuses makes the mux run twice).
    """
    assert len(chunks) == len(sources) and chunks, "one source per chunk"
    assert sum(c.frames for c in chunks) == p.frames, "chunks must cover every frame"
    output = Path(output)
    tmp = output.with_name(output.name + ".part")
    with opened(sources[0]) as first:
        codec = first.streams.video[0].codec_context.codec.canonical_name
    others = [s for s in p.streams if s.index != p.video_index and s.kind != "video"]
    dropped: list[str] = []
    try:
        try:
            follower = _mux(original, p, chunks, sources, codec, others, tmp, fmt, sink,
                            on_chunk)
        except VideoError:
            # A stream the output container cannot take (a data track, say): keep the rest.
            keep = [s for s in others if s.kind in ("audio", "subtitle")]
            dropped = [f"#{s.index} {s.kind} ({s.codec})" for s in others if s not in keep]
            if not dropped:
                raise
            follower = _mux(original, p, chunks, sources, codec, keep, tmp, fmt, sink,
                            on_chunk)
            others = keep
        if follower is not None:
            return StitchResult(frames=p.frames, streams_copied=[s.index for s in others],
                                streams_dropped=dropped, size_bytes=follower.size,
                                blocks=follower.blocks, peak_disk_bytes=follower.peak_disk)
        frames = len(frame_timestamps(tmp)[1])
        if frames != p.frames:
            raise VideoError(f"stitched video has {frames} frames, expected {p.frames}",
                             bad_input=False)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    size = output.stat().st_size
    return StitchResult(frames=frames, streams_copied=[s.index for s in others],
                        streams_dropped=dropped, size_bytes=size, peak_disk_bytes=size)


def _mux(original: Source, p: Probe, chunks: list[Chunk], sources: list[Source], codec: str,
         streams: list[StreamInfo], out: Path, fmt: str, sink: BlockSink | None,
         on_chunk: Callable[[Chunk], None] | None = None) -> _Follower | None:
    """One run of the pipeline (video through a pipe, the rest from ``original``)."""
    out.unlink(missing_ok=True)
    read_end, write_end = os.pipe()
    follower = _Follower(out, sink) if sink is not None else None
    feeder = _Feeder(p, chunks, sources, write_end, follower, on_chunk)
    feeder.start()
    try:
        with served(original) as src:
            if follower is not None:
                follower.start()
            try:
                run_ffmpeg(_mux_args(codec, src, p, streams, out, fmt), stdin=read_end)
            finally:
                os.close(read_end)  # a feeder still writing gets a broken pipe and stops
                feeder.join()
        if feeder.error is not None:  # ffmpeg saw the pipe end early: its file is short
            raise feeder.error
        if feeder.packets != p.frames:
            raise VideoError(f"stitched video has {feeder.packets} frames, expected "
                             f"{p.frames}", bad_input=False)
        if follower is not None:
            follower.finish()
    finally:
        if follower is not None:
            follower.stop()
    return follower


def _mux_args(codec: str, src: str, p: Probe, streams: list[StreamInfo], out: Path,
              fmt: str) -> list[str]:
    net = ["-rw_timeout", "60000000"] if src.startswith("http://") else []
    # Rotation is an input option of the video (the display matrix NUT does not carry).
    rotate = ["-display_rotation:v:0", str(p.rotation)] if p.rotation else []
    args = [*rotate, "-f", "nut", "-i", "pipe:0", *net, "-i", src, "-map", "0:v:0"]
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
    time_base = Fraction(p.time_base)
    if fmt in ("mp4", "mov") and time_base.numerator == 1:
        # NUT rescales time bases; the MP4 track keeps the original's, as every frame's
        # timestamp is a whole number of its ticks.
        args += ["-video_track_timescale", str(time_base.denominator)]
    return [*args, "-f", fmt, "-y", str(out)]


class _Feeder(threading.Thread):
    """Writes the stylized video as NUT into a pipe; records what went wrong, if anything."""

    def __init__(self, p: Probe, chunks: list[Chunk], sources: list[Source], fd: int,
                 follower: _Follower | None, on_chunk: Callable[[Chunk], None] | None = None):
        super().__init__(daemon=True, name="stitch-feeder")
        self.p, self.chunks, self.sources, self.fd = p, chunks, sources, fd
        self.follower = follower
        self.on_chunk = on_chunk
        self.packets = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with os.fdopen(self.fd, "wb") as pipe:
                self._feed(pipe)
        except BrokenPipeError:
            pass  # ffmpeg stopped reading: its own error says why
        except av.error.FFmpegError as exc:
            if exc.errno != 32:  # EPIPE through libav
                self.error = exc
        except BaseException as exc:
            self.error = exc

    def _feed(self, pipe: Any) -> None:
        p = self.p
        time_base = Fraction(p.time_base)
        # Negative decode timestamps (B-frames) pass as they are: NUT would shift them all.
        with av.open(pipe, "w", format="nut", options={"avoid_negative_ts": "disabled"}) as dst:
            with opened(self.sources[0]) as first:
                out_video = dst.add_stream_from_template(first.streams.video[0], opaque=True)
            out_video.time_base = time_base
            num, den = (int(x) for x in p.sar.split(":"))
            if num and den and num != den:
                out_video.sample_aspect_ratio = Fraction(num, den)
            for packet in _stylized_packets(p, self.chunks, self.sources, out_video, time_base,
                                            self.on_chunk):
                dst.mux(packet)
                self.packets += 1
                if self.follower is not None:
                    self.follower.keep_up()  # back-pressure: the disk holds a few blocks


def _stylized_packets(p: Probe, chunks: list[Chunk], sources: list[Source], out_stream: Any,
                      time_base: Fraction,
                      on_chunk: Callable[[Chunk], None] | None = None) -> Iterator[Any]:
    previous = p.pts[0] - typical_gap(p.pts)
    for chunk, source in zip(chunks, sources):
        with opened(source) as src:
            packets = video_packets(src)
            if len(packets) != chunk.frames:
                raise VideoError(f"stylized chunk {chunk.index} has {len(packets)} frames, "
                                 f"expected {chunk.frames}", bad_input=False)
            new_pts = p.pts[chunk.start:chunk.start + chunk.frames]
            yield from retimed(packets, new_pts, new_pts[0] - previous, out_stream, time_base)
            previous = new_pts[-1]
        if on_chunk is not None:
            on_chunk(chunk)


_PUNCH_HOLE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE (Linux)


@functools.cache
def _fallocate() -> Any:
    libc_name = ctypes.util.find_library("c")
    fallocate = getattr(ctypes.CDLL(libc_name), "fallocate", None) if libc_name else None
    if fallocate is not None:
        fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    return fallocate


def _punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free ``[offset, offset + length)`` of a file on disk, its size unchanged; False when
    the platform or file system cannot."""
    fallocate = _fallocate()
    return fallocate is not None and fallocate(fd, _PUNCH_HOLE, offset, length) == 0


class _Follower(threading.Thread):
    """Streams a file that ffmpeg is writing to a sink, block by block, behind the writer.

    A block is handed over once the file has grown a whole block past it, then punched out
    of the local disk. The first ``HEAD_BLOCKS`` go last, when the muxer is done patching
    them. If the muxer ever rewrote a block already handed over, the check at the end finds
    it (data where a hole was punched, or a checksum that changed) and the stitch fails.
    """

    def __init__(self, path: Path, sink: BlockSink):
        super().__init__(daemon=True, name="stitch-follower")
        self.path, self.sink = path, sink
        self.next = HEAD_BLOCKS  # the next block to hand over (the head waits)
        self.sums: dict[int, int] = {}  # block -> crc32, where no hole could be punched
        self.blocks = self.size = self.peak_disk = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self._halt.wait(0.2):
                self._drain(final=False)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join()

    def keep_up(self) -> None:
        """Hand over what is ready when the file runs more than a few blocks ahead (called
        by the writer's side, so the muxer never gets far ahead of the sink)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size - self.next * BLOCK_BYTES > 3 * BLOCK_BYTES:
            self._drain(final=False)

    def _drain(self, final: bool) -> None:
        with self._lock:
            self._drain_locked(final)

    def _drain_locked(self, final: bool) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        frontier = size if final else size - BLOCK_BYTES
        with open(self.path, "r+b") as fh:
            while (self.next + 1) * BLOCK_BYTES <= frontier or \
                    (final and self.next * BLOCK_BYTES < size):
                offset = self.next * BLOCK_BYTES
                fh.seek(offset)
                data = fh.read(BLOCK_BYTES)
                self.sink.stage(self.next, data)
                if not _punch_hole(fh.fileno(), offset, len(data)):
                    self.sums[self.next] = zlib.crc32(data)
                self.next += 1
                self.peak_disk = max(self.peak_disk, _disk_bytes(fh.fileno()))

    def finish(self) -> None:
        """After the muxer closed the file: hand over the rest, then the head; check."""
        self.stop()
        if self.error is not None:
            raise self.error
        self._drain(final=True)
        self.size = self.path.stat().st_size
        head = min(HEAD_BLOCKS, -(-self.size // BLOCK_BYTES))
        with open(self.path, "rb") as fh:
            self.peak_disk = max(self.peak_disk, _disk_bytes(fh.fileno()))
            for index in range(head):
                fh.seek(index * BLOCK_BYTES)
                self.sink.stage(index, fh.read(BLOCK_BYTES))
            self._check_untouched(fh)
        self.blocks = self.next if self.size > HEAD_BLOCKS * BLOCK_BYTES else head

    def _check_untouched(self, fh: Any) -> None:
        rewritten = VideoError("the muxer rewrote a part of the output already streamed",
                               bad_input=False)
        # Every block handed over before the last is a hole now (the last one ends unaligned,
        # so part of it stays): data there was written after it was handed over.
        start, end = HEAD_BLOCKS * BLOCK_BYTES, (self.next - 1) * BLOCK_BYTES
        if start < end and not self.sums:
            try:
                data_at = os.lseek(fh.fileno(), start, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after start
                data_at = end
            if data_at < end:
                raise rewritten
        for index, crc in self.sums.items():
            fh.seek(index * BLOCK_BYTES)
            if zlib.crc32(fh.read(BLOCK_BYTES)) != crc:
                raise rewritten


def _disk_bytes(fd: int) -> int:
    return os.fstat(fd).st_blocks * 512
