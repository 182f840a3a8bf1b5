"""Traces and metrics: one OpenTelemetry trace per job, whatever process emits its spans.

A job's trace id and its stage spans' ids derive from the job id (SHA-256), so the trigger,
every activity (in whichever worker runs it) and the final summary all join the same trace
without passing a context around. The orchestrator never emits a span (it is replayed); the
spans it cannot emit live — the job itself and each stage — are written once, at the end, by
the cleanup activity, from the stage times the orchestrator recorded. Batch task spans come
from the tasks' own timestamps (queued, started, ended, node).

    job ── trigger
        ├─ stage probe ── activity probe
        ├─ stage scan ── activity scan, activity scan_state …, task scan-1
        ├─ stage split ── activity split, activity model_exists
        ├─ stage train ── activity submit, activity progress …, task train-1
        ├─ stage score ── activity submit, activity progress …, task chunk-00000-1 …
        ├─ stage stitch ── activity stitch, stitch_state …, publish …, task stitch-1
        └─ stage cleanup ── activity cleanup

Exporters: Azure Monitor (App Insights) when APPLICATIONINSIGHTS_CONNECTION_STRING is set,
authenticated with the app's managed identity; a JSON-lines file (``configure_file``) for
`stylebatch serve`; nothing otherwise (the API's no-op tracer).

Metrics: ``stylebatch.jobs`` (count by final state), ``stylebatch.task.frames_per_second``,
``stylebatch.task.queue_wait`` (s), ``stylebatch.task.retries``.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

log = logging.getLogger(__name__)
SCOPE = "stylebatch"

# Which stage each activity belongs to (``train`` when it acts on the training task).
ACTIVITY_STAGE = {"probe": "probe", "scan": "scan", "scan_state": "scan",
                  "split": "split", "split_state": "split",
                  "model_exists": "split",
                  "submit": "score", "progress": "score", "stitch": "stitch",
                  "stitch_state": "stitch", "publish": "stitch", "publish_state": "stitch",
                  "cleanup": "cleanup"}
STAGES = ("probe", "scan", "split", "train", "score", "stitch", "cleanup")

_forced: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "stylebatch_forced_ids", default=None)
_configured = threading.Lock()
_done = False


# -- ids ------------------------------------------------------------------------------------

def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\n".join(("stylebatch-trace", *parts)).encode()).digest()


def trace_id(job_id: str) -> int:
    """The job's trace id (128 bits, never 0)."""
    return int.from_bytes(_digest(job_id)[:16], "big") or 1


def span_id(job_id: str, *key: str) -> int:
    """The id of a span known by name before it is written (the job, a stage)."""
    return int.from_bytes(_digest(job_id, *key)[:8], "big") or 1


def trace_id_hex(job_id: str) -> str:
    """As App Insights shows it (``operation_Id``)."""
    return f"{trace_id(job_id):032x}"


def _parent(job_id: str, *key: str) -> Any:
    ctx = SpanContext(trace_id(job_id), span_id(job_id, *key), is_remote=True,
                      trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(ctx))


class _JobIds(IdGenerator):
    """The SDK's id generator, except where a span's ids are derived from its job (SHA-256:
    as random as the SDK's own)."""

    def __init__(self, fallback: Any):
        self.fallback = fallback

    def is_trace_id_random(self) -> bool:
        return True

    def generate_trace_id(self) -> int:
        forced = _forced.get()
        return forced[0] if forced else self.fallback.generate_trace_id()

    def generate_span_id(self) -> int:
        forced = _forced.get()
        return forced[1] if forced else self.fallback.generate_span_id()


def _install_id_generator() -> None:
    provider = trace.get_tracer_provider()
    if hasattr(provider, "id_generator") and not isinstance(provider.id_generator, _JobIds):
        provider.id_generator = _JobIds(provider.id_generator)


# -- configuration ------------------------------------------------------------------------------

def configure() -> None:
    """Once per process: Azure Monitor when its connection string is set (managed identity),
    else leave whatever provider the process has (a file for `stylebatch serve`, tests)."""
    global _done
    with _configured:
        if _done:
            return
        _done = True
        if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
            from azure.monitor.opentelemetry import configure_azure_monitor

            # Logs of the pipeline's code (shared.*) go with the span they were written in.
            configure_azure_monitor(credential=_credential(), logger_name="shared")
        _install_id_generator()


def _credential() -> Any:
    """The app's managed identity: the user-assigned one that
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING names (``ClientId=…;Authorization=AAD``)."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    auth = os.environ.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "")
    parts = dict(p.split("=", 1) for p in auth.split(";") if "=" in p)
    if parts.get("ClientId"):
        return ManagedIdentityCredential(client_id=parts["ClientId"])
    return DefaultAzureCredential()


def configure_file(path: str | os.PathLike) -> None:
    """Spans as JSON lines in ``path`` (one object a line), for a local host."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult as Result

    class JsonLines(SpanExporter):
        def __init__(self) -> None:
            self._lock = threading.Lock()

        def export(self, spans: Any) -> Result:
            with self._lock, open(path, "a", encoding="utf-8") as fh:
                for s in spans:
                    fh.write(json.dumps(json.loads(s.to_json()), separators=(",", ":")) + "\n")
            return Result.SUCCESS

    provider = TracerProvider(resource=Resource.create({"service.name": SCOPE}))
    provider.add_span_processor(SimpleSpanProcessor(JsonLines()))
    trace.set_tracer_provider(provider)
    _install_id_generator()


