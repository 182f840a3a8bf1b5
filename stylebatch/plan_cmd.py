"""``stylebatch plan``: what a video will take on Azure Batch, before spending money.

    stylebatch plan clip.mp4 --nodes 4 --vm-size Standard_NC4as_T4_v3 --spot
    stylebatch plan --frames 14400 --size 1920x1080 --model fast --json
    python -m stylebatch.plan_cmd clip.mp4          # the same, without the main CLI

Prints frames, chunks, estimated GPU-minutes, wall time (node start-up included) and cost from
the dated tables in shared/plan.py — the same estimate the job status shows (``estimate``).
Defaults come from the app's settings (BATCH_VM_SIZE, BATCH_MAX_NODES, BATCH_SPOT,
CHUNK_TARGET_SECONDS, FRAMES_PER_CHUNK, SECONDS_PER_FRAME, …), so it plans what a job would do.

The main CLI registers it with ``add_parser(subparsers)``; the handler is ``run(args)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from shared.contract import MODEL_KINDS, working_size
from shared.plan import (
    DEVICES,
    MIN_TASK_SECONDS,
    PRICE_TABLE_DATE,
    Estimate,
    choose_chunk_frames,
    chunk_cap,
    estimate,
    frame_cost,
)
from shared.settings import Settings, get_settings

DESCRIPTION = ("Estimate frames, chunks, GPU-minutes, wall time (node start-up included) and cost "
               "of styling a video on Azure Batch. Defaults come from the app's settings "
               "(environment variables in brackets).")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``plan`` on an argparse subparsers object; sets ``handler`` to ``run``."""
    p = subparsers.add_parser(
        "plan", help="estimate chunks, GPU time, wall time and cost of a video on Azure Batch",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _arguments(p)
    p.set_defaults(handler=run)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    s = _settings()
    p.add_argument("video", nargs="?", help="the video to plan for (probed, not decoded); "
                   "or give --frames and --size")
    p.add_argument("--nodes", type=int, default=s.batch_max_nodes,
                   help="GPU nodes the pool may use (BATCH_MAX_NODES)")
    p.add_argument("--vm-size", default=s.batch_vm_size, choices=sorted(DEVICES),
                   metavar="SIZE", help="node VM size (BATCH_VM_SIZE); one of: "
                   + ", ".join(sorted(DEVICES)))
    spot = p.add_mutually_exclusive_group()
    spot.add_argument("--spot", dest="spot", action="store_true", default=s.batch_spot,
                      help="Spot nodes (cheaper, may be preempted) (BATCH_SPOT)")
    spot.add_argument("--dedicated", dest="spot", action="store_false",
                      default=argparse.SUPPRESS, help="dedicated nodes (the opposite of --spot)")
    p.add_argument("--model", choices=MODEL_KINDS, default=s.default_model,
                   help="style model (DEFAULT_MODEL)")
    p.add_argument("--train", action=argparse.BooleanOptionalAction, default=None,
                   help="count the fast model's training task (default: with --model fast)")
    p.add_argument("--frames-per-chunk", type=int, default=None,
                   help="force the chunk size (default: the sizing rule of shared/plan.py)")
    p.add_argument("--target-seconds", type=float, default=s.chunk_target_seconds,
                   help="auto-size chunks to this many seconds per task; 0 = FRAMES_PER_CHUNK "
                   "(CHUNK_TARGET_SECONDS)")
    p.add_argument("--seconds-per-frame", type=float, default=s.seconds_per_frame or None,
                   help="measured seconds per frame on this VM size (SECONDS_PER_FRAME); "
                   "default: the speed table")
    p.add_argument("--max-side", type=int, default=s.scoring_max_side,
                   help="long side the model works at (SCORING_MAX_SIDE)")
    p.add_argument("--frames", type=int, help="plan for this many frames instead of a file")
    p.add_argument("--size", help="frame size WxH with --frames, e.g. 1920x1080")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")


def _settings() -> Settings:
    try:
        return get_settings()
    except ValueError:  # a broken environment must not break --help
        return Settings()


def run(args: argparse.Namespace) -> int:
    """Print the plan. Exit 0, or 2 when the input cannot be planned."""
    try:
        frames, width, height, source = _video(args)
    except (ValueError, OSError) as exc:
        print(f"stylebatch plan: {exc}", file=sys.stderr)
        return 2
    base = _settings()
    settings = Settings(**{**base.__dict__, "chunk_target_seconds": args.target_seconds or 0.0,
                           "scoring_max_side": args.max_side, "batch_backend": "azure",
                           "seconds_per_frame": args.seconds_per_frame or 0.0})
    try:
        est = estimate(frames, width, height, args.model, max(1, args.nodes), args.vm_size,
                       args.spot, args.seconds_per_frame, settings=settings,
                       chunk_frames=args.frames_per_chunk, train=args.train)
    except ValueError as exc:
        print(f"stylebatch plan: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"source": source, **est.to_json()}, indent=2))
        return 0
    print(render(est, source, settings, explicit=args.frames_per_chunk))
    return 0


def _video(args: argparse.Namespace) -> tuple[int, int, int, str]:
    if args.frames is not None or args.size:
        if args.frames is None or not args.size:
            raise ValueError("--frames and --size go together")
        try:
            w, h = (int(x) for x in args.size.lower().split("x"))
        except ValueError:
            raise ValueError(f"--size must be WxH, not {args.size!r}") from None
        if args.frames < 1:
            raise ValueError("--frames must be at least 1")
        return args.frames, w, h, f"{args.frames} frames at {w}x{h}"
    if not args.video:
        raise ValueError("give a VIDEO, or --frames and --size")
    from shared.video import VideoError, probe

    try:
        p = probe(args.video)
    except VideoError as exc:
        raise ValueError(f"{args.video}: {exc}") from None
    return p.frames, p.width, p.height, args.video


def render(est: Estimate, source: str, settings: Settings, explicit: int | None = None) -> str:
    """The human-readable plan."""
    w, h = working_size(est.width, est.height, settings.scoring_max_side)
    if explicit:
        rule = "as asked"
    elif settings.chunk_target_seconds > 0:
        rule = f"auto: ~{settings.chunk_target_seconds:g} s per task"
    else:
        rule = f"FRAMES_PER_CHUNK={settings.frames_per_chunk}"
    kind = "Spot" if est.spot else "dedicated"
    cap = chunk_cap(settings)
    bound = f"MAX_CHUNKS={settings.max_chunks}" if cap == settings.max_chunks else \
        "what one split task can list on Azure Batch"
    lines = [
        f"{source}: {est.frames} frames, {est.width}x{est.height} (model works at {w}x{h}), "
        f"model {est.model}",
        f"pool:      up to {est.nodes} x {est.vm_size} ({est.gpu}), {kind}",
        f"chunks:    {est.chunks} x {est.frames_per_chunk} frames ({rule}; at most "
        f"{cap}: {bound})",
        f"speed:     {est.seconds_per_frame:.3f} s/frame ({est.spf_source}); a task ~"
        f"{est.task_seconds:.0f} s including start-up",
    ]
    if est.train_minutes:
        lines.append(f"training:  ~{est.train_minutes:.1f} min before the chunks start")
    lines += [
        f"GPU time:  ~{est.gpu_minutes:.1f} GPU-minutes",
        f"wall time: ~{est.wall_minutes:.0f} min from submit to the last chunk (node start-up "
        "and autoscale reaction included)",
        f"cost:      ~${est.cost_usd:.2f} ({est.node_minutes:.0f} billed node-minutes at "
        f"${est.usd_per_hour:.3f}/h; prices of {PRICE_TABLE_DATE}, approximate)",
    ]
    if not explicit and settings.chunk_target_seconds <= 0:
        cost = frame_cost(est.model, est.width, est.height, est.vm_size, settings)
        if cost.task_seconds(est.frames_per_chunk) < MIN_TASK_SECONDS:
            auto = choose_chunk_frames(est.frames, est.width, est.height, est.model, Settings(
                **{**settings.__dict__, "chunk_target_seconds": 120.0}), vm_size=est.vm_size,
                nodes=est.nodes)
            lines.append(f"hint:      tasks this short waste start-up time; --target-seconds "
                         f"120 (CHUNK_TARGET_SECONDS) would use {auto} frames per chunk")
    lines += [f"note:      {n}" for n in est.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stylebatch plan", description=DESCRIPTION,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
