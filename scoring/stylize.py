"""The chunk task: decode a video chunk, stylize every frame, encode, restamp, write atomically.

After the model, the temporal stage (``scoring.temporal``) makes each frame agree with the
previous one along the source's motion, and before a 4:2:0 encode the chroma step
(``scoring.chroma``) softens the output's colour so its fine texture does not shimmer on the
subsampled colour grid. With ``lead_in`` (the previous chunk of the same video)
its last ``lead_in_frames`` frames are scored first and dropped: the model's state (gatys' warm
start) and the temporal stage arrive at the chunk's first frame already running, as they would
in one long chunk. A model whose output depends on its own history (gatys: each frame starts
from the previous stylized one) would still differ at the seam: the previous chunk's history is
not this one's. So a chunk that has a successor (``lead_out_frames``) also runs a second, fresh
copy of the model and temporal stage over its last frames — exactly what the successor's lead-in
computes on the same frames — and cross-fades its output into that copy's, reaching it on its
last frame; the successor carries on from there. Only the chunk's own frames are written, with
its own timestamps.

Pipelined producer/consumer: a reader thread decodes (ffmpeg) into a bounded queue, the main
thread runs the model on batches (on the GPU when there is one: pinned host memory, autocast,
channels_last, inference mode), and a writer thread feeds the encoder (ffmpeg), so the model
never waits for I/O. The encoded file is then given the input's exact per-frame timestamps
(``shared.video.restamp``) and moved into place with ``os.replace``: OUT either is complete or
does not exist.

Library entry point: ``stylize(StylizeConfig(...))``; the CLI is ``python -m scoring stylize``.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scoring.chroma import ChromaConfig, ChromaStep
from scoring.events import emit
from scoring.images import BadInputError, load_image, resize
from scoring.temporal import TemporalConfig, TemporalStage
from scoring.video_io import EncodeOptions, FrameReader, FrameWriter, subsamples_chroma, video_info
from shared.contract import EVENT_FRAME, EVENT_WARNING, SCORING, working_size
from shared.video import VideoError, frame_timestamps, restamp

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODELS = REPO_ROOT / "assets" / "models"


@dataclass
class StylizeConfig:
    input: str
    output: str
    style: str | None = None
    model: str = "gatys"  # gatys | fast
    model_file: str | None = None  # fast only; default assets/models/<style stem>.pt
    max_side: int = SCORING.max_side  # long side the model works at; 0 = full size
    steps: int = SCORING.gatys_steps  # gatys: L-BFGS evaluations for the first frame
    warm_steps: int = SCORING.gatys_warm_steps  # gatys: ... for each following frame
    warm_start: bool = True  # gatys: start each frame from the previous stylized one
    codec: str = SCORING.codec  # or "auto": h264_nvenc when usable, else libx264
    crf: int = SCORING.crf
    preset: str = SCORING.preset
    pix_fmt: str = SCORING.pix_fmt
    device: str = "auto"  # auto | cpu | cuda
    batch_size: int = 0  # fast: frames per batch; 0 = 8 on CUDA, 1 on CPU
    precision: str = "auto"  # fast: auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    compile: bool = False  # fast: torch.compile the network
    threads: int = 0  # torch CPU threads; 0 = all cores
    queue_frames: int = 32  # bound of each pipeline queue, in frames
    quiet: bool = False  # no per-frame events
    temporal: bool = True  # the temporal stage after the model
    temporal_weight: float | None = None  # None: the model's default (shared.contract)
    chroma_sigma: float = SCORING.chroma_sigma  # colour blur before a 4:2:0 encode; 0 = off
    lead_in: str | None = None  # the previous chunk: its last frames warm the model up
    lead_in_frames: int = 0  # how many of them (0 = none)
    lead_out_frames: int = 0  # a successor follows: cross-fade this many last frames into it


def cpu_threads(requested: int = 0) -> int:
    """Threads for torch on the CPU: the request (``--threads``), else all cores."""
    if requested > 0:
        return requested
    return max(1, os.cpu_count() or 1)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


class FrameModel:
    """Wraps a stylizer: uint8 batch [B, H, W, 3] (host) -> uint8 batch [B, H, W, 3] (host).

    Resizes to the working size and back on the model's device, so the output is exactly the
    input's size whatever the working size. The temporal stage, when set, runs at the working
    size right after the model, then the chroma step, when set.
    """

    def __init__(self, net: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                 max_side: int, min_side: int, dtype: torch.dtype | None,
                 channels_last: bool, temporal: TemporalStage | None = None,
                 chroma: ChromaStep | None = None):
        self.net, self.device, self.max_side, self.min_side = net, device, max_side, min_side
        self.dtype, self.channels_last = dtype, channels_last
        self.temporal, self.chroma = temporal, chroma

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        # batch: uint8 [B, H, W, 3] on the host (pinned on CUDA)
        b, h, w, _ = batch.shape
        with torch.inference_mode(mode=not isinstance(self.net, _NeedsGrad)):
            x = batch.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
            ww, wh = working_size(w, h, self.max_side, self.min_side)
            x = resize(x, (wh, ww))  # [B, 3, wh, ww]
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if self.dtype is not None and self.device.type == "cuda":
                with torch.autocast("cuda", dtype=self.dtype):
                    y = self.net(x)
            else:
                y = self.net(x)
            if self.temporal is not None:
                y = self.temporal(x, y.float())
            if self.chroma is not None:
                y = self.chroma(y.float(), (h, w))
            y = resize(y.float(), (h, w))  # [B, 3, H, W]
            assert y.shape == (b, 3, h, w), y.shape
            out = y.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1)
            return out.contiguous().cpu()


class _NeedsGrad:
    """Marker: the stylizer optimises (needs autograd), so no inference_mode around it."""


def build_model(cfg: StylizeConfig, device: torch.device, chroma: bool = False
                ) -> tuple[FrameModel, int]:
    """Return (frame model, batch size); ``chroma``: the encode subsamples colour, so the chroma
    step runs (unless ``cfg.chroma_sigma`` is 0). Raises BadInputError for unusable style/model
    files."""
    if cfg.chroma_sigma < 0:
        raise BadInputError(f"--chroma-sigma must not be negative, not {cfg.chroma_sigma}")
    step = ChromaStep(ChromaConfig(cfg.chroma_sigma)) if chroma and cfg.chroma_sigma > 0 else None
    if cfg.model == "gatys":
        from scoring.gatys import GatysConfig, GatysStylizer

        if not cfg.style:
            raise BadInputError("--style is required for the gatys model")
        style = load_image(cfg.style)
        gcfg = GatysConfig(steps=cfg.steps, warm_steps=cfg.warm_steps, warm_start=cfg.warm_start)

        class _Gatys(GatysStylizer, _NeedsGrad):
            pass

        net = _Gatys(style, gcfg, device)
        return FrameModel(net, device, cfg.max_side, 32, None, False, _temporal(cfg), step), 1
    if cfg.model == "fast":
        from scoring.transformer_net import load_model

        path = find_model_file(cfg)
        try:
            tnet = load_model(path, device)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise BadInputError(f"model file {path.name} cannot be loaded: {exc}") from exc
        cuda = device.type == "cuda"
        channels_last = cuda
        if channels_last:
            tnet = tnet.to(memory_format=torch.channels_last)
        fn: Callable[[torch.Tensor], torch.Tensor] = tnet
        if cfg.compile:
            fn = torch.compile(tnet, dynamic=False)
        precision = cfg.precision
        if precision == "auto":
            precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        batch = cfg.batch_size or (8 if cuda else 1)
        return FrameModel(fn, device, cfg.max_side, 16, dtype, channels_last,
                          _temporal(cfg), step), batch
    raise BadInputError(f"unknown model {cfg.model!r} (gatys or fast)")


def _temporal(cfg: StylizeConfig) -> TemporalStage | None:
    if not cfg.temporal:
        return None
    weight = cfg.temporal_weight
    if weight is None:
        weight = SCORING.temporal_weight_for(cfg.model)
    return TemporalStage(TemporalConfig(weight=weight))


def read_lead_in(cfg: StylizeConfig, width: int, height: int) -> list[np.ndarray]:
    """The last ``lead_in_frames`` frames of the previous chunk (none if it does not fit)."""
    if not cfg.lead_in or cfg.lead_in_frames <= 0:
        return []
    # A lead-in only smooths the seam: when it cannot be used the chunk is still scored, exactly.
    try:
        info = video_info(cfg.lead_in)
        if (info.width, info.height) != (width, height):
            raise VideoError(f"it is {info.width}x{info.height}, the chunk {width}x{height}")
        tail: collections.deque[np.ndarray] = collections.deque(maxlen=cfg.lead_in_frames)
        reader = FrameReader(cfg.lead_in, info, threads=cpu_threads(cfg.threads))
        try:
            tail.extend(reader)
        finally:
            reader.close()
    except VideoError as exc:
        emit(EVENT_WARNING, message=f"lead-in not used: {exc}")
        return []
    return list(tail)


class LeadOut:
    """Cross-fade a chunk's last frames from its model into a fresh copy started ``frames``
    before the end: the copy computes what the next chunk's lead-in computes on the same frames,
    so the last frame written equals the state the next chunk continues from."""

    def __init__(self, make_model: Callable[[], FrameModel], start: int, frames: int):
        self.make_model, self.start, self.frames = make_model, start, frames
        self.fresh: FrameModel | None = None

    def __call__(self, batch: torch.Tensor, result: torch.Tensor, first: int) -> torch.Tensor:
        """batch/result: uint8 [B, H, W, 3] (input, model output) of frames first.. first+B-1."""
        skip = max(0, self.start - first)
        if skip >= batch.shape[0]:
            return result
        if self.fresh is None:
            self.fresh = self.make_model()
        other = self.fresh(batch[skip:])
        idx = torch.arange(first + skip, first + batch.shape[0], dtype=torch.float32)
        r = ((idx - self.start + 1) / self.frames).clamp(0, 1).view(-1, 1, 1, 1)
        mixed = result[skip:].float() * (1 - r) + other.float() * r
        out = result.clone()
        out[skip:] = mixed.round_().clamp_(0, 255).to(torch.uint8)
        return out


def find_model_file(cfg: StylizeConfig) -> Path:
    if cfg.model_file:
        path = Path(cfg.model_file)
    elif cfg.style:
        path = BUNDLED_MODELS / f"{Path(cfg.style).stem}.pt"
    else:
        raise BadInputError("--model fast needs --model-file (or a --style with a bundled model)")
    if not path.is_file():
        raise BadInputError(f"model file not found: {path}")
    return path


_END = object()


class _Pipe:
    """Bounded queue whose put/get give up when another stage has failed."""

    def __init__(self, maxsize: int, failed: threading.Event):
        self.q: queue.Queue = queue.Queue(maxsize=maxsize)
        self.failed = failed

    def put(self, item: object) -> None:
        while True:
            if self.failed.is_set():
                raise _Aborted
            try:
                self.q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def get(self) -> object:
        while True:
            if self.failed.is_set():
                raise _Aborted
            try:
                return self.q.get(timeout=0.2)
            except queue.Empty:
                continue


class _Aborted(Exception):
    pass


def stylize(cfg: StylizeConfig) -> dict:
    """Run the chunk task. Returns the summary (``frames``, ``seconds``, ``fps``, ...).

    Raises BadInputError / VideoError(bad_input=True) for unusable input, anything else for
    failures worth a retry. OUT is written atomically; nothing is left behind on failure.
    """
    t0 = time.perf_counter()
    torch.set_num_threads(cpu_threads(cfg.threads))
    info = video_info(cfg.input)
    device = pick_device(cfg.device)
    chroma = subsamples_chroma(cfg.pix_fmt, info.width, info.height)
    model, batch_size = build_model(cfg, device, chroma)
    cuda = device.type == "cuda"
    lead_in = read_lead_in(cfg, info.width, info.height)
    lead_out = None
    n_out = min(cfg.lead_out_frames, info.frames)
    if n_out > 0 and getattr(model.net, "stateful", False):
        lead_out = LeadOut(lambda: build_model(cfg, device, chroma)[0], info.frames - n_out,
                           n_out)

    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_encoded = out.with_name(f".{out.name}.{os.getpid()}.enc.mkv")
    part = Path(f"{out}.part{out.suffix}")  # restamp's temp file
    opts = EncodeOptions(codec=cfg.codec, crf=cfg.crf, preset=cfg.preset, pix_fmt=cfg.pix_fmt,
                         threads=0 if cuda else cpu_threads(cfg.threads))
    reader = FrameReader(cfg.input, info, threads=0 if cuda else cpu_threads(cfg.threads))
    writer = FrameWriter(tmp_encoded, info.width, info.height, info.frame_rate, opts)
    failed = threading.Event()
    errors: list[BaseException] = []
    qcap = max(2, cfg.queue_frames // batch_size)
    q_in, q_out = _Pipe(qcap, failed), _Pipe(qcap, failed)
    model_seconds = [0.0]

    def read_stage() -> None:
        try:
            for i in range(0, len(lead_in), batch_size):
                q_in.put((_host_batch(lead_in[i:i + batch_size], cuda), True))
            frames: list[np.ndarray] = []
            for frame in reader:
                frames.append(frame)
                if len(frames) == batch_size:
                    q_in.put((_host_batch(frames, cuda), False))
                    frames = []
            if frames:
                q_in.put((_host_batch(frames, cuda), False))
            q_in.put(_END)
        except _Aborted:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
            failed.set()

    def write_stage() -> None:
        index = 0
        try:
            while True:
                item = q_out.get()
                if item is _END:
                    break
                frames, seconds = item
                for frame in frames.numpy():
                    writer.write(frame)
                    if not cfg.quiet:
                        emit(EVENT_FRAME, index=index, seconds=round(seconds, 4))
                    index += 1
        except _Aborted:
            pass
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            failed.set()

    threads = [threading.Thread(target=read_stage, name="decode", daemon=True),
               threading.Thread(target=write_stage, name="encode", daemon=True)]
    for t in threads:
        t.start()
    decoded = 0
    try:
        try:
            while True:
                item = q_in.get()
                if item is _END:
                    q_out.put(_END)
                    break
                batch, is_lead_in = item  # type: ignore[misc]
                tm = time.perf_counter()
                result = model(batch)
                dt = time.perf_counter() - tm
                model_seconds[0] += dt
                if is_lead_in:  # scored to warm the model and the temporal stage up; dropped
                    continue
                if lead_out is not None:
                    tm = time.perf_counter()
                    result = lead_out(batch, result, decoded)
                    model_seconds[0] += time.perf_counter() - tm
                decoded += batch.shape[0]
                q_out.put((result, dt / batch.shape[0]))
        except _Aborted:
            pass
        except BaseException as exc:
            errors.append(exc)
            failed.set()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        writer.close()
        if writer.count != reader.count or decoded != reader.count:
            raise VideoError(f"frame count changed: {reader.count} decoded, {decoded} stylized, "
                             f"{writer.count} encoded", bad_input=False)
        _, enc_pts = frame_timestamps(tmp_encoded)
        if len(enc_pts) != reader.count:
            raise VideoError(f"encoder wrote {len(enc_pts)} frames for {reader.count} decoded",
                             bad_input=False)
        n = restamp(tmp_encoded, cfg.input, out)
    except BaseException:
        failed.set()
        reader.close()
        writer.abort()
        for t in threads:
            t.join(timeout=5)
        part.unlink(missing_ok=True)
        raise
    finally:
        tmp_encoded.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    summary = {"frames": n, "seconds": round(seconds, 3), "fps": round(n / seconds, 3),
               "model_seconds": round(model_seconds[0], 3), "width": info.width,
               "height": info.height, "model": cfg.model, "device": str(device),
               "codec": writer.codec, "pix_fmt": writer.pix_fmt, "lead_in_frames": len(lead_in),
               "lead_out_frames": n_out if lead_out is not None else 0}
    if model.temporal is not None:
        summary["temporal_seconds"] = round(model.temporal.seconds, 3)
    if model.chroma is not None:
        summary["chroma_seconds"] = round(model.chroma.seconds, 3)
    cold = getattr(model.net, "cold_starts", None)
    if cold is not None:
        summary["cold_starts"] = cold  # gatys: first frame + scene cuts
    return summary


def _host_batch(frames: list[np.ndarray], pin: bool) -> torch.Tensor:
    """Stack uint8 frames into [B, H, W, 3]; pinned memory on CUDA for async copies."""
    t = torch.from_numpy(np.stack(frames))
    if pin:
        with contextlib.suppress(RuntimeError):
            t = t.pin_memory()
    return t
