"""The host-less Durable host plays the extension faithfully: replay from the start, JSON
round-trips, timers on a virtual clock, non-determinism detected, continue-as-new, the real
DurableOrchestrationClient talking to it over loopback HTTP, and instances kept in storage
(Azurite) across restarts of the host."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import azure.durable_functions as df
import pytest

from stylebatch import worker
from stylebatch.durable_host import DurableHost, VirtualClock

app = df.DFApp()
calls = {"double": 0, "flaky_replays": 0}


@app.activity_trigger(input_name="x")
def double(x: int) -> int:
    calls["double"] += 1
    return 2 * x


@app.activity_trigger(input_name="x")
def explode(x: str) -> str:
    raise RuntimeError(f"boom: {x}")


@app.activity_trigger(input_name="payload")
def echo(payload: dict) -> dict:
    return {"got": payload, "type": type(payload).__name__}


gate = threading.Event()
gate_calls: list[int] = []


@app.activity_trigger(input_name="x")
def gated(x: int) -> int:
    gate_calls.append(x)
    gate.wait(60)
    return x + 1


@app.orchestration_trigger(context_name="context")
def gated_flow(context: df.DurableOrchestrationContext):
    a = yield context.call_activity("double", context.get_input())
    b = yield context.call_activity("gated", a)
    context.set_custom_status({"b": b})
    return b


@app.orchestration_trigger(context_name="context")
def summing(context: df.DurableOrchestrationContext):
    n = context.get_input()["n"]
    total = 0
    for i in range(n):
        total += yield context.call_activity("double", i)
        context.set_custom_status({"done": i + 1})
    yield context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    parallel = yield context.task_all([context.call_activity("double", 100),
                                       context.call_activity("double", 200)])
    return {"total": total, "parallel": parallel, "now": context.current_utc_datetime.isoformat()}


@app.orchestration_trigger(context_name="context")
def catching(context: df.DurableOrchestrationContext):
    try:
        yield context.call_activity("explode", "x")
    except Exception as exc:
        return f"caught: {exc}"


@app.orchestration_trigger(context_name="context")
def roundtrip(context: df.DurableOrchestrationContext):
    result = yield context.call_activity("echo", {"a": [1, 2], "b": None})
    return result


@app.orchestration_trigger(context_name="context")
def flaky(context: df.DurableOrchestrationContext):
    calls["flaky_replays"] += 1  # a side effect that changes what it schedules on replay
    yield context.call_activity("double", calls["flaky_replays"])
    yield context.call_activity("double", 0)
    return "never"


@app.orchestration_trigger(context_name="context")
def generations(context: df.DurableOrchestrationContext):
    state = context.get_input()
    yield context.call_activity("double", state["round"])
    if state["round"] < 3:
        context.continue_as_new({"round": state["round"] + 1})
        return None
    return {"rounds": state["round"]}


@pytest.fixture
def host():
    clock = VirtualClock()
    h = DurableHost(worker.load_app(__name__), clock=clock).serve_client_api().start_background()
    yield h
    h.stop()


def _client(host: DurableHost) -> df.DurableOrchestrationClient:
    return df.DurableOrchestrationClient(host.client_binding())


def test_replays_activities_timers_and_task_all(host: DurableHost):
    start = host.clock.now()
    client = _client(host)
    host.run_async(client.start_new("summing", "sum-1", {"n": 4}))
    inst = host.wait_for("sum-1", timeout=30)
    assert inst.status == "Completed", inst.output
    assert inst.output["total"] == 2 * (0 + 1 + 2 + 3)
    assert inst.output["parallel"] == [200, 400]
    assert inst.custom_status == {"done": 4}
    # The hour-long timer fired on the virtual clock, which the orchestrator saw advance.
    assert host.clock.now() - start >= timedelta(hours=1)
    # Every episode replayed the history from the start: far more events than scheduled.
    assert inst.episodes >= 6 and inst.replayed_events > 3 * len(inst.history)
    status = host.run_async(client.get_status("sum-1"))
    assert status.runtime_status.value == "Completed" and status.output == inst.output


def test_activity_failure_reaches_the_orchestrator_as_an_exception(host: DurableHost):
    host.run_async(_client(host).start_new("catching", "catch-1", None))
    inst = host.wait_for("catch-1", timeout=30)
    assert inst.status == "Completed" and "boom: x" in inst.output


def test_activity_input_and_output_round_trip_through_json(host: DurableHost):
    host.run_async(_client(host).start_new("roundtrip", "rt-1", None))
    inst = host.wait_for("rt-1", timeout=30)
    assert inst.output == {"got": {"a": [1, 2], "b": None}, "type": "dict"}


def test_non_determinism_is_detected(host: DurableHost):
    host.run_async(_client(host).start_new("flaky", "flaky-1", None))
    inst = host.wait_for("flaky-1", timeout=30)
    assert inst.status == "Failed"
    assert "non-deterministic" in inst.output


def test_continue_as_new_restarts_with_a_fresh_history(host: DurableHost):
    host.run_async(_client(host).start_new("generations", "gen-1", {"round": 1}))
    inst = host.wait_for("gen-1", timeout=30)
    assert inst.status == "Completed" and inst.output == {"rounds": 3}
    assert inst.generation == 2
    assert sum(1 for e in inst.history if e["EventType"] == 4) == 1  # only the last generation


def test_starting_a_running_instance_raises_and_a_finished_one_is_replaced(host: DurableHost):
    from stylebatch.durable_host import RealClock

    # On a real clock the orchestrator's hour-long timer keeps the instance running.
    real = DurableHost(worker.load_app(__name__), clock=RealClock())
    real.serve_client_api().start_background()
    try:
        client = _client(real)
        real.run_async(client.start_new("summing", "dup-1", {"n": 1}))
        with pytest.raises(Exception, match="already exists"):
            real.run_async(client.start_new("summing", "dup-1", {"n": 1}))
        real.run_async(client.terminate("dup-1", "test"))
        assert real.wait_for("dup-1", timeout=30).status == "Terminated"
    finally:
        real.stop()
    # A finished instance is replaced by a new start (virtual clock: it finishes at once).
    client = _client(host)
    host.run_async(client.start_new("summing", "dup-2", {"n": 1}))
    host.wait_for("dup-2", timeout=30)
    host.run_async(client.start_new("summing", "dup-2", {"n": 2}))
    assert host.wait_for("dup-2", timeout=30).output["total"] == 2


def test_unknown_instance_and_terminate(host: DurableHost):
    client = _client(host)
    status = host.run_async(client.get_status("nope"))
    assert status.runtime_status is None
    host.run_async(client.start_new("summing", "term-1", {"n": 50}))
    host.run_async(client.terminate("term-1", "user asked"))
    assert host.wait_for("term-1", timeout=30).status == "Terminated"


@pytest.fixture
def instance_store(azurite):
    from stylebatch.durable_store import BlobInstanceStore

    # A task hub of its own: this test sees only its instances.
    return BlobInstanceStore.from_connection_string(azurite.connection_string,
                                                    task_hub=f"t{uuid.uuid4().hex[:12]}")


def test_a_restarted_host_resumes_interrupted_instances_and_keeps_finished_ones(instance_store):
    gate.clear()
    gate_calls.clear()
    first = DurableHost(worker.load_app(__name__), clock=VirtualClock(), store=instance_store)
    first.serve_client_api().start_background()
    client = _client(first)
    first.run_async(client.start_new("summing", "done-1", {"n": 2}))
    assert first.wait_for("done-1", timeout=30).status == "Completed"
    doubles_before = calls["double"]
    first.run_async(client.start_new("gated_flow", "cut-1", 5))
    deadline = time.monotonic() + 30
    while not gate_calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gate_calls == [10]
    first.stop()  # the process "dies" while the gated activity runs

    second = DurableHost(worker.load_app(__name__), clock=VirtualClock(), store=instance_store)
    try:
        assert second.resumed == ["cut-1"]
        gate.set()
        second.serve_client_api().start_background()
        inst = second.wait_for("cut-1", timeout=30)
        assert inst.status == "Completed" and inst.output == 11
        assert inst.custom_status == {"b": 11}
        # The activity that was running when the host died ran again (at least once, as in
        # Azure); the one whose result was saved did not.
        assert gate_calls == [10, 10]
        assert calls["double"] - doubles_before == 1
        client = _client(second)
        listed = {s.instance_id: s.runtime_status.value
                  for s in second.run_async(client.get_status_by())}
        assert listed == {"done-1": "Completed", "cut-1": "Completed"}
        done = second.run_async(client.get_status("done-1"))
        assert done.output["total"] == 2 * (0 + 1)
    finally:
        second.stop()
    # A third start finds nothing to resume.
    third = DurableHost(worker.load_app(__name__), clock=VirtualClock(), store=instance_store)
    assert third.resumed == [] and set(third.instances) == {"done-1", "cut-1"}
    third.stop()


def test_terminated_and_replaced_instances_are_saved_too(instance_store):
    from stylebatch.durable_host import RealClock

    host = DurableHost(worker.load_app(__name__), clock=RealClock(), store=instance_store)
    host.serve_client_api().start_background()
    client = _client(host)
    host.run_async(client.start_new("summing", "t-1", {"n": 1}))  # waits an hour: running
    with pytest.raises(Exception, match="already exists"):
        host.run_async(client.start_new("summing", "t-1", {"n": 1}))
    host.run_async(client.terminate("t-1", "user asked"))
    assert host.wait_for("t-1", timeout=30).status == "Terminated"
    host.stop()
    again = DurableHost(worker.load_app(__name__), clock=VirtualClock(), store=instance_store)
    try:
        assert again.resumed == [] and again.instances["t-1"].status == "Terminated"
        again.serve_client_api().start_background()
        client = _client(again)
        again.run_async(client.start_new("summing", "t-1", {"n": 3}))  # replaces it
        assert again.wait_for("t-1", timeout=30).output["total"] == 6
    finally:
        again.stop()
    last = DurableHost(worker.load_app(__name__), store=instance_store)
    assert last.instances["t-1"].status == "Completed"
    last.stop()
