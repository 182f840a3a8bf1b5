"""Frame timestamps: read them from packets, map re-encoded packets onto the original frames'
timestamps, and restamp a file (the chunk task's last step; the stitch uses the same mapping).

Frame identity is by presentation order: frame *i* of a video is the *i*-th frame its decoder
shows, and a stylized frame *i* gets the original frame *i*'s timestamp.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from shared.video.common import VideoError, opened


def frame_timestamps(path: str | os.PathLike[str]) -> tuple[Fraction, list[int]]:
    """Presentation timestamps of the first video stream's frames, in display order.

    Read from packets (no decoding). Returns (time_base, pts list).
    """
    with opened(path) as container:
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


def typical_gap(pts: list[int]) -> int:
    """The median distance between consecutive timestamps (1 for a single frame)."""
    gaps = sorted(b - a for a, b in zip(pts, pts[1:]))
    return gaps[len(gaps) // 2] if gaps else 1


def video_packets(container: Any) -> list[Any]:
    """The first video stream's packets that carry a frame, in decode order."""
    return [pk for pk in container.demux(container.streams.video[0])
            if pk.size and pk.pts is not None]


def retimed(packets: list[Any], new_pts: list[int], room: int, out_stream: Any,
            time_base: Fraction) -> Iterator[Any]:
    """``packets`` (decode order) given ``new_pts`` (presentation order) for ``out_stream``."""
    pts, dts = retime_packets([pk.pts for pk in packets], new_pts, room)
    for pk, pt, dt in zip(packets, pts, dts):
        pk.stream = out_stream
        pk.time_base = time_base
        pk.pts, pk.dts = pt, dt
        pk.duration = 0
        yield pk


def restamp(encoded: str | os.PathLike[str], reference: str | os.PathLike[str],
            output: str | os.PathLike[str]) -> int:
    """Write ``output``: the video packets of ``encoded`` with ``reference``'s frame timestamps.

    Both must hold the same number of frames. Returns that number. Stream copy, no decoding.
    Used by the chunk task so its output chunk keeps the input chunk's timestamps.
    """
    time_base, new_pts = frame_timestamps(reference)
    with opened(encoded) as src:
        stream = src.streams.video[0]
        packets = video_packets(src)
        if len(packets) != len(new_pts):
            raise VideoError(f"frame count changed: {len(packets)} frames encoded, "
                             f"{len(new_pts)} in the reference", bad_input=False)
        tmp = Path(f"{output}.part{Path(output).suffix}")
        with opened(tmp, "w") as dst:
            out_stream = dst.add_stream_from_template(stream, opaque=True)
            out_stream.time_base = time_base
            for packet in retimed(packets, new_pts, typical_gap(new_pts), out_stream, time_base):
                dst.mux(packet)
    os.replace(tmp, output)
    return len(new_pts)
