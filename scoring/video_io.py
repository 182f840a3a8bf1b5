"""Frame-exact video I/O for the chunk task: size and rate, decode to raw RGB, encode from RGB.

Decoding and encoding run the ffmpeg CLI (imageio-ffmpeg's binary) as streaming subprocesses
over pipes, so memory stays flat whatever the chunk's length:

- decode: ``-noautorotate`` (frames stay in coded orientation; the stitch carries rotation as
  metadata) and ``-fps_mode passthrough`` (no frame dropped or duplicated), rgb24 out;
- encode: rgb24 in, the requested codec/crf/preset/pix_fmt out. The encoder's timestamps do not
  matter: the chunk task restamps the result with the input's (``shared.video.restamp``).

    python -m scoring.video_io info clip.mkv
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from shared.contract import SCORING
from shared.video import VideoError, ffmpeg_exe, probe

# 4:2:0 / 4:2:2 formats need even sizes with x264/x265/nvenc; odd sizes fall back to 4:4:4.
_SUBSAMPLED = ("yuv420", "yuvj420", "nv12", "yuv422", "yuvj422", "nv16")


@dataclass(frozen=True)
class VideoInfo:
    width: int  # coded width (no rotation applied)
    height: int
    frame_rate: Fraction  # nominal, only used to give the encoder a sensible rate
    frames: int  # from the container when known, else 0 (the decoder's count is authoritative)
    codec: str


def video_info(path: str | Path) -> VideoInfo:
    """The first video stream's size and rate of a local file (``shared.video.probe``).
    Raises VideoError(bad_input=True) with a readable reason."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"input file not found: {path}")
    p = probe(str(path))
    rate = Fraction(p.fps).limit_denominator(1_000_000)
    if rate <= 0 or rate > 1000:
        rate = Fraction(25)
    return VideoInfo(p.width, p.height, rate, p.frames, p.codec)


def _tail(data: bytes, lines: int = 4) -> str:
    return " | ".join(data.decode(errors="replace").strip().splitlines()[-lines:])


class _Ffmpeg:
    """One ffmpeg process whose stderr is drained on a thread, so a full pipe never stalls it
    and its last words are at hand when it fails."""

    def __init__(self, cmd: list[str], **popen: object):
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, **popen)  # type: ignore[call-overload]
        self.stderr = b""
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def wait(self) -> int:
        rc = self.proc.wait()
        self._drain.join()
        return rc


class FrameReader:
    """Iterate the decoded frames of a video as uint8 arrays [H, W, 3] (RGB), in display order."""

    def __init__(self, path: str | Path, info: VideoInfo, threads: int = 0):
        self.info = info
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
               "-threads", str(threads), "-noautorotate", "-i", str(path),
               "-map", "0:v:0", "-an", "-sn", "-dn", "-fps_mode", "passthrough",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        self._ff = _Ffmpeg(cmd, stdout=subprocess.PIPE, bufsize=0)
        self._proc = self._ff.proc
        self.count = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        w, h = self.info.width, self.info.height
        size = w * h * 3
        assert self._proc.stdout is not None
        while True:
            buf = _read_exact(self._proc.stdout, size)
            if buf is None:
                break
            self.count += 1
            yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
        rc = self._ff.wait()
        if rc != 0:
            raise VideoError(f"decoding failed after {self.count} frames: {_tail(self._ff.stderr)}",
                             bad_input=False)
        if self.count == 0:
            raise VideoError("the video stream has no decodable frames")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def _read_exact(stream, size: int) -> bytes | None:
    """Read exactly ``size`` bytes, or None at a clean end of stream."""
    chunks, got = [], 0
    while got < size:
        b = stream.read(size - got)
        if not b:
            if got == 0:
                return None
            raise VideoError(f"decoder output ended mid-frame ({got} of {size} bytes)",
                             bad_input=False)
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


@dataclass(frozen=True)
class EncodeOptions:
    codec: str = SCORING.codec  # or "auto": h264_nvenc when usable, else libx264
    crf: int = SCORING.crf
    preset: str = SCORING.preset
    pix_fmt: str = SCORING.pix_fmt
    threads: int = 0  # encoder threads, 0 = ffmpeg decides


