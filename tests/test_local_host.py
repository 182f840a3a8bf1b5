"""The local host runs functions the way the worker does, over real HTTP and real Azurite.

The worker runs every ``async def`` function on one event loop: a blocking call inside one
stalls every other request of the app on that instance. The local host shares that loop, so a
handler that blocked it would show here as two requests that cannot overlap.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from shared.storage import BlobStore
from stylebatch import local_host
from tests.conftest import Harness


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_slow_requests_overlap_in_time(harness: Harness, monkeypatch):
    spans: list[tuple[float, float]] = []
    real_info = BlobStore.info

    def slow_info(self, container, name):
        start = time.monotonic()
        time.sleep(1.0)  # a slow storage round trip inside POST /api/jobs
        try:
            return real_info(self, container, name)
        finally:
            spans.append((start, time.monotonic()))

    monkeypatch.setattr(BlobStore, "info", slow_info)
    port = _free_port()
    harness.functions.serve_http(port)
    codes: list[int] = []

    def post(blob: str) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/jobs", method="POST",
                                     data=json.dumps({"blob": blob}).encode(),
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                codes.append(resp.status)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)

    threads = [threading.Thread(target=post, args=(f"missing-{i}.mp4",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert codes == [404, 404]  # both handled: neither blob exists
    (a_start, a_end), (b_start, b_end) = spans
    # Each request was inside its slow call while the other one was too.
    assert max(a_start, b_start) < min(a_end, b_end), spans


def test_blob_trigger_client_is_built_by_the_blob_extension_from_the_connection_setting(
        harness: Harness, clips, monkeypatch):
    name = harness.upload(clips["bbb_small"])
    harness.functions.trigger_blob(name)
    assert harness.status(harness.job_id_for(name))[0] == 200
    # The host hands over only the setting's name, and puts the setting in the worker's
    # environment as the real host does; the extension reads it from there itself, so without
    # it the trigger fails with the extension's own message, as in Azure.
    assert os.environ["STORAGE"] == harness.settings.storage_connection_string
    monkeypatch.setattr(local_host, "_expose_connection_setting", lambda connection: None)
    monkeypatch.delenv("STORAGE")
    with pytest.raises(ValueError, match="connection name STORAGE does not exist"):
        harness.functions.trigger_blob(harness.upload(clips["bbb_small"]))
