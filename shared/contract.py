"""The contract between the Function app and the Batch nodes, in one place.

What the app tells a node, and what a node tells back:

- **task command lines**: ``python -m scoring stylize …`` (one chunk), ``python -m scoring
  train …`` (a fast model), ``python -m scoring split …`` (the input cut into its chunks),
  ``python -m scoring stitch …`` (the stylized chunks joined into the output) and
  ``python -m scoring scan …`` (the input's full probe), built here (``StylizeTask.argv``,
  ``TrainTask.argv``, ``SplitTask.argv``, ``StitchTask.argv``, ``ScanTask.argv``) for
  ``shared/pipeline.py`` and parsed by ``scoring/cli.py`` with the options declared here
  (``add_stylize_arguments``, ``add_split_arguments``, ``add_stitch_arguments``,
  ``add_scan_arguments``);
- **exit codes**: 0 success, 2 bad input (never retried), anything else retryable;
- **events**: the JSON lines a task writes (progress on stdout, a last ``error`` line on
  stderr), their names, their format (``event_line``) and the one reader of them that both
  Batch backends use (``read_progress``, ``error_reason``);
- **defaults**: how a chunk is scored and encoded (``SCORING``) and what input is accepted
  (``LIMITS``); ``Settings``, the scoring configs and the video code start from these.

Standard library only: this module is imported on a Batch node (``scoring/``, with torch and
no Azure package) and in the Function app (Azure packages, no torch). Both get it because both
get ``shared/``: the nodes' application package holds ``scoring/`` and ``shared/``
(``infra/hooks/postprovision.sh``), and the app's deployment holds ``shared/`` but not
``scoring/`` (``.funcignore``).

    python -c "from shared.contract import StylizeTask as T; print(T('in.mkv', 'o.mkv').argv())"
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any

# --- exit codes ------------------------------------------------------------------------------
EXIT_OK = 0
EXIT_RETRY = 1  # a failure worth another try (any code but 0 and 2 is treated so)
EXIT_BAD_INPUT = 2  # the same input will fail the same way: never retried
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT

# --- events ----------------------------------------------------------------------------------
EVENT_FRAME = "frame"  # stdout: {"event": "frame", "index": i, "seconds": s}; i counts from 0
EVENT_STEP = "step"  # stdout, training: {"event": "step", "step": n, "steps": total, ...}
EVENT_RESUME = "resume"  # stdout, training resumed from a checkpoint at "step"
EVENT_WARNING = "warning"  # stdout: {"event": "warning", "message": ...}
EVENT_DONE = "done"  # stdout, last line of a success: the task's summary
EVENT_ERROR = "error"  # stderr, last JSON line of a failure: "reason", "bad_input"


def event_line(event: str, **fields: Any) -> str:
    """One event as the JSON line a task writes (without the newline)."""
    return json.dumps({"event": event, **fields}, separators=(", ", ": "))


def parse_event(line: bytes | str) -> dict[str, Any] | None:
    """The event on one line of a task's output; None for anything else (a traceback line,
    ffmpeg's chatter, a line cut short)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


def event_progress(event: dict[str, Any]) -> int | None:
    """Units done after this event: frames for a chunk task, training steps for a training
    task; None for an event that says nothing about progress."""
    try:
        if event["event"] == EVENT_FRAME:
            return int(event.get("index", -1)) + 1
        if event["event"] == EVENT_STEP:
            return int(event.get("step", 0))
    except (TypeError, ValueError):
        return None
    return None


def read_progress(data: bytes) -> tuple[int | None, int]:
    """(progress, bytes read) from a task's stdout: the progress of the last event that has one
    among the complete lines of ``data`` (None when none has), and how far those lines reach,
    so a reader that follows a growing file goes on from there."""
    end = data.rfind(b"\n") + 1
    progress = None
    for line in data[:end].splitlines():
        event = parse_event(line)
        if event is not None:
            units = event_progress(event)
            if units is not None:
                progress = units
    return progress, end


