"""Chunk sizing and cost estimates: how many frames per Batch task, and what a job will cost.

Pure functions (no I/O), shared by the pipeline (chunk sizing, the estimate in the job status)
and ``stylebatch plan`` (the estimate before spending money)::

    python -c "from shared.plan import estimate; print(estimate(1440, 1920, 1080, 'gatys', 4,
               'Standard_NC4as_T4_v3', spot=True))"

**Chunk sizing rule.** A Batch task pays a fixed start-up cost (download the chunk, import torch,
load VGG19, initialise CUDA: ~25 s on a GPU node) and, for ``gatys``, a cold first frame (full
``GATYS_STEPS`` instead of ``GATYS_WARM_STEPS``). Small chunks waste that overhead over and over;
big chunks lose more work when a task fails or a Spot node is preempted, and leave nodes idle at
the end of a job (the last wave is uneven). Azure Batch advises tasks of tens of seconds or more,
so the automatic rule aims at ``CHUNK_TARGET_SECONDS`` of GPU time per task (120 s recommended:
the 1-3 GPU-minute band), bounded by ``MAX_CHUNKS`` tasks per job. Precedence:

1. a per-job ``frames_per_chunk`` option (what the user asked for) wins;
2. else ``CHUNK_TARGET_SECONDS`` > 0 sizes chunks automatically from seconds-per-frame
   (``SECONDS_PER_FRAME`` when measured, else the table below for ``BATCH_VM_SIZE``);
3. else ``FRAMES_PER_CHUNK`` (the default, unchanged behaviour).

In every case the job is cut into at most ``MAX_CHUNKS`` chunks, and on Azure Batch into at
most ``AZURE_SPLIT_MAX_CHUNKS`` (``chunk_cap``).

**Speed and price tables** live here and nowhere else. CPU figures are measured
(docs/architecture.md; 2 cores, fp32); GPU figures are *estimates* (VGG19 FLOPs at the working
size over a realistic fraction of each GPU's fp32 throughput) until someone measures them on a
node — set ``SECONDS_PER_FRAME`` from a real run (the chunk task logs per-frame timings).
Prices are approximate pay-as-you-go Linux list prices (USD/hour, East US) as of
``PRICE_TABLE_DATE``; Spot prices float, so Spot is estimated with a typical discount. Check the
Azure pricing calculator before relying on a figure.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.contract import working_size
from shared.settings import Settings

PRICE_TABLE_DATE = "2025-06-01"
SPEED_TABLE_DATE = "2026-11-28"

# Typical Spot discount off the pay-as-you-go price (Spot prices change with demand).
SPOT_PRICE_FACTOR = 0.3

# Reference working size for the per-device speeds below: 320x180, the default SCORING_MAX_SIDE
# applied to a 16:9 video. Costs scale with pixels (every layer is a convolution).
REF_PIXELS = 320 * 180


@dataclass(frozen=True)
class Device:
    """How fast one node scores, and what it costs."""

    name: str
    gpu: str  # the accelerator, or "cpu"
    usd_per_hour: float  # pay-as-you-go, Linux, East US, at PRICE_TABLE_DATE (approximate)
    gatys_step_s: float  # one L-BFGS evaluation (VGG19 forward+backward) at REF_PIXELS
    fast_frame_s: float  # one TransformerNet frame at REF_PIXELS
    frame_overhead_s: float  # decode + optical flow + encode per frame (CPU side of the node)
    task_startup_s: float  # per task: resource download, Python/torch import, model load
    node_startup_min: float  # boot + start task (drivers check, Python deps) of a fresh node
    train_step_s: float  # one fast-model training step (batch 4, 256 px)
    measured: bool = False  # True only for figures measured on this device

    @property
    def spot_usd_per_hour(self) -> float:
        return round(self.usd_per_hour * SPOT_PRICE_FACTOR, 4)


def _gpu(name: str, gpu: str, usd: float, speed: float, startup_min: float = 8.0) -> Device:
    """A GPU node from its speed relative to a T4 (fp32 convolution throughput, estimated).

    T4 baseline, estimated: VGG19 up to relu5_1 at 320x180 is ~22 GFLOP forward, ~66 GFLOP
    forward+backward; a T4 sustains ~3 TFLOP/s fp32 on it, so ~25 ms per L-BFGS evaluation.
    A TransformerNet frame at that size is ~4 ms of GPU time; decode/encode dominate.
    """
    return Device(name=name, gpu=gpu, usd_per_hour=usd, gatys_step_s=0.025 / speed,
                  fast_frame_s=0.004 / speed, frame_overhead_s=0.03, task_startup_s=25.0,
                  node_startup_min=startup_min, train_step_s=0.12 / speed)


# One row per VM size the product supports. The first GPU row is the default pool size.
DEVICES: dict[str, Device] = {d.name: d for d in [
    _gpu("Standard_NC4as_T4_v3", "T4 16GB", 0.526, 1.0),
    _gpu("Standard_NC8as_T4_v3", "T4 16GB", 0.752, 1.0),
    _gpu("Standard_NC16as_T4_v3", "T4 16GB", 1.204, 1.0),
    _gpu("Standard_NC6s_v3", "V100 16GB", 3.06, 2.0),
    _gpu("Standard_NV36ads_A10_v5", "A10 24GB", 3.20, 2.5),
    _gpu("Standard_NC24ads_A100_v4", "A100 80GB", 3.673, 4.5),
    _gpu("Standard_NC40ads_H100_v5", "H100 NVL 94GB", 6.98, 7.0),
    # This machine (the local backend): measured (docs/architecture.md). Gatys 2.8 s/step at
    # 455x256 scaled to REF_PIXELS; TransformerNet 0.73 fps at 640x360 (eager) scaled likewise.
    Device(name="local", gpu="cpu", usd_per_hour=0.0,
           gatys_step_s=2.8 * REF_PIXELS / (455 * 256), fast_frame_s=(1 / 0.73) * REF_PIXELS / (
               640 * 360), frame_overhead_s=0.05, task_startup_s=6.0, node_startup_min=0.0,
           train_step_s=2.4, measured=True),
]}

# How long autoscale takes to notice a backlog: it evaluates every 5 minutes (the minimum).
AUTOSCALE_REACTION_MIN = 5.0
# After the queue drains, nodes stay until the formula sees the idle window and the next
# evaluation removes them (infra/batch/autoscale.formula, IDLE_MINUTES = 5).
AUTOSCALE_IDLE_TAIL_MIN = 7.5
# The smallest chunk the automatic rule makes (a chunk must amortise its first frame).
MIN_AUTO_FRAMES = 8
# The band the automatic rule keeps tasks in when it spreads or balances chunks over the pool
# (1-3 GPU-minutes: long enough to amortise start-up, short enough to redo after a failure).
MIN_TASK_SECONDS = 60.0
MAX_TASK_SECONDS = 180.0


def device(vm_size: str) -> Device:
    try:
        return DEVICES[vm_size]
    except KeyError:
        known = ", ".join(sorted(DEVICES))
        raise ValueError(f"unknown VM size {vm_size!r}; known sizes: {known}") from None


@dataclass(frozen=True)
class FrameCost:
    """Seconds a task spends: once per task, extra for its first frame, then per frame."""

    task_s: float
    first_frame_extra_s: float
    frame_s: float
    source: str  # "given" (argument), "setting" (SECONDS_PER_FRAME), "measured" or "estimate"

    def task_seconds(self, frames: int) -> float:
        return self.task_s + self.first_frame_extra_s + frames * self.frame_s


def frame_cost(model: str, width: int, height: int, vm_size: str,
               settings: Settings | None = None,
               seconds_per_frame: float | None = None) -> FrameCost:
    """The per-task and per-frame cost of scoring ``model`` on a node of ``vm_size``."""
    s = settings or Settings()
    dev = device(vm_size)
    w, h = working_size(width, height, s.scoring_max_side)
    scale = (w * h) / REF_PIXELS
    if model == "gatys":
        step = dev.gatys_step_s * scale
        per_frame = s.gatys_warm_steps * step + dev.frame_overhead_s * scale
        first_extra = max(0, s.gatys_steps - s.gatys_warm_steps) * step
    elif model == "fast":
        per_frame = (dev.fast_frame_s + dev.frame_overhead_s) * scale
        first_extra = 0.0
    else:
        raise ValueError(f"model must be gatys or fast, not {model!r}")
    source = "measured" if dev.measured else "estimate"
    if seconds_per_frame and seconds_per_frame > 0:
        per_frame, source = float(seconds_per_frame), "given"
    elif s.seconds_per_frame > 0:
        per_frame, source = float(s.seconds_per_frame), "setting"
    # (A measured per-frame figure already includes warm-start steps and I/O; the cold first
    # frame and the task start-up stay as estimated.)
    return FrameCost(task_s=dev.task_startup_s, first_frame_extra_s=first_extra,
                     frame_s=per_frame, source=source)


# Azure Batch refuses a task definition over 1 MB, and the split task lists one output file
# per chunk, each with a SAS for that one blob: about 600 bytes with the user-delegation SAS
# an Azure deployment signs and the longest names (tests/batch/test_split_task_size.py
# measures it). 1,500 chunks leave a sixth of the limit spare.
AZURE_SPLIT_MAX_CHUNKS = 1500


def chunk_cap(settings: Settings) -> int:
    """The most chunks a job may have: ``MAX_CHUNKS``, and on Azure Batch no more than one
    split task can list."""
    cap = max(1, settings.max_chunks)
    return min(cap, AZURE_SPLIT_MAX_CHUNKS) if settings.batch_backend == "azure" else cap


def choose_chunk_frames(frames: int, width: int, height: int, model: str, settings: Settings,
                     *, explicit: int | None = None, vm_size: str | None = None,
                     nodes: int | None = None) -> int:
    """Frames per chunk for a video (see the module docstring for the rule and its precedence).

    ``explicit`` is a per-job choice (the ``frames_per_chunk`` job option). ``vm_size`` defaults
    to ``BATCH_VM_SIZE`` on the azure backend and to this machine on the local one; ``nodes``
    to the pool's cap (``BATCH_MAX_NODES``; ``LOCAL_BATCH_SLOTS`` locally).
    """
    if frames <= 0:
        raise ValueError("a video needs at least one frame")
    if explicit and explicit > 0:
        wanted = int(explicit)
    elif settings.chunk_target_seconds > 0:
        cost = frame_cost(model, width, height, vm_size or _default_vm(settings), settings)
        # Solve task_seconds(n) = target for n; the start-up and cold first frame are fixed.
        budget = settings.chunk_target_seconds - cost.task_s - cost.first_frame_extra_s
        wanted = max(MIN_AUTO_FRAMES, math.floor(budget / cost.frame_s) if budget > 0 else 0)
        pool = max(1, nodes or _nodes(settings))
        # A short video would leave nodes idle: spread it over the pool while every task still
        # runs at least MIN_TASK_SECONDS (below that, start-up overhead dominates).
        spread = math.ceil(frames / pool)
        if spread < wanted and cost.task_seconds(spread) >= MIN_TASK_SECONDS:
            wanted = spread
        # Whole waves: 5 tasks on 4 nodes take two task-lengths with one node busy in the second;
        # 4 or 8 even tasks finish sooner. Round to whole waves while tasks stay in the band.
        count = math.ceil(frames / wanted)
        if pool > 1 and count > pool and count % pool:
            waves = math.ceil(count / pool)
            for w in (waves - 1, waves):
                even = math.ceil(frames / (w * pool))
                if MIN_TASK_SECONDS <= cost.task_seconds(even) <= MAX_TASK_SECONDS:
                    wanted = even
                    break
    else:
        wanted = settings.frames_per_chunk
    at_least = math.ceil(frames / chunk_cap(settings))  # never more chunks than the cap
    return max(1, min(frames, max(wanted, at_least)))


def _default_vm(settings: Settings) -> str:
    return settings.batch_vm_size if settings.batch_backend == "azure" else "local"


def _nodes(settings: Settings) -> int:
    return settings.batch_max_nodes if settings.batch_backend == "azure" else \
        settings.local_batch_slots


@dataclass
class Estimate:
    """What a job will take and cost. GPU figures are estimates unless ``spf_source`` says not."""

    frames: int
    width: int
    height: int
    model: str
    vm_size: str
    gpu: str
    spot: bool
    nodes: int  # nodes that will actually work (no more than there are tasks)
    chunks: int
    frames_per_chunk: int
    seconds_per_frame: float
    spf_source: str
    task_seconds: float  # a typical (full) chunk task, start-up included
    train_minutes: float  # fast model training, when the style has no model yet
    gpu_minutes: float  # busy node time, all tasks
    wall_minutes: float  # from submit to the last chunk, node start-up included
    node_minutes: float  # billed node time: start-up + busy + idle tail before scale-down
    usd_per_hour: float
    cost_usd: float
    price_table_date: str = PRICE_TABLE_DATE
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_status(self) -> dict[str, Any]:
        """The compact form that goes into the job status JSON (``estimate``)."""
        return {"chunks": self.chunks, "frames_per_chunk": self.frames_per_chunk,
                "gpu_minutes": self.gpu_minutes, "wall_minutes": self.wall_minutes,
                "cost_usd": self.cost_usd, "vm_size": self.vm_size, "nodes": self.nodes,
                "spot": self.spot, "basis": self.spf_source,
                "price_table_date": self.price_table_date}


def estimate(frames: int, width: int, height: int, model: str, nodes: int, vm_size: str,
             spot: bool, seconds_per_frame: float | None = None, *,
             settings: Settings | None = None, chunk_frames: int | None = None,
             train: bool | None = None, warm_nodes: int = 0) -> Estimate:
    """Estimate frames, chunks, GPU-minutes, wall time and cost of one job.

    ``chunk_frames`` forces the chunk size (else the sizing rule above decides);
    ``train`` adds the fast model's training task (default: when ``model == "fast"``);
    ``warm_nodes`` nodes are assumed already running (no start-up wait for those).
    """
    s = settings or Settings()
    if nodes < 1:
        raise ValueError("nodes must be at least 1")
    dev = device(vm_size)
    cost = frame_cost(model, width, height, vm_size, s, seconds_per_frame)
    if chunk_frames and chunk_frames > 0:
        fpc = max(1, min(frames, max(chunk_frames, math.ceil(frames / chunk_cap(s)))))
    else:
        fpc = choose_chunk_frames(frames, width, height, model, s, vm_size=vm_size, nodes=nodes)
    chunks = math.ceil(frames / fpc)
    last = frames - (chunks - 1) * fpc
    task_s = cost.task_seconds(fpc)
    busy_s = (chunks - 1) * task_s + cost.task_seconds(last)
    train = (model == "fast") if train is None else train
    # Training runs on fixed-size crops, so its cost does not depend on the video's size.
    train_s = (s.train_steps * dev.train_step_s + dev.task_startup_s) if train else 0.0
    working = max(1, min(nodes, chunks))
    waves = math.ceil(chunks / working)
    startup_min = 0.0 if warm_nodes >= working else AUTOSCALE_REACTION_MIN + dev.node_startup_min
    if dev.gpu == "cpu":
        startup_min = 0.0
    wall_s = startup_min * 60 + train_s + waves * task_s
    idle_tail = AUTOSCALE_IDLE_TAIL_MIN if dev.gpu != "cpu" else 0.0
    cold = max(0, working - warm_nodes)
    node_min = (busy_s + train_s) / 60 + cold * dev.node_startup_min + working * idle_tail
    price = dev.spot_usd_per_hour if spot else dev.usd_per_hour
    notes = []
    if cost.source == "estimate":
        notes.append(f"{dev.gpu} speed is an estimate (table dated {SPEED_TABLE_DATE}); "
                     "set SECONDS_PER_FRAME from a real run for a better figure")
    if spot:
        notes.append(f"Spot price assumed {int(SPOT_PRICE_FACTOR * 100)}% of pay-as-you-go; "
                     "preemptions add rework and time")
    if chunks >= chunk_cap(s):
        bound = f"MAX_CHUNKS={s.max_chunks}" if chunk_cap(s) == s.max_chunks else \
            f"one split task's {AZURE_SPLIT_MAX_CHUNKS} chunks (Azure Batch)"
        notes.append(f"{bound} bounds the task count: chunks are longer than the target")
    if task_s > 180 and not chunk_frames:
        notes.append("tasks run over 3 GPU-minutes: a failure or preemption redoes more work")
    return Estimate(
        frames=frames, width=width, height=height, model=model, vm_size=vm_size, gpu=dev.gpu,
        spot=spot, nodes=working, chunks=chunks, frames_per_chunk=fpc,
        seconds_per_frame=round(cost.frame_s, 4), spf_source=cost.source,
        task_seconds=round(task_s, 1), train_minutes=round(train_s / 60, 1),
        gpu_minutes=round((busy_s + train_s) / 60, 1), wall_minutes=round(wall_s / 60, 1),
        node_minutes=round(node_min, 1), usd_per_hour=price,
        cost_usd=round(node_min / 60 * price, 2), notes=notes)


def estimate_for_job(frames: int, width: int, height: int, model: str, settings: Settings,
                     *, chunk_frames: int | None = None,
                     train: bool | None = None) -> Estimate:
    """The estimate the job status shows: the configured pool (BATCH_VM_SIZE, BATCH_MAX_NODES,
    BATCH_SPOT) on the azure backend, this machine on the local one."""
    if settings.batch_backend == "azure":
        return estimate(frames, width, height, model, settings.batch_max_nodes,
                        settings.batch_vm_size, settings.batch_spot, settings=settings,
                        chunk_frames=chunk_frames, train=train)
    return estimate(frames, width, height, model, max(1, settings.local_batch_slots), "local",
                    False, settings=settings, chunk_frames=chunk_frames, train=train)


# --------------------------------------------------------------------------------------------
# Sets of chunks and the work left, in forms that stay small whatever the chunk count: what
# the orchestrator passes to its activities travels through orchestration history.


def chunk_ranges(indices: list[int] | set[int]) -> list[list[int]]:
    """Chunk indices as inclusive ranges: [0, 1, 2, 7] -> [[0, 2], [7, 7]]."""
    out: list[list[int]] = []
    for i in sorted(set(indices)):
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def expand_ranges(ranges: list[list[int]]) -> list[int]:
    """The indices of ``chunk_ranges`` output, in order."""
    return [i for lo, hi in ranges for i in range(int(lo), int(hi) + 1)]


def remaining_makespan(running_left: list[int], pending: list[int], slots: int) -> int:
    """Frames the busiest of ``slots`` task slots still has to score, when the running tasks
    keep their slots and the pending ones start in order as slots free up (list scheduling,
    as Batch hands queued tasks to free nodes; never fewer slots than running tasks). The
    ETA divides this by one task's speed: a last wave of fewer tasks than slots runs slower
    than the average rate would say."""
    loads = list(running_left) + [0] * max(0, slots - len(running_left))
    if not loads:
        loads = [0]
    heapq.heapify(loads)
    for work in pending:
        heapq.heappush(loads, heapq.heappop(loads) + work)
    return max(loads) if loads else 0
