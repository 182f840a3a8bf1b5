"""Child processes that die with their parent, and finding the ones an earlier run left behind.

Every process this app starts (Azurite, local Batch tasks, ffmpeg) is started with
``preexec_fn=die_with_parent()``: the Linux kernel sends it a signal when the thread that
started it goes away — a clean exit, a crash or ``kill -9`` of the parent alike — so nothing
outlives ``stylebatch serve``/``run``. Elsewhere (macOS, Windows) the hook does nothing and the
next start cleans up instead (``pid_alive`` and the pid files of ``stylebatch/azurite.py`` and
``stylebatch/tmp.py``).

The signal follows the *thread* that started the child: start long-lived children from a
thread that lives as long as they should (the main thread, a worker thread of a pool).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1

_libc = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:  # pragma: no cover - a Linux without a loadable libc
        _libc = None


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child receive ``sig`` when its parent dies (Linux); None
    where the kernel has no such feature. SIGTERM lets a child that saves state on the way out
    (Azurite) do so; SIGKILL suits workers whose results are worthless half done."""
    if _libc is None:
        return None
    prctl = _libc.prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return hook


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_cmdline(pid: int) -> list[str]:
    """A process's command line (Linux /proc); empty when unknown or gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def private_tempdir(prefix: str) -> str:
    """A new temporary folder named ``<prefix>-<pid>-…`` for this process; folders of the same
    prefix whose process is gone (killed before it could clean up) are removed first."""
    import shutil
    import tempfile

    root = tempfile.gettempdir()
    for entry in os.scandir(root):
        head, _, rest = entry.name.partition(prefix + "-")
        pid = rest.split("-", 1)[0]
        if head or not pid.isdigit() or not entry.is_dir(follow_symlinks=False):
            continue
        if int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(entry.path, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=root)
