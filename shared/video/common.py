"""What every room of ``shared.video`` shares: the error type, the bundled ffmpeg, and opening
a path or a blob with libav.

A *source* is a local path or a ``shared.storage.BlobFile`` (a blob read through the SDK
with range requests, never held whole, conditional on one version of the blob).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias, Union

import av

from shared.procs import die_with_parent
from shared.redact import redact

if TYPE_CHECKING:
    from shared.storage import BlobFile

# PyAV's default (no Python log callback) on purpose: a callback deadlocks when a libav decoder
# thread logs while the GIL-holding thread closes that decoder. Errors still raise exceptions.

Source: TypeAlias = Union[str, "os.PathLike[str]", "BlobFile"]  # noqa: UP007 (forward ref)


class VideoError(Exception):
    """The video cannot be processed. ``bad_input`` is True when the file itself is at fault
    (retrying will not help) and the message is meant for a person."""

    def __init__(self, message: str, bad_input: bool = True):
        super().__init__(message)
        self.bad_input = bad_input


def libav_error(what: str, exc: av.error.FFmpegError, bad_input: bool = True) -> VideoError:
    """A VideoError saying ``what`` went wrong, with libav's reason in brackets."""
    return VideoError(f"{what} ({exc.strerror or exc})", bad_input=bad_input)


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str], stdin: int | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the bundled ffmpeg with ``args`` (``stdin``: a file descriptor it reads as
    ``pipe:0``); raise VideoError with its last stderr lines."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]
    proc = subprocess.run(cmd, stdin=stdin, capture_output=True, preexec_fn=die_with_parent())
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        # ffmpeg echoes the URLs it was given, a SAS signature included.
        raise VideoError(redact("ffmpeg failed: " + " | ".join(tail)), bad_input=False)
    return proc


def is_path(src: Source) -> bool:
    return isinstance(src, str | os.PathLike)


@contextmanager
def opened(src: Source, mode: str = "r", **kwargs: Any) -> Iterator[Any]:
    """Open a path or a re-openable source with libav; close everything on exit."""
    fileobj = None if is_path(src) or mode != "r" else src.open()  # type: ignore[union-attr]
    try:
        try:
            container = av.open(fileobj if fileobj is not None else str(src), mode, **kwargs)
        except av.error.InvalidDataError as exc:
            raise VideoError("not a video file, or a damaged one (no container format "
                             "recognised)") from exc
        except av.error.FFmpegError as exc:
            raise VideoError(f"cannot open the file: {exc.strerror or exc}") from exc
        with container:
            yield container
    finally:
        if fileobj is not None:
            fileobj.close()


def stream_at(container: Any, index: int) -> Any:
    """The stream whose index in the file is ``index`` (PyAV's ``streams[i]`` means otherwise)."""
    return next(s for s in container.streams if s.index == index)