# Whether this node's ffmpeg can use NVENC does not change while a task runs; asking costs an
# encoder start-up, so the answer is kept for the process (one task). Owned by nvenc_available.
_nvenc_ok: bool | None = None


def nvenc_available() -> bool:
    """Whether ffmpeg can open h264_nvenc here (needs an NVIDIA GPU + driver)."""
    global _nvenc_ok
    if _nvenc_ok is None:
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi",
               "-i", "color=c=black:s=256x144:d=0.1", "-c:v", "h264_nvenc", "-f", "null", "-"]
        try:
            _nvenc_ok = subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _nvenc_ok = False
    return _nvenc_ok


def output_pix_fmt(pix_fmt: str, width: int, height: int) -> str:
    """The pixel format a frame of this size is encoded in: odd sizes get 4:4:4."""
    if (width % 2 or height % 2) and pix_fmt.startswith(_SUBSAMPLED):
        return "yuv444p"  # chroma subsampling cannot represent an odd size exactly
    return pix_fmt


def subsamples_chroma(pix_fmt: str, width: int, height: int) -> bool:
    """Whether the encode of a frame this size keeps fewer colour samples than pixels."""
    return output_pix_fmt(pix_fmt, width, height).startswith(_SUBSAMPLED)


def resolve_codec(opts: EncodeOptions, width: int, height: int) -> tuple[str, str]:
    """(codec, pix_fmt) actually used: ``auto`` picks NVENC when usable; odd sizes get 4:4:4."""
    codec = opts.codec
    if codec == "auto":
        codec = "h264_nvenc" if nvenc_available() else "libx264"
    return codec, output_pix_fmt(opts.pix_fmt, width, height)


class FrameWriter:
    """Encode uint8 RGB frames [H, W, 3] to a video file with the ffmpeg CLI."""

    def __init__(self, path: str | Path, width: int, height: int, rate: Fraction,
                 opts: EncodeOptions):
        self.codec, self.pix_fmt = resolve_codec(opts, width, height)
        self.width, self.height = width, height
        quality: list[str]
        if self.codec.endswith("_nvenc"):
            quality = ["-rc", "vbr", "-cq", str(opts.crf), "-b:v", "0",
                       "-preset", opts.preset if opts.preset.startswith("p") else "p4"]
        elif self.codec in ("libx264", "libx265"):
            # NVENC preset names (p1..p7) mean nothing to x264/x265: use their default
            preset = "medium" if opts.preset[:1] == "p" and opts.preset[1:].isdigit() \
                else opts.preset
            quality = ["-crf", str(opts.crf), "-preset", preset]
        elif self.codec == "libvpx-vp9":
            quality = ["-crf", str(opts.crf), "-b:v", "0", "-row-mt", "1"]
        else:
            quality = []
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0",
               "-an", "-c:v", self.codec, *quality, "-pix_fmt", self.pix_fmt,
               "-threads", str(opts.threads), "-fps_mode", "passthrough", str(path)]
        self._ff = _Ffmpeg(cmd, stdin=subprocess.PIPE)
        self._proc = self._ff.proc
        self.count = 0

    def write(self, frame: np.ndarray) -> None:
        assert frame.shape == (self.height, self.width, 3) and frame.dtype == np.uint8, \
            (frame.shape, frame.dtype)
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError as exc:
            self._ff.wait()
            raise VideoError(f"encoder ({self.codec}) stopped: {_tail(self._ff.stderr)}",
                             bad_input=False) from exc
        self.count += 1

    def close(self) -> None:
        """Finish the file; raise VideoError if the encoder failed."""
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = self._ff.wait()
        if rc != 0:
            raise VideoError(f"encoder ({self.codec}) failed: {_tail(self._ff.stderr)}",
                             bad_input=False)

    def abort(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "info":
        print(video_info(sys.argv[2]))
    else:
        print(__doc__)
