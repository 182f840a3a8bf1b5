"""Serve a blob to the ffmpeg CLI: a loopback HTTP server with range requests over a
``BlobFile``, for as long as a ``with`` block lasts."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from shared.video.common import Source


@contextmanager
def served(src: Source) -> Iterator[str]:
    """What the ffmpeg CLI reads for ``src``: a path as it is; a re-openable source (a blob)
    through a loopback HTTP server with range requests, for as long as the block lasts.

    Not a SAS URL: ffmpeg's URLs hold at most 4096 bytes, which a long non-Latin blob name
    (9 bytes a character once percent-encoded) overflows, and every read goes through
    ``src.open()`` — for a blob, conditional on the job's version of it.
    """
    if isinstance(src, str | os.PathLike):
        yield str(src)
        return
    with src.open() as fh:
        size = fh.seek(0, os.SEEK_END)
    suffix = Path(str(getattr(src, "name", ""))).suffix.lower()
    path = f"/input{suffix if suffix.isascii() and suffix[1:].isalnum() else ''}"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # ffmpeg's errors say what went wrong
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            if self.path != path:
                self.send_error(404)
                return
            start, end = 0, size - 1
            ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if ranged:
                start = int(ranged[1])
                end = min(size - 1, int(ranged[2])) if ranged[2] else size - 1
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            try:
                reader = src.open()  # per request: readers are not shared between threads
            except Exception as exc:  # e.g. the blob was replaced: ffmpeg fails, the caller
                self.send_error(502, type(exc).__name__)  # finds out why
                return
            with reader:
                self.send_response(206 if ranged else 200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(end - start + 1))
                if ranged:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if not body:
                    return
                reader.seek(start)
                left = end - start + 1
                try:
                    while left > 0:
                        data = reader.read(min(left, 1024 * 1024))
                        if not data:
                            break
                        self.wfile.write(data)
                        left -= len(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # ffmpeg seeks by dropping the connection
                except Exception:
                    self.close_connection = True  # a short body: ffmpeg sees the error

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="ffmpeg-input")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        server.shutdown()
        server.server_close()

