"""Simulate a two-hour 1080p film on a 20-node pool, on a virtual clock: how long the Batch side
takes against the ideal, and where the time goes.

    python bench/bench_scale.py                      # a few seconds; prints a table
    python bench/bench_scale.py --spf 0.14 --nodes 4 # other figures

What is real and what is modelled:

- **the chunk plan is the pipeline's own**: ``shared.plan.choose_chunk_frames`` (FRAMES_PER_CHUNK,
  or CHUNK_TARGET_SECONDS with its whole-wave rounding) and ``shared.video.plan_chunks`` on a
  probe of the film (keyframes every 2 s, as an ordinary encode has);
- **the pool's size over time is the real autoscale formula** (``infra/batch/autoscale.formula``,
  rendered as pool.bicep renders it) run through the offline evaluator of the test suite
  (``tests/batch/autoscale_eval.py``) every 5 minutes on the ``$PendingTasks`` samples the
  simulation records every 30 s, as Batch does;
- **tasks are handed out like the Batch fake does** (``tests/batch/fake_batch_api.py``: oldest
  queued task first to a free node, one task slot per node); nodes leave only when idle
  (``taskcompletion``);
- **task durations** = the node's per-task start-up + (chunk frames + the lead-in frames the
  chunk task scores first) x seconds per frame. Seconds per frame default to the planner's
  figure for the pool's VM size (``shared.plan.frame_cost``: a T4 running ``fast`` at the
  working size, 320x180 for a 16:9 film: ~4 ms of model + ~30 ms of decode/flow/encode; the T4
  row is an estimate from fp32 throughput, not a measurement). ``--spf`` replaces it, e.g. with
  a figure measured on a node (the chunk task logs per-frame seconds), for the planner too
  (as ``SECONDS_PER_FRAME`` would be);
- **node start** = the autoscale evaluation interval (the job arrives just after an
  evaluation: the worst case) + the node's boot and start task (the planner's figure, 8 min for
  GPU sizes), each node ready a little apart (80-120 % of that boot time, spread evenly).

The ideal is the frame work spread perfectly over the nodes plus the node start:
``frames x s/frame / nodes + reaction + boot``. "Tail" is how long the last wave drags: from
the moment the first node runs out of work for good to the end of the last task.
"""

from __future__ import annotations

import argparse
import heapq
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from shared import plan  # noqa: E402
from shared.contract import working_size  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.video import Probe, plan_chunks  # noqa: E402
from tests.batch.autoscale_eval import (  # noqa: E402
    FORMULA_PATH,
    SAMPLE_PERIOD_S,
    Metric,
    evaluate,
    render,
)

EVALUATION_S = 300.0  # Batch evaluates an autoscale formula every 5 minutes at the most


@dataclass
class Result:
    label: str
    chunks: int
    frames_per_chunk: int
    task_s: float  # a typical task, start-up included
    first_task_s: float
    last_end_s: float
    tail_s: float
    ideal_s: float
    node_minutes: float

    @property
    def ratio(self) -> float:
        return self.last_end_s / self.ideal_s


def film_probe(frames: int, fps: int, width: int, height: int, gop_s: float) -> Probe:
    """A probe of the film as shared.video.probe would report it (only what planning reads)."""
    gop = max(1, int(gop_s * fps))
    return Probe(format="mp4", duration_s=frames / fps, video_index=0, codec="h264",
                 width=width, height=height, pix_fmt="yuv420p", sar="1:1", rotation=0,
                 fps=f"{fps}/1", time_base=f"1/{fps}", frames=frames,
                 pts=list(range(frames)), cuts=list(range(0, frames, gop)))


