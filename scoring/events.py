"""Writing JSON-line events: how a scoring task reports progress and errors to the backends.

Progress goes to stdout, one JSON object a line (``{"event": "frame", ...}``, ``{"event": "step",
...}``, ``{"event": "done", ...}``); a failure ends with ``{"event": "error", "reason": ...,
"bad_input": ...}`` on stderr. The names, the line format and the reader the backends use are
the app's contract with the nodes (``shared/contract.py``); this module only writes them.

    python -c "from scoring.events import emit; emit('frame', index=0, seconds=0.5)"
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from shared.contract import EVENT_ERROR, event_line

_lock = threading.Lock()


def emit(event: str, stream: TextIO | None = None, **fields: Any) -> None:
    """Write one JSON line ``{"event": event, **fields}`` and flush (thread-safe)."""
    line = event_line(event, **fields)
    out = stream or sys.stdout
    with _lock:
        out.write(line + "\n")
        out.flush()


def emit_error(reason: str, bad_input: bool) -> None:
    emit(EVENT_ERROR, stream=sys.stderr, reason=reason, bad_input=bad_input)


class BadInputError(Exception):
    """The task's input (video, style image, model file) is unusable: retrying will not help
    (``emit_error(..., bad_input=True)``, exit 2). Here, beside the error event, so that the
    command line can catch it without importing torch."""
