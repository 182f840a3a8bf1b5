"""``python -m scoring``: the command line a Batch node runs.

    python -m scoring stylize --input IN.mkv --output OUT.mkv --style swirl.jpg --model gatys
    python -m scoring train --style swirl.jpg --content clip.mp4 --output swirl.pt
    python -m scoring flicker OUT.mkv
    python -m scoring split --input clip.mp4 --probe probe.json --chunks chunks.json \
        --out-dir chunks
    python -m scoring scan --input clip.mp4 --output probe.json
    python -m scoring stitch --input clip.mp4 --probe probe.json --chunks chunks.json \
        --stylized-dir stylized --output result.mp4 --preview preview.jpg \
        --preview-source chunk.mkv

The command lines, exit codes and events are the app's contract with the nodes
(``shared/contract.py``): 0 success, 2 bad input (do not retry), anything else retryable;
progress is JSON lines on stdout; a failure ends with an ``error`` JSON line on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

# Nothing here imports torch at module level: the split task (and any other that scores
# nothing) starts in a fraction of a second instead of paying torch's ~2.5 s import.
from scoring.events import BadInputError, emit, emit_error
from shared.contract import (
    EVENT_DONE,
    EVENT_FRAME,
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RETRY,
    add_scan_arguments,
    add_split_arguments,
    add_stitch_arguments,
    add_stylize_arguments,
    scan_limits,
)
from shared.video import VideoError


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    ap = argparse.ArgumentParser(prog="python -m scoring", description=__doc__.splitlines()[0],
                                 formatter_class=fmt)
    sub = ap.add_subparsers(dest="command", required=True)

    st = sub.add_parser("stylize", formatter_class=fmt,
                        help="stylize a video chunk (the chunk task)",
                        description="Stylize every frame of a video chunk; OUT keeps IN's frame "
                                    "count, size and per-frame timestamps (video only).")
    add_stylize_arguments(st)
    # Node-side tuning the app does not set.
    st.add_argument("--no-warm-start", dest="warm_start", action="store_false",
                    help="gatys: optimise every frame from its own content frame (flickers; "
                         "default: warm start)")
    st.add_argument("--device", default="auto", help="auto | cpu | cuda")
    st.add_argument("--batch-size", type=int, default=0,
                    help="fast: frames per batch; 0 = 8 on CUDA, 1 on CPU")
    st.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                    help="fast: autocast dtype on CUDA (auto = bf16 where supported)")
    st.add_argument("--compile", action="store_true", help="fast: torch.compile the network")
    st.add_argument("--quiet", action="store_true", help="no per-frame events")

    from scoring.train_config import add_train_arguments

    tr = sub.add_parser("train", formatter_class=fmt, help="train a fast model for a style",
                        description="Perceptual-loss training of a fast model, with a temporal "
                                    "stability term (noise/shift and DIS-warped neighbours).")
    add_train_arguments(tr)

    fl = sub.add_parser("flicker", formatter_class=fmt, help="measure a video's flicker",
                        description="Warping error with DIS optical flow and an occlusion mask "
                                    "(Lai et al. 2018); lower is steadier.")
    fl.add_argument("video", help="video file to measure")
    fl.add_argument("--max-side", type=int, default=320, help="measure at this long side")
    fl.add_argument("--max-frames", type=int, default=0, help="0 = all frames")
    fl.add_argument("--source", default=None,
                    help="the video it was made from: motion is measured on it (recommended)")
    sp = sub.add_parser("split", formatter_class=fmt,
                        help="cut a video into its planned chunks (the split task)",
                        description="Cut the video stream of INPUT into one Matroska file per "
                                    "planned chunk, OUT_DIR/<index:05d>.mkv, by stream copy or "
                                    "re-encode as the plan says; every frame keeps its "
                                    "timestamp.")
    add_split_arguments(sp)
    sc = sub.add_parser("scan", formatter_class=fmt,
                        help="probe a video packet by packet (the scan task)",
                        description="Read every packet of INPUT (no decoding but its first "
                                    "frame) and write its probe, per-frame timestamps "
                                    "included, to OUTPUT as JSON; input beyond the limits "
                                    "or damaged exits 2 with the reason.")
    add_scan_arguments(sc)
    sj = sub.add_parser("stitch", formatter_class=fmt,
                        help="join the stylized chunks into the output video (the stitch task)",
                        description="Join the stylized chunks, every frame given the input's "
                                    "timestamp, with every other stream of INPUT copied as it "
                                    "is, into OUTPUT (the container its extension names); and "
                                    "the before/after preview.")
    add_stitch_arguments(sj)
    return ap


def _run_scan(args: argparse.Namespace) -> dict:
    import json
    import os

    from shared.video import probe

    def scanned(frames: int) -> None:
        emit(EVENT_FRAME, index=frames - 1)

    t0 = time.perf_counter()
    p = probe(args.input, limits=scan_limits(args), size_bytes=os.path.getsize(args.input),
              on_frames=scanned)
    partial = f"{args.output}.partial"
    with open(partial, "w") as fh:
        json.dump(p.to_json(), fh, separators=(",", ":"))
    os.replace(partial, args.output)  # a task that dies mid-write leaves no probe behind
    scanned(p.frames)
    return {"frames": p.frames, "cuts": len(p.cuts), "warnings": p.warnings,
            "seconds": round(time.perf_counter() - t0, 3)}


def _run_split(args: argparse.Namespace) -> dict:
    import json

    from shared.video import Chunk, Probe, split

    with open(args.probe) as fh:
        probe = Probe.from_json(json.load(fh))
    with open(args.chunks) as fh:
        plan = json.load(fh)
    chunks = [Chunk(**c) for c in plan["chunks"]]

    def done(index: int, _path: object) -> None:
        # Progress in frames, as the backends count it (the last frame of the chunk).
        last = chunks[index]
        emit(EVENT_FRAME, index=last.start + last.frames - 1, chunk=index)

    t0 = time.perf_counter()
    paths = split(args.input, probe, chunks, plan["mode"], args.out_dir, on_chunk=done)
    return {"chunks": len(paths), "frames": probe.frames, "mode": plan["mode"],
            "seconds": round(time.perf_counter() - t0, 3)}


def _run_stitch(args: argparse.Namespace) -> dict:
    import json
    from pathlib import Path

    from shared.contract import StitchTask
    from shared.video import Chunk, Probe, make_preview, output_format, stitch

    with open(args.probe) as fh:
        probe = Probe.from_json(json.load(fh))
    with open(args.chunks) as fh:
        chunks = [Chunk(**c) for c in json.load(fh)["chunks"]]
    task = StitchTask(input=args.input, output=args.output, stylized_dir=args.stylized_dir)
    sources = [task.stylized_file(c.index) for c in chunks]
    missing = [s for s in sources if not Path(s).is_file()]
    if missing:  # the node's files, not the video: worth another try
        raise FileNotFoundError(f"{len(missing)} stylized chunks missing, first {missing[0]}")

    def done(chunk: Chunk) -> None:
        # Progress in frames, as the backends count it (the last frame joined).
        emit(EVENT_FRAME, index=chunk.start + chunk.frames - 1, chunk=chunk.index)

    t0 = time.perf_counter()
    result = stitch(args.input, probe, chunks, sources, args.output,
                    output_format(Path(args.output).suffix.lstrip(".")), on_chunk=done)
    make_preview(args.preview_source, sources[StitchTask.preview_chunk(len(chunks))], probe,
                 args.preview)
    summary = {"frames": result.frames, "size_bytes": result.size_bytes,
               "streams_copied": result.streams_copied,
               "streams_dropped": result.streams_dropped,
               "seconds": round(time.perf_counter() - t0, 3)}
    if args.summary:
        tmp = Path(f"{args.summary}.part")
        tmp.write_text(json.dumps(summary))
        tmp.replace(args.summary)
    return summary


def _run_stylize(args: argparse.Namespace) -> dict:
    from scoring.stylize import StylizeConfig, stylize

    cfg = StylizeConfig(
        input=args.input, output=args.output, style=args.style, model=args.model,
        model_file=args.model_file, max_side=args.max_side, steps=args.steps,
        warm_steps=args.warm_steps, warm_start=args.warm_start, codec=args.codec, crf=args.crf,
        preset=args.preset, pix_fmt=args.pix_fmt, device=args.device,
        batch_size=args.batch_size, precision=args.precision, compile=args.compile,
        threads=args.threads, quiet=args.quiet, temporal=args.temporal,
        temporal_weight=args.temporal_weight, chroma_sigma=args.chroma_sigma,
        lead_in=args.lead_in,
        lead_in_frames=args.lead_in_frames, lead_out_frames=args.lead_out_frames)
    return stylize(cfg)


def _run_flicker(args: argparse.Namespace) -> dict:
    from scoring.flicker import video_flicker

    return video_flicker(args.video, max_side=args.max_side, max_frames=args.max_frames,
                         source=args.source)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.command == "stylize":
            summary = _run_stylize(args)
        elif args.command == "split":
            summary = _run_split(args)
        elif args.command == "scan":
            summary = _run_scan(args)
        elif args.command == "stitch":
            summary = _run_stitch(args)
        elif args.command == "train":
            from scoring.train import run_train_args

            summary = run_train_args(args)
        else:
            summary = _run_flicker(args)
        emit(EVENT_DONE, **summary) if "seconds" in summary else \
            emit(EVENT_DONE, seconds=round(time.perf_counter() - t0, 3), **summary)
        return EXIT_OK
    except (BadInputError, VideoError) as exc:
        bad = isinstance(exc, BadInputError) or bool(getattr(exc, "bad_input", False))
        emit_error(str(exc), bad_input=bad)
        return EXIT_BAD_INPUT if bad else EXIT_RETRY
    except KeyboardInterrupt:
        emit_error("interrupted", bad_input=False)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every other failure is worth a retry
        traceback.print_exc(file=sys.stderr)
        emit_error(f"{type(exc).__name__}: {exc}", bad_input=False)
        return EXIT_RETRY


if __name__ == "__main__":
    sys.exit(main())
