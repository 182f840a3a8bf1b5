"""One job, one trace: the trigger, every stage, every activity and every chunk task of a real
job (the Function app on the local host, real Batch tasks) land in one trace whose id derives
from the job id; the task metrics are recorded; the status carries the task timeline."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry
from tests.conftest import Harness


@pytest.fixture(scope="module")
def otel() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    if trace.get_tracer_provider() is not provider:
        pytest.skip("another tracer provider was set earlier in this process")
    yield spans, reader


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                found.setdefault(m.name, []).extend(m.data.data_points)
    return found


def test_one_job_is_one_trace_covering_every_stage_activity_and_chunk_task(
        otel, make_harness, clips):
    exporter, reader = otel
    harness: Harness = make_harness(FRAMES_PER_CHUNK="16")
    name = harness.upload(clips["bbb_small"], style="swirl", model="fast")
    harness.functions.trigger_blob(name)
    job_id = harness.job_id_for(name)
    final, _ = harness.watch(job_id)
    assert final["state"] == "completed", final

    spans = [s for s in exporter.get_finished_spans() if s.attributes.get("job.id") == job_id]
    assert {s.context.trace_id for s in spans} == {telemetry.trace_id(job_id)}
    by_id = {s.context.span_id: s for s in spans}
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "job" and root.attributes["state"] == "completed"
    for s in spans:  # one tree: every parent is a span of the trace
        assert s is root or s.parent.span_id in by_id, s.name
    names = Counter(s.name for s in spans)
    assert names["trigger"] == 1 and by_id[_parent(spans, "trigger")].name == "job"

    stages = {s.name.removeprefix("stage "): s for s in spans if s.name.startswith("stage ")}
    assert set(stages) == {"probe", "scan", "split", "score", "stitch", "cleanup"}  # model trained
    assert all(s.parent.span_id == root.context.span_id for s in stages.values())
    expected = {"probe": "probe", "scan": "scan", "scan_state": "scan", "split": "split",
                "model_exists": "split", "submit": "score",
                "progress": "score", "stitch": "stitch", "stitch_state": "stitch",
                "publish": "stitch", "cleanup": "cleanup"}
    for activity, stage in expected.items():
        runs = [s for s in spans if s.name == f"activity {activity}"]
        assert runs, activity
        assert {by_id[s.parent.span_id].name for s in runs} == {f"stage {stage}"}

    (split_task,) = [s for s in spans if s.name.startswith("task split-")]
    assert by_id[split_task.parent.span_id].name == "stage split"  # the cut ran on the pool
    (scan_task,) = [s for s in spans if s.name.startswith("task scan-")]
    assert by_id[scan_task.parent.span_id].name == "stage scan"  # so did the packet scan
    (stitch_task,) = [s for s in spans if s.name.startswith("task stitch-")]
    assert by_id[stitch_task.parent.span_id].name == "stage stitch"  # the join too
    tasks = sorted((s for s in spans if s.name.startswith("task chunk-")), key=lambda s: s.name)
    assert [s.attributes["chunk"] for s in tasks] == [0, 1, 2]  # 40 frames in chunks of 16
    assert [s.attributes["frames"] for s in tasks] == [16, 16, 8]
    for s in tasks:
        assert by_id[s.parent.span_id].name == "stage score"
        assert s.attributes["task.state"] == "succeeded"
        assert s.attributes["batch.node"] == "localhost"
        assert s.attributes["batch.queue_wait_s"] >= 0 and s.attributes["batch.run_s"] > 0
        assert s.attributes["frames_per_s"] > 0
        assert s.start_time <= s.end_time

    points = _points(reader)
    assert sum(p.count for p in points["stylebatch.task.frames_per_second"]) >= 3
    assert sum(p.count for p in points["stylebatch.task.queue_wait"]) >= 3
    assert any(p.attributes == {"state": "completed"} and p.value >= 1
               for p in points["stylebatch.jobs"])

    # The job page's timeline: one row per chunk task, with its times and node.
    rows = final["tasks"]
    assert sorted(r[0] for r in rows) == [0, 1, 2]
    for _chunk, attempt, queued, started, ended, code, node in rows:
        assert attempt == 1 and code == "S" and node == "localhost"
        assert queued is not None and started is not None and ended is not None
        assert ended >= started
    assert len(json.dumps(final)) < 16 * 1024


def _parent(spans: list[Any], name: str) -> int:
    (span,) = [s for s in spans if s.name == name]
    return span.parent.span_id


def test_the_status_with_a_full_timeline_stays_well_under_16_kb():
    """The worst case: the longest name, every extra field full, the timeline at its cap with
    Azure-length node ids and long run times."""
    from functions import orchestrator
    from shared.jobs import job_status, new_job_request

    name = "n" * 900 + ".mp4"
    req = new_job_request(name, "0x8DC0FFEE", "s" * 40, "gatys", "2026-12-01T00:00:00Z")
    ledger: dict[str, Any] = {"scoring_started": "2026-12-01T00:00:00+00:00"}
    node = "tvmps_" + "0123456789abcdef" * 4 + "_d"
    for chunk in range(1000):  # far more attempts than the cap keeps
        orchestrator._record_timeline(ledger, {f"{chunk}:3": [
            "2026-12-01T00:00:01.123Z", "2026-12-01T01:00:02.456Z", "2026-12-01T23:59:59.999Z",
            node, "F"]})
    rows = orchestrator._task_rows(ledger)
    assert len(rows) == orchestrator.MAX_TIMELINE_ROWS
    extra = {"tasks": rows, "tasks_since": ledger["scoring_started"],
             "retries": [{"chunk": 999, "error": "e" * 300, "by": "orchestrator"}] * 10,
             "warnings": ["w" * 300] * 3,
             "scan": {"state": "succeeded", "attempt": 3, "frames_done": 10**6},
             "video": {"width": 7680, "height": 4320, "fps": "30000/1001", "duration_s": 3600.0,
                       "audio_streams": 8, "rotation": 270}}
    status = job_status(req, "scoring", updated="2026-12-01T23:59:59Z", frames_total=10**6,
                        frames_done=10**5, eta_seconds=99999, extra=extra)
    size = len(json.dumps(status))
    print(f"worst-case status: {size} bytes")
    assert size < 12 * 1024
