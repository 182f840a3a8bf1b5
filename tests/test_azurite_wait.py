"""Waiting for Azurite to answer (stylebatch/azurite.py): retried with backoff, then a clear
error. Real sockets on loopback; no Azurite needed."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stylebatch.azurite import NotAnswering, free_port, wait_until_answers


class _Forbidden(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # what Azurite answers a request without auth
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_port_nobody_listens_on_is_retried_then_given_up_with_the_reason():
    port = free_port()
    with pytest.raises(NotAnswering) as err:
        wait_until_answers(port, timeout=1.0)
    text = str(err.value)
    assert f"127.0.0.1:{port}" in text and "not within 1 s" in text
    tries = int(text.split(" tries")[0].rsplit(" ", 1)[-1])
    assert tries > 1  # retried, not given up after one refusal
    assert "ConnectionRefusedError" in text


def test_a_server_that_comes_up_late_is_waited_for():
    # The port is bound (so nobody else takes it) but not listening: connections are refused
    # until the server starts listening on it.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = ThreadingHTTPServer(("127.0.0.1", port), _Forbidden, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    started = threading.Event()

    def listen_later() -> None:
        started.wait()
        server.server_activate()
        server.serve_forever()

    thread = threading.Thread(target=listen_later, daemon=True)
    thread.start()
    try:
        tries = [0]

        def alive() -> bool:
            tries[0] += 1
            if tries[0] == 3:
                started.set()  # comes up after a few refused tries
            return True

        assert wait_until_answers(port, timeout=30.0, alive=alive) > 1
    finally:
        started.set()
        server.shutdown()
        server.server_close()


def test_a_process_that_died_is_not_waited_for():
    with pytest.raises(NotAnswering, match="its process ended; 1 tries"):
        wait_until_answers(free_port(), timeout=30.0, alive=lambda: False)