def error_reason(stderr: bytes | str) -> str | None:
    """The reason of the last ``error`` event on a task's stderr, or None."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    for line in reversed(text.splitlines()):
        event = parse_event(line.strip())
        if event is not None and event["event"] == EVENT_ERROR and event.get("reason"):
            return str(event["reason"])
    return None


# --- defaults --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoringDefaults:
    """How a chunk is scored and encoded unless a setting or a job's options say otherwise."""

    max_side: int = 320  # the model works at most at this long side; 0 = full size
    gatys_steps: int = 40  # L-BFGS evaluations for the first frame of a chunk (and scene cuts)
    gatys_warm_steps: int = 6  # ... for each following frame (warm start from the previous one)
    train_steps: int = 400  # fast-model training steps when a style has no model yet
    # Seams: a chunk first scores this many of the previous chunk's last frames and drops them.
    # 16: a chain that starts there has forgotten its start by the chunk's first frame
    # (0.85**16 ~ 0.07 for fast's temporal weight) and a gatys chain has converged.
    lead_in_frames: int = 16
    # The temporal stage: share of the previous output (warped along the source's motion) kept
    # on pixels where the source moved coherently, so a flicker decays as weight**k. gatys'
    # warm start already carries each frame on; fast paints every frame afresh.
    temporal_weight: float = 0.6  # gatys and any other model
    temporal_weight_fast: float = 0.85
    # The chroma step (scoring/chroma.py): before a 4:2:0/4:2:2 encode, the output's colour
    # (Cb, Cr) is blurred with a Gaussian of this sigma in output pixels, its brightness kept,
    # so fine colour texture does not shimmer as it moves across the subsampled chroma grid.
    chroma_sigma: float = 2.5  # 0 = off
    codec: str = "libx264"  # or "auto" on a node: h264_nvenc when usable, else libx264
    crf: int = 18
    preset: str = "medium"
    pix_fmt: str = "yuv420p"  # odd frame sizes fall back to yuv444p
    # Seams in the encode: each chunk is its own encode, so the next chunk opens on a keyframe
    # coded independently of this chunk's last frame, likely its coarsest (x264's mb-tree: no
    # frame refers to it). A chunk with a successor encodes its last ``seam_frames`` frames at
    # ``seam_quality`` times the bit rate (an x264 zone, about 6 QP finer at 2), so the pair
    # that straddles the seam compares two fine frames (README: flicker and seams).
    seam_frames: int = 2
    seam_quality: float = 2.0

    def temporal_weight_for(self, model: str) -> float:
        """The temporal stage's blend weight for a model (``fast`` has its own)."""
        return self.temporal_weight_fast if model == "fast" else self.temporal_weight


@dataclass(frozen=True)
class InputLimits:
    """Input beyond these fails its job at once, with the limit named, before compute is spent."""

    max_input_bytes: int = 8 * 1024**3
    max_duration_s: float = 3 * 3600.0
    max_width: int = 7680
    max_height: int = 4320
    max_frames: int = 500_000


SCORING = ScoringDefaults()
LIMITS = InputLimits()


def working_size(width: int, height: int, max_side: int, min_side: int = 1) -> tuple[int, int]:
    """(width, height) a node's model works at for a frame of ``width`` x ``height``: the long
    side at most ``max_side`` (0 = no limit), the short side at least ``min_side`` (tiny frames
    are upscaled so the model has something to see). The app's cost estimates use it too."""
    if width <= 0 or height <= 0:
        raise ValueError(f"bad frame size {width}x{height}")
    scale = 1.0
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
    if min(width, height) * scale < min_side:
        scale = min_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))

# --- command lines ---------------------------------------------------------------------------
SCORING_COMMAND = ("python", "-m", "scoring")  # "python": the node's Python (the launcher's venv)
MODEL_KINDS = ("gatys", "fast")  # --model: gatys (optimisation) or fast (a trained network)


@dataclass(frozen=True)
class StylizeTask:
    """``python -m scoring stylize``: stylize one chunk (see ``add_stylize_arguments``). An
    option left None is left off the command line: the node uses the contract's default."""

    input: str
    output: str
    style: str | None = None
    model: str = "gatys"
    model_file: str | None = None  # fast
    steps: int | None = None  # gatys
    warm_steps: int | None = None  # gatys
    max_side: int | None = None
    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    temporal: bool = True
    temporal_weight: float | None = None
    chroma_sigma: float | None = None
    lead_in: str | None = None
    lead_in_frames: int | None = None
    lead_out_frames: int = 0
    threads: int = 0

    def argv(self) -> list[str]:
        argv = [*SCORING_COMMAND, "stylize", "--input", self.input, "--output", self.output]
        options = {"--style": self.style, "--model": self.model, "--max-side": self.max_side,
                   "--codec": self.codec, "--crf": self.crf, "--preset": self.preset,
                   "--pix-fmt": self.pix_fmt, "--chroma-sigma": self.chroma_sigma}
        if self.lead_in is not None:
            options |= {"--lead-in": self.lead_in, "--lead-in-frames": self.lead_in_frames}
        if self.lead_out_frames:
            options["--lead-out-frames"] = self.lead_out_frames
        if self.model == "gatys":
            options |= {"--steps": self.steps, "--warm-steps": self.warm_steps}
        options |= {"--model-file": self.model_file, "--threads": self.threads or None}
        for flag, value in options.items():
            if value is not None:
                argv += [flag, str(value)]
        if not self.temporal:
            argv.append("--no-temporal")
        elif self.temporal_weight is not None:
            argv += ["--temporal-weight", str(self.temporal_weight)]
        return argv


