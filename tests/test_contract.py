"""The app<->node contract (shared/contract.py): it imports on both sides, and the command
lines the app builds are the ones the node's CLI parses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scoring.cli import _parser
from shared.contract import (
    LIMITS,
    SCORING,
    SCORING_COMMAND,
    InputLimits,
    ScanTask,
    SplitTask,
    StylizeTask,
    TrainTask,
    error_reason,
    read_progress,
    scan_limits,
    with_threads,
)
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def test_the_contract_imports_without_torch_or_azure():
    """The Function app has no torch and a node no Azure package: the module needs neither."""
    code = ("import sys, shared.contract, shared.settings; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'azure', 'numpy'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_a_task_that_scores_nothing_starts_without_torch():
    """Every task on a node parses its whole command line first; the split and other media
    tasks must not pay torch's import (seconds of CPU per task) for it."""
    code = ("import sys; from scoring.cli import _parser; "
            "_parser().parse_args(['split', '--input', 'a.mp4', '--probe', 'p.json', "
            "'--chunks', 'c.json', '--out-dir', 'o']); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def _parsed(argv: list[str]) -> dict:
    assert tuple(argv[:3]) == SCORING_COMMAND
    return vars(_parser().parse_args(argv[3:]))


def test_a_chunk_command_line_parses_back_to_what_the_app_asked():
    task = StylizeTask(input="chunk.mkv", output="out.mkv", style="style.jpg", model="gatys",
                       max_side=256, steps=12, warm_steps=3, codec="libvpx-vp9", crf=30,
                       preset="fast", pix_fmt="yuv444p", temporal=False, chroma_sigma=1.5,
                       lead_in="lead_in.mkv", lead_in_frames=5, lead_out_frames=5, threads=3)
    got = _parsed(task.argv())
    for name in ("input", "output", "style", "model", "max_side", "steps", "warm_steps", "codec",
                 "crf", "preset", "pix_fmt", "temporal", "chroma_sigma", "lead_in",
                 "lead_in_frames", "lead_out_frames", "threads"):
        assert got[name] == getattr(task, name), name
    fast = _parsed(StylizeTask(input="c.mkv", output="o.mkv", model="fast",
                               model_file="model.pt").argv())
    assert fast["model_file"] == "model.pt" and fast["lead_in"] is None and fast["temporal"]


def test_what_the_app_leaves_out_the_node_takes_from_the_contract():
    """An option the app does not set is left off the command line; the node's default for it
    is the contract's, and so is the app's own default setting."""
    argv = StylizeTask(input="c.mkv", output="o.mkv").argv()
    assert not {"--max-side", "--steps", "--codec", "--crf", "--lead-in-frames",
                "--chroma-sigma"} & set(argv)
    got = _parsed(argv)
    s = Settings()
    for name, default, setting in [
            ("max_side", SCORING.max_side, s.scoring_max_side),
            ("steps", SCORING.gatys_steps, s.gatys_steps),
            ("warm_steps", SCORING.gatys_warm_steps, s.gatys_warm_steps),
            ("codec", SCORING.codec, s.output_codec), ("crf", SCORING.crf, s.output_crf),
            ("preset", SCORING.preset, s.output_preset),
            ("pix_fmt", SCORING.pix_fmt, s.output_pix_fmt),
            ("chroma_sigma", SCORING.chroma_sigma, s.chroma_sigma),
            ("lead_in_frames", SCORING.lead_in_frames, s.lead_in_frames)]:
        assert got[name] == default == setting, name
    assert s.input_limits() == LIMITS


def test_a_training_command_line_parses_back():
    task = TrainTask(style="style.png", output="model.pt", content=["a.mkv", "b.mkv"], steps=9)
    got = _parsed(task.argv())
    assert (got["style"], got["output"], got["content"], got["steps"], got["log_every"]) == \
        ("style.png", "model.pt", ["a.mkv", "b.mkv"], 9, 1)


def test_a_split_command_line_parses_back_and_names_its_chunk_files():
    task = SplitTask(input="input.mp4")
    got = _parsed(task.argv())
    assert (got["command"], got["input"], got["probe"], got["chunks"], got["out_dir"]) == \
        ("split", "input.mp4", "probe.json", "chunks.json", "chunks")
    assert task.chunk_file(7) == "chunks/00007.mkv"  # what the pipeline uploads to chunk 7
    # Its progress is frames cut: a frame event per finished chunk, the chunk's last frame.
    events = b'{"event": "frame", "index": 249, "chunk": 0}\n' \
             b'{"event": "frame", "index": 499, "chunk": 1}\n'
    assert read_progress(events)[0] == 500


def test_a_scan_command_line_parses_back_with_the_input_limits():
    limits = InputLimits(max_width=1920, max_height=1080, max_duration_s=7200.5, max_frames=99)
    task = ScanTask(input="input.mkv", limits=limits)
    args = _parser().parse_args(task.argv()[3:])
    assert (args.command, args.input, args.output) == ("scan", "input.mkv", "probe.json")
    got = scan_limits(args)
    assert (got.max_width, got.max_height, got.max_duration_s, got.max_frames) == \
        (1920, 1080, 7200.5, 99)
    # Left off, the node applies the contract's own limits.
    bare = _parser().parse_args(["scan", "--input", "i.mp4", "--output", "p.json"])
    assert scan_limits(bare) == LIMITS
    assert with_threads(task.argv(), 4) == task.argv()  # a one-thread demux


def test_threads_are_added_to_scoring_commands_only_once():
    argv = StylizeTask(input="c.mkv", output="o.mkv").argv()
    assert _parsed(with_threads(argv, 4))["threads"] == 4
    assert with_threads(with_threads(argv, 4), 2) == with_threads(argv, 4)
    assert with_threads(["python", "emit.py"], 4) == ["python", "emit.py"]
    assert with_threads([*SCORING_COMMAND, "flicker", "v.mkv"], 4) == \
        [*SCORING_COMMAND, "flicker", "v.mkv"]


def test_progress_counts_complete_lines_only():
    data = b'{"event": "frame", "index": 0}\n{"event": "frame", "index": 1}\n{"event": "fr'
    assert read_progress(data) == (2, data.rfind(b"\n") + 1)
    assert read_progress(b"no events yet\n") == (None, 14)


def test_the_error_reason_is_the_last_error_event():
    stderr = ('Traceback (most recent call last):\n  ...\n'
              '{"event": "error", "reason": "first", "bad_input": false}\n'
              '{"event": "error", "reason": "the file is truncated", "bad_input": true}\n'
              'ffmpeg: exiting\n')
    assert error_reason(stderr) == "the file is truncated"
    assert error_reason(stderr.encode()) == "the file is truncated"
    assert error_reason("Killed\n") is None


def test_a_stitch_command_line_parses_back_without_torch_and_names_its_files():
    from shared.contract import StitchTask

    task = StitchTask(input="input.mkv", output="result.webm")
    got = _parsed(task.argv())
    assert (got["command"], got["input"], got["output"], got["stylized_dir"], got["preview"],
            got["preview_source"], got["summary"]) == \
        ("stitch", "input.mkv", "result.webm", "stylized", "preview.jpg",
         "preview_source.mkv", "stitch.json")
    assert task.stylized_file(7) == "stylized/00007.mkv"  # what the pipeline downloads there
    assert [StitchTask.preview_chunk(n) for n in (1, 2, 3, 10)] == [0, 1, 1, 5]
    code = ("import sys; from scoring.cli import _parser; from shared.contract import "
            "StitchTask; _parser().parse_args(StitchTask('i.mp4', 'r.mp4').argv()[3:]); "
            "import scoring.cli as c, shared.video; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
