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

import bisect
import heapq
import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import av

log = logging.getLogger(__name__)
av.logging.set_level(av.logging.PANIC)  # libav's chatter goes nowhere; errors come back as exceptions


class VideoError(Exception):
    """The video cannot be processed. ``bad_input`` is True when the file itself is at fault
    (retrying will not help) and the message is meant for a person."""

    def __init__(self, message: str, bad_input: bool = True):
        super().__init__(message)
        self.bad_input = bad_input


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str], *, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run the bundled ffmpeg with ``args``; raise VideoError with its last stderr lines."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise VideoError("ffmpeg failed: " + " | ".join(tail), bad_input=False)
    return proc


# --------------------------------------------------------------------------------------------
# timestamps and restamping


def _open(path: str | os.PathLike, mode: str = "r", **kwargs: Any) -> av.container.Container:
    try:
        return av.open(str(path), mode, **kwargs)
    except av.error.InvalidDataError as exc:
        raise VideoError("not a video file, or a damaged one (no container format recognised)") from exc
    except av.error.FFmpegError as exc:
        raise VideoError(f"cannot open the file: {exc.strerror or exc}") from exc


def frame_timestamps(path: str | os.PathLike) -> tuple[Fraction, list[int]]:
    """Presentation timestamps of the first video stream's frames, in display order.

    Read from packets (no decoding). Returns (time_base, pts list).
    """
    with _open(path) as container:
        if not container.streams.video:
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.pts is not None and not p.is_discard]
        return Fraction(stream.time_base), sorted(pts)


def retime_packets(old_pts: list[int], new_pts_sorted: list[int]) -> tuple[list[int], list[int]]:
    """Map packets (decode order, old pts) onto new presentation timestamps.

    Returns (pts, dts) lists in decode order: the packet that shows *j*-th gets
    ``new_pts_sorted[j]``; dts strictly increases and is never after pts (packet *k* gets
    ``P[k-d]`` with *d* the reorder delay; the first *d* packets step back one tick each).
    """
    n = len(old_pts)
    assert n == len(new_pts_sorted), (n, len(new_pts_sorted))
    order = sorted(range(n), key=lambda k: old_pts[k])  # presentation rank -> decode position
    rank = [0] * n
    for r, k in enumerate(order):
        rank[k] = r
    pts = [new_pts_sorted[rank[k]] for k in range(n)]
    delay = max((k - rank[k] for k in range(n)), default=0)  # how far decode runs ahead
    dts = [new_pts_sorted[k - delay] if k >= delay else new_pts_sorted[0] - (delay - k)
           for k in range(n)]
    assert all(d <= p for d, p in zip(dts, pts)), "dts after pts"
    assert all(a < b for a, b in zip(dts, dts[1:])), "dts not increasing"
    return pts, dts


def restamp(encoded: str | os.PathLike, reference: str | os.PathLike,
            output: str | os.PathLike) -> int:
    """Write ``output``: the video packets of ``encoded`` with ``reference``'s frame timestamps.

    Both must hold the same number of frames. Returns that number. Stream copy, no decoding.
    Used by the chunk task so its output chunk keeps the input chunk's timestamps.
    """
    time_base, new_pts = frame_timestamps(reference)
    with _open(encoded) as src:
        stream = src.streams.video[0]
        packets = [p for p in src.demux(stream) if p.size and p.pts is not None]
        if len(packets) != len(new_pts):
            raise VideoError(f"frame count changed: {len(packets)} frames encoded, "
                             f"{len(new_pts)} in the reference", bad_input=False)
        pts, dts = retime_packets([p.pts for p in packets], new_pts)
        tmp = Path(f"{output}.part{Path(output).suffix}")
        with _open(tmp, "w") as dst:
            out_stream = dst.add_stream_from_template(stream)
            out_stream.time_base = time_base
            for packet, p, d in zip(packets, pts, dts):
                packet.stream = out_stream
                packet.time_base = time_base
                packet.pts, packet.dts = p, d
                packet.duration = 0
                dst.mux(packet)
    os.replace(tmp, output)
    return len(new_pts)