@dataclass(frozen=True)
class TrainTask:
    """``python -m scoring train``: train a fast model for a style on some content."""

    style: str
    output: str
    content: list[str] = field(default_factory=list)
    steps: int = SCORING.train_steps
    log_every: int = 1  # a ``step`` event per step: the training task's progress
    threads: int = 0

    def argv(self) -> list[str]:
        argv = [*SCORING_COMMAND, "train", "--style", self.style, "--output", self.output,
                "--steps", str(self.steps), "--log-every", str(self.log_every)]
        for c in self.content:
            argv += ["--content", c]
        if self.threads:
            argv += ["--threads", str(self.threads)]
        return argv


@dataclass(frozen=True)
class SplitTask:
    """``python -m scoring split``: cut the input into its planned chunks, one pass (see
    ``add_split_arguments``). Progress: a ``frame`` event per finished chunk, its last frame's
    index."""

    input: str
    probe: str = "probe.json"  # the job's probe (per-frame timestamps): shared.video.Probe
    chunks: str = "chunks.json"  # the plan: {"mode": "copy"|"reencode", "chunks": [...]}
    out_dir: str = "chunks"

    def argv(self) -> list[str]:
        return [*SCORING_COMMAND, "split", "--input", self.input, "--probe", self.probe,
                "--chunks", self.chunks, "--out-dir", self.out_dir]

    def chunk_file(self, index: int) -> str:
        """Where the task writes chunk ``index`` (relative to its working directory)."""
        return f"{self.out_dir}/{index:05d}.mkv"


def add_split_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``python -m scoring split`` (``SplitTask``)."""
    ap.add_argument("--input", required=True, help="the uploaded video")
    ap.add_argument("--probe", required=True, help="its probe (JSON, per-frame timestamps)")
    ap.add_argument("--chunks", required=True,
                    help='the plan (JSON: {"mode": "copy"|"reencode", "chunks": [...]})')
    ap.add_argument("--out-dir", required=True,
                    help="where the chunk files go (<index:05d>.mkv)")


@dataclass(frozen=True)
class ScanTask:
    """``python -m scoring scan``: the input's full probe, one pass over its packets (see
    ``add_scan_arguments``): ``output`` is the JSON of ``shared.video.Probe`` (per-frame
    timestamps, clean cuts), what the planner and the split task read. Input beyond
    ``limits`` exits 2 with the limit named. Progress: a ``frame`` event every few thousand
    frames scanned, the index of the last."""

    input: str
    output: str = "probe.json"
    limits: InputLimits = LIMITS

    def argv(self) -> list[str]:
        lim = self.limits
        return [*SCORING_COMMAND, "scan", "--input", self.input, "--output", self.output,
                "--max-width", str(lim.max_width), "--max-height", str(lim.max_height),
                "--max-duration-s", f"{lim.max_duration_s:g}",
                "--max-frames", str(lim.max_frames)]


def add_scan_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``python -m scoring scan`` (``ScanTask``)."""
    ap.add_argument("--input", required=True, help="the uploaded video")
    ap.add_argument("--output", required=True,
                    help="where its probe goes (JSON: streams, per-frame timestamps, cuts)")
    ap.add_argument("--max-width", type=int, default=LIMITS.max_width)
    ap.add_argument("--max-height", type=int, default=LIMITS.max_height)
    ap.add_argument("--max-duration-s", type=float, default=LIMITS.max_duration_s)
    ap.add_argument("--max-frames", type=int, default=LIMITS.max_frames)


def scan_limits(args: argparse.Namespace) -> InputLimits:
    """The input limits a scan task was given (``add_scan_arguments``)."""
    return InputLimits(max_width=args.max_width, max_height=args.max_height,
                       max_duration_s=args.max_duration_s, max_frames=args.max_frames)


def with_threads(argv: list[str], threads: int) -> list[str]:
    """A scoring command line told to use ``threads`` CPU threads, unless it says already (the
    local backend shares one machine's cores among its slots this way)."""
    if (tuple(argv[:3]) != SCORING_COMMAND or argv[3:4] not in (["stylize"], ["train"])
            or "--threads" in argv or threads <= 0):
        return list(argv)
    return [*argv, "--threads", str(threads)]