def simulate(label: str, settings: Settings, *, frames: int, fps: int, width: int, height: int,
             nodes: int, spf: float | None, explicit: int | None = None) -> Result:
    dev = plan.device(settings.batch_vm_size)
    cost = plan.frame_cost("fast", width, height, settings.batch_vm_size, settings, spf)
    fpc = plan.choose_chunk_frames(frames, width, height, "fast", settings, explicit=explicit,
                                vm_size=settings.batch_vm_size, nodes=nodes)
    _, chunks = plan_chunks(film_probe(frames, fps, width, height, 2.0), fpc)
    lead = settings.lead_in_frames
    durations = [cost.task_s + (c.frames + (lead if c.index else 0)) * cost.frame_s
                 for c in chunks]
    boot_s = dev.node_startup_min * 60
    formula = render(FORMULA_PATH.read_text(), MAX_NODES=nodes, MAX_SPOT_NODES=0,
                     MAX_DEDICATED_NODES=nodes, IDLE_MINUTES=5)

    queue = list(range(len(chunks)))  # oldest first, as the fake hands tasks out
    running: list[tuple[float, int, int]] = []  # (ends at, node, chunk)
    idle: list[int] = []  # ready nodes without a task
    booting: list[tuple[float, int]] = []  # (ready at, node)
    next_node = 0
    samples: list[float] = []
    t = 0.0
    next_sample, next_eval = 0.0, EVALUATION_S
    first_start = None
    last_end = 0.0
    went_idle = math.inf  # the first time a node found the queue empty for good
    node_seconds = 0.0
    alive: dict[int, float] = {}  # node -> since when it is billed
    while queue or running:
        # The next event: a sample, an evaluation, a node ready or a task ending.
        t = min([next_sample, next_eval] + [b[0] for b in booting[:1]]
                + [r[0] for r in running[:1]])
        while running and running[0][0] <= t:
            end, node, _ = heapq.heappop(running)
            last_end = max(last_end, end)
            idle.append(node)
        while booting and booting[0][0] <= t:
            _, node = heapq.heappop(booting)
            idle.append(node)
        while idle and queue:
            node = idle.pop(0)
            chunk = queue.pop(0)
            first_start = t if first_start is None else first_start
            heapq.heappush(running, (t + durations[chunk], node, chunk))
        if not queue and idle and went_idle == math.inf:
            went_idle = t
        if t >= next_sample:
            samples.append(float(len(queue) + len(running)))  # $PendingTasks: active + running
            next_sample += SAMPLE_PERIOD_S
        if t >= next_eval:
            r = evaluate(formula, {"$PendingTasks": Metric(samples[-40:]),
                                   "$PreemptedNodeCount": Metric([0.0])})
            have = len(alive)
            want = int(r.dedicated)
            for _ in range(max(0, want - have)):
                # Nodes of one resize come up a little apart (80-120 % of the boot time).
                spread = 0.8 + 0.4 * (next_node % nodes) / max(1, nodes - 1)
                heapq.heappush(booting, (t + boot_s * spread, next_node))
                alive[next_node] = t
                next_node += 1
            while len(alive) > want and idle:  # taskcompletion: only idle nodes go
                node = idle.pop()
                node_seconds += t - alive.pop(node)
            next_eval += EVALUATION_S
    node_seconds += sum(last_end - since for since in alive.values())
    ideal = frames * cost.frame_s / nodes + EVALUATION_S + boot_s
    return Result(label=label, chunks=len(chunks), frames_per_chunk=fpc,
                  task_s=cost.task_seconds(fpc), first_task_s=first_start or 0.0,
                  last_end_s=last_end, tail_s=last_end - min(went_idle, last_end),
                  ideal_s=ideal, node_minutes=node_seconds / 60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--vm-size", default=Settings().batch_vm_size)
    ap.add_argument("--spf", type=float, default=None,
                    help="seconds per frame on a node (default: the planner's figure)")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    frames = int(args.hours * 3600 * args.fps)
    # A measured figure is given to the planner too, as SECONDS_PER_FRAME would be.
    base = Settings(batch_backend="azure", batch_vm_size=args.vm_size,
                    batch_max_nodes=args.nodes, seconds_per_frame=args.spf or 0.0)
    cost = plan.frame_cost("fast", width, height, args.vm_size, base, args.spf)
    w, h = working_size(width, height, base.scoring_max_side)
    boot_min = plan.device(args.vm_size).node_startup_min
    print(f"{args.hours:g} h at {args.fps} fps, {width}x{height} ({frames} frames), model fast "
          f"at {w}x{h}, {args.nodes} x {args.vm_size}: {cost.frame_s:.4f} s/frame "
          f"({cost.source}), task start-up {cost.task_s:.0f} s, node boot {boot_min:g} min, "
          f"autoscale every {EVALUATION_S / 60:g} min\n")
    common = dict(frames=frames, fps=args.fps, width=width, height=height, nodes=args.nodes,
                  spf=args.spf)
    target = replace(base, chunk_target_seconds=120.0)
    runs = [
        simulate("FRAMES_PER_CHUNK=48 (the default)", base, **common),
        simulate("CHUNK_TARGET_SECONDS=120", target, **common),
        simulate("CHUNK_TARGET_SECONDS=120, without whole waves",
                 target, explicit=plan.choose_chunk_frames(
                     frames, width, height, "fast", replace(target, batch_max_nodes=1),
                     vm_size=args.vm_size, nodes=1), **common),
    ]
    print("| plan | chunks | frames/chunk | task s | first task | last task ends | tail "
          "| ideal | ÷ ideal | node-min |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r.label} | {r.chunks} | {r.frames_per_chunk} | {r.task_s:.0f} | "
              f"{r.first_task_s / 60:.1f} min | {r.last_end_s / 60:.1f} min | {r.tail_s:.0f} s | "
              f"{r.ideal_s / 60:.1f} min | {r.ratio:.2f} | {r.node_minutes:.0f} |")


if __name__ == "__main__":
    main()