def _tracer() -> trace.Tracer:
    configure()
    _install_id_generator()  # a provider set after configure() (tests) gets it too
    return trace.get_tracer(SCOPE)


# -- spans ------------------------------------------------------------------------------------

def _ns(iso: str | datetime | None) -> int | None:
    if iso is None:
        return None
    t = iso if isinstance(iso, datetime) else datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int(t.timestamp() * 1e9)


def stage_of(activity: str, payload: dict[str, Any]) -> str:
    if activity in ("submit", "progress") and int(payload.get("train_attempt") or 0):
        return "train"
    return ACTIVITY_STAGE.get(activity, activity)


@contextmanager
def activity_span(job_id: str, activity: str, stage: str) -> Iterator[Any]:
    """A live span around one activity run, under its stage's span."""
    with _tracer().start_as_current_span(f"activity {activity}",
                                         context=_parent(job_id, "stage", stage),
                                         attributes={"job.id": job_id, "stage": stage,
                                                     "activity": activity}) as span:
        yield span


@contextmanager
def trigger_span(job_id: str, blob: str) -> Iterator[Any]:
    """A live span around the trigger that starts the job."""
    with job_span(job_id, "trigger", kind=SpanKind.CONSUMER, blob=blob) as span:
        yield span


@contextmanager
def job_span(job_id: str, name: str, kind: SpanKind = SpanKind.INTERNAL,
             **attributes: Any) -> Iterator[Any]:
    """A live span directly under the job's (the trigger, a cancel)."""
    with _tracer().start_as_current_span(name, context=_parent(job_id, "job"), kind=kind,
                                         attributes={"job.id": job_id, **attributes}) as span:
        yield span


def _write(job_id: str, name: str, key: tuple[str, ...] | None, parent: tuple[str, ...] | None,
           start: Any, end: Any, attributes: dict[str, Any]) -> None:
    """One span with given times (and, for ``key``, the id derived from the job)."""
    tracer = _tracer()
    token = _forced.set((trace_id(job_id), span_id(job_id, *key)) if key else None)
    try:
        # The root has no parent: an empty context, never the caller's current span.
        context = _parent(job_id, *parent) if parent else Context()
        span = tracer.start_span(name, context=context, start_time=_ns(start),
                                 attributes={"job.id": job_id,
                                             **{k: v for k, v in attributes.items()
                                                if v is not None}})
    finally:
        _forced.reset(token)
    span.end(end_time=_ns(end))


def job_summary(job_id: str, state: str, stages: dict[str, list[str | None]], ended: str,
                tasks: list[dict[str, Any]], attributes: dict[str, Any] | None = None) -> None:
    """The spans only the end of a job can write: the job, its stages, its Batch tasks; and
    the job's metrics. ``tasks``: [{id, stage, chunk, attempt, state, created, started,
    ended, node, frames}] from the Batch service's own timestamps. Never raises: telemetry
    must not fail a job."""
    try:
        _job_summary(job_id, state, stages, ended, tasks, attributes or {})
    except Exception:
        log.exception("could not write the trace summary of job %s", job_id)


def _job_summary(job_id: str, state: str, stages: dict[str, list[str | None]], ended: str,
                 tasks: list[dict[str, Any]], attributes: dict[str, Any]) -> None:
    started = min((s[0] for s in stages.values() if s and s[0]), default=ended)
    _write(job_id, "job", ("job",), None, started, ended,
           {"state": state, **attributes})
    for stage, (begin, end) in stages.items():
        _write(job_id, f"stage {stage}", ("stage", stage), ("job",), begin, end or ended,
               {"stage": stage})
    meter = metrics.get_meter(SCOPE)
    fps_hist = meter.create_histogram("stylebatch.task.frames_per_second", unit="{frame}/s")
    wait_hist = meter.create_histogram("stylebatch.task.queue_wait", unit="s")
    retries = meter.create_counter("stylebatch.task.retries")
    for t in tasks:
        if not t.get("started"):
            continue
        end = t.get("ended") or ended
        wait = (_ns(t["started"]) - _ns(t.get("created") or t["started"])) / 1e9
        run = (_ns(end) - _ns(t["started"])) / 1e9
        fps = round(t["frames"] / run, 3) if t.get("frames") and run > 0 else None
        _write(job_id, f"task {t['id']}", None, ("stage", t["stage"]),
               t.get("created") or t["started"], end,
               {"batch.task": t["id"], "batch.node": t.get("node"), "chunk": t.get("chunk"),
                "attempt": t.get("attempt"), "task.state": t["state"],
                "batch.queue_wait_s": round(wait, 3), "batch.run_s": round(run, 3),
                "frames": t.get("frames"), "frames_per_s": fps})
        wait_hist.record(wait, {"stage": t["stage"]})
        if fps is not None:
            fps_hist.record(fps, {"stage": t["stage"]})
        if (t.get("attempt") or 1) > 1:
            retries.add(1, {"stage": t["stage"]})
    job_ended(state)


def job_ended(state: str) -> None:
    metrics.get_meter(SCOPE).create_counter("stylebatch.jobs").add(1, {"state": state})
