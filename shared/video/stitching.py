"""Stitch: join the stylized chunks into the output video.

1. PyAV joins the chunks' packets (stream copy), giving every frame the original frame's
   timestamp and restoring pixel aspect and rotation: an intermediate, video-only MP4;
2. ffmpeg's own stream copy adds every other stream of the original (audio, subtitles, data,
   attachments) with chapters and metadata, timestamps untouched (``-copyts``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from shared.video.common import Source, VideoError, opened, run_ffmpeg
from shared.video.probing import Probe, StreamInfo
from shared.video.served import served
from shared.video.splitting import Chunk
from shared.video.timestamps import frame_timestamps, retimed, typical_gap, video_packets

_FORMAT_EXT = {"mp4": "mp4", "m4v": "mp4", "mov": "mov", "mkv": "matroska", "webm": "webm"}


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
           output: str | os.PathLike[str], fmt: str) -> StitchResult:
    """Join stylized chunks (``sources[i]`` holds ``chunks[i]``) into ``output``.

    Two passes (see the module docstring); ``original`` is read for its other streams.
    Streams the container refuses are dropped and reported (the job status shows them).
    """
    assert len(chunks) == len(sources) and chunks, "one source per chunk"
    assert sum(c.frames for c in chunks) == p.frames, "chunks must cover every frame"
    output = Path(output)
    video_only = output.with_name(output.name + ".video.mp4")
    tmp = output.with_name(output.name + ".part")
    time_base = Fraction(p.time_base)
    try:
        with opened(video_only, "w", format="mp4") as dst:
            with opened(sources[0]) as first:
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
    with served(original) as src:
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

def _stylized_packets(p: Probe, chunks: list[Chunk], sources: list[Source], out_stream: Any,
                      time_base: Fraction) -> Iterator[Any]:
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
