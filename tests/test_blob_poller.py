"""The blob poller (Event Grid's local stand-in) across restarts of `serve`: blobs uploaded
while it was down get their jobs, a blob version whose job exists starts nothing, and on the
very first start blobs already in `incoming` start nothing unless asked."""

from __future__ import annotations

import time
import uuid

from stylebatch.durable_store import BlobInstanceStore
from stylebatch.local_host import BlobPoller
from tests.conftest import Harness


def test_poller_catches_up_after_downtime_and_never_starts_a_job_twice(harness: Harness,
                                                                       azurite, tmp_path):
    state = BlobInstanceStore.from_connection_string(azurite.connection_string,
                                                     task_hub=f"p{uuid.uuid4().hex[:12]}")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video " * 100)  # each job fails at probe within a second
    # Last-Modified has one-second resolution: space the uploads out beyond the poller's slack.
    gap = BlobPoller.SLACK.total_seconds() + 0.5
    others = {(b.name, b.etag) for b in harness.store.list("incoming")}  # earlier tests' blobs

    old = harness.upload(junk)
    time.sleep(gap)
    first = BlobPoller(harness.functions, state=state)  # the very first start
    assert first.poll_once() == 0  # `old` was there before: like a new Event Grid subscription
    new1 = harness.upload(junk)
    assert first.poll_once() == 1
    job1 = harness.durable.instances[harness.job_id_for(new1)]

    # serve is down; an upload arrives; serve starts again.
    time.sleep(gap)
    new2 = harness.upload(junk)
    second = BlobPoller(harness.functions, state=state)
    second.poll_once()
    assert harness.job_id_for(new2) in harness.durable.instances
    assert harness.durable.instances[harness.job_id_for(new1)] is job1  # not started again
    assert harness.job_id_for(old) not in harness.durable.instances
    for name in (new1, new2):
        final, _ = harness.watch(harness.job_id_for(name), timeout=60)
        assert final["state"] == "failed"

    # --process-existing: a blob without a job gets one; one whose job ended keeps it.
    third = BlobPoller(harness.functions, include_existing=True, state=state)
    third.seen |= others  # blobs other tests left in the shared Azurite are not ours to start
    third.poll_once()
    assert harness.job_id_for(old) in harness.durable.instances
    assert harness.durable.instances[harness.job_id_for(new1)] is job1
    assert harness.watch(harness.job_id_for(old), timeout=60)[0]["state"] == "failed"
