"""JSON-line events: how scoring tasks report progress and errors to the Batch backends.

Progress goes to stdout, one JSON object a line (``{"event": "frame", ...}``, ``{"event": "step",
...}``, ``{"event": "done", ...}``); a failure ends with ``{"event": "error", "reason": ...,
"bad_input": ...}`` on stderr. The backends parse these lines, so keep the field names.

    python -c "from scoring.events import emit; emit('frame', index=0, seconds=0.5)"
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, TextIO

_lock = threading.Lock()


def emit(event: str, stream: TextIO | None = None, **fields: Any) -> None:
    """Write one JSON line ``{"event": event, **fields}`` and flush (thread-safe)."""
    line = json.dumps({"event": event, **fields}, separators=(", ", ": "))
    out = stream or sys.stdout
    with _lock:
        out.write(line + "\n")
        out.flush()


def emit_error(reason: str, bad_input: bool) -> None:
    emit("error", stream=sys.stderr, reason=reason, bad_input=bad_input)