def add_stylize_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``python -m scoring stylize`` that the app sets (``StylizeTask``)."""
    ap.add_argument("--input", required=True, help="input video chunk (any container ffmpeg reads)")
    ap.add_argument("--output", required=True, help="output video chunk, written atomically")
    ap.add_argument("--style", default=None, help="style image (required for gatys)")
    ap.add_argument("--model", choices=MODEL_KINDS, default="gatys",
                    help="gatys: optimisation per frame; fast: feed-forward network")
    ap.add_argument("--model-file", default=None,
                    help="fast model weights (.pt); default assets/models/<style stem>.pt")
    ap.add_argument("--max-side", type=int, default=SCORING.max_side,
                    help="long side the model works at, frames scaled back after; 0 = full size")
    ap.add_argument("--steps", type=int, default=SCORING.gatys_steps,
                    help="gatys: L-BFGS evaluations for the first frame (and scene cuts)")
    ap.add_argument("--warm-steps", type=int, default=SCORING.gatys_warm_steps,
                    help="gatys: L-BFGS evaluations for each following frame")
    ap.add_argument("--codec", default=SCORING.codec,
                    help="ffmpeg video encoder; 'auto' = h264_nvenc when usable, else libx264")
    ap.add_argument("--crf", type=int, default=SCORING.crf,
                    help="quality (x264/x265/vp9 crf; nvenc cq)")
    ap.add_argument("--preset", default=SCORING.preset, help="encoder preset")
    ap.add_argument("--pix-fmt", default=SCORING.pix_fmt,
                    help="output pixel format (odd frame sizes fall back to yuv444p)")
    ap.add_argument("--no-temporal", dest="temporal", action="store_false",
                    help="skip the temporal stage (each frame blended towards the previous "
                         "output warped by the source's motion; default: on)")
    ap.add_argument("--temporal-weight", type=float, default=None,
                    help="temporal stage: share of the warped previous output kept (default: "
                         f"{SCORING.temporal_weight_fast} for fast, {SCORING.temporal_weight} "
                         "for gatys)")
    ap.add_argument("--chroma-sigma", type=float, default=SCORING.chroma_sigma,
                    help="before a 4:2:0/4:2:2 encode, blur the output's colour (not its "
                         "brightness) with a Gaussian of this sigma in output pixels; 0 = off")
    ap.add_argument("--lead-in", default=None,
                    help="the previous chunk of the same video: its last frames are scored "
                         "first and dropped, so this chunk starts where that one ends")
    ap.add_argument("--lead-in-frames", type=int, default=SCORING.lead_in_frames,
                    help="how many of the lead-in's last frames to score")
    ap.add_argument("--lead-out-frames", type=int, default=0,
                    help="a next chunk follows with this lead-in: models with a history "
                         "(gatys) cross-fade this many last frames into what it will compute")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads; 0 = all cores")


@dataclass(frozen=True)
class StitchTask:
    """``python -m scoring stitch``: join the stylized chunks with the input's other streams
    into the output file and the before/after preview (see ``add_stitch_arguments``).
    Progress: a ``frame`` event per chunk joined, its last frame's index. The summary (frames,
    size, streams copied and dropped) goes to ``summary`` as JSON as well as to stdout."""

    input: str
    output: str  # result.<ext>: the muxer follows the extension (the input's container)
    probe: str = "probe.json"
    chunks: str = "chunks.json"
    stylized_dir: str = "stylized"  # <index:05d>.mkv, one per planned chunk
    preview: str = "preview.jpg"
    preview_source: str = "preview_source.mkv"  # the original chunk ``preview_chunk`` names
    summary: str = "stitch.json"

    def argv(self) -> list[str]:
        return [*SCORING_COMMAND, "stitch", "--input", self.input, "--probe", self.probe,
                "--chunks", self.chunks, "--stylized-dir", self.stylized_dir,
                "--output", self.output, "--preview", self.preview,
                "--preview-source", self.preview_source, "--summary", self.summary]

    def stylized_file(self, index: int) -> str:
        """Where the task finds stylized chunk ``index`` (relative to its working directory)."""
        return f"{self.stylized_dir}/{index:05d}.mkv"

    @staticmethod
    def preview_chunk(chunks: int) -> int:
        """The chunk whose first frame the preview shows, before and after: the middle one."""
        return chunks // 2


def add_stitch_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``python -m scoring stitch`` (``StitchTask``)."""
    ap.add_argument("--input", required=True, help="the uploaded video (its other streams)")
    ap.add_argument("--probe", required=True, help="its probe (JSON, per-frame timestamps)")
    ap.add_argument("--chunks", required=True, help="the chunk plan (JSON)")
    ap.add_argument("--stylized-dir", required=True,
                    help="the stylized chunks (<index:05d>.mkv, one per planned chunk)")
    ap.add_argument("--output", required=True,
                    help="the output video; its extension names the container")
    ap.add_argument("--preview", required=True, help="the before/after JPEG")
    ap.add_argument("--preview-source", required=True,
                    help="the original chunk the preview's 'before' comes from (the middle one)")
    ap.add_argument("--summary", default=None, help="also write the summary here (JSON)")
