"""A stand-in chunk task for ``bench_long.py --pool copy``: the chunk's video packets, unchanged.

    python bench/copy_task.py --input chunk.mkv --output out.mkv [any other stylize options]

It speaks the real task's contract to the backend (``frame`` events on stdout while it works,
``done`` at the end, the output written whole under its final name), but copies the chunk's
video stream instead of decoding, restyling and encoding it. The long-video bench uses it to
measure the Function side (plan, split hand-off, submit, progress, stitch hand-off, publish) on
inputs whose real scoring this 2-core machine could not finish in a session; the pool's own
throughput is what ``bench_scoring.py`` and ``bench_scale.py`` measure.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.contract import EVENT_DONE, EVENT_FRAME, event_line  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    args, _ = ap.parse_known_args()  # the stylize options this stand-in does not use
    out = Path(args.output)
    tmp = out.with_name(f".{out.stem}.part{out.suffix}")
    frames = 0
    with av.open(args.input) as src, av.open(str(tmp), "w", format="matroska") as dst:
        vin = src.streams.video[0]
        vout = dst.add_stream_from_template(vin)
        for packet in src.demux(vin):
            if packet.dts is None and packet.size == 0:
                continue  # the demuxer's flush packet
            packet.stream = vout
            dst.mux(packet)
            frames += 1
            if frames % 250 == 0:
                print(event_line(EVENT_FRAME, index=frames - 1, seconds=0.0), flush=True)
    os.replace(tmp, out)
    print(event_line(EVENT_FRAME, index=frames - 1, seconds=0.0), flush=True)
    print(event_line(EVENT_DONE, frames=frames, seconds=0.0), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
