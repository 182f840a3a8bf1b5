"""The Azure Batch backend, driven through the real azure-batch SDK against the loopback fake.

    .venv/bin/pytest tests/batch/test_azure_backend.py -q

Storage is a real Azurite: resource files are downloaded and output files uploaded by the
fake's nodes with the SAS URLs (or node identity) the backend put in the tasks.
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from shared.batch import get_backend
from shared.batch.azure import (
    AzureBatchBackend,
    app_package_env_var,
    make_client,
    shell_word,
)
from shared.batch.base import TaskSpec, TaskState, chunk_task_id
from shared.contract import EXIT_BAD_INPUT
from tests.batch.conftest import azure_settings, chunk_spec
from tests.batch.fake_batch_api import FakeBatchService, Outcome, subprocess_executor, wait_for

REPO = Path(__file__).resolve().parents[2]


def states(backend: AzureBatchBackend, job: str) -> dict[str, TaskState]:
    return {t.id: t for t in backend.task_states(job)}


def wait_states(backend: AzureBatchBackend, job: str, want: dict[str, str]
                ) -> dict[str, TaskState]:
    """Poll the backend (as the monitor loop does) until the tasks reach the wanted states."""
    seen: dict[str, TaskState] = {}

    def reached() -> bool:
        seen.clear()
        seen.update(states(backend, job))
        return all(tid in seen and seen[tid].state == s for tid, s in want.items())
    wait_for(reached, what=f"tasks {want}")
    return seen


def sas_params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlparse(url).query).items()}


# --------------------------------------------------------------------------------------------
# what the job and its tasks carry


def test_job_and_tasks_carry_files_constraints_and_command(make_backend, fake, batch_store,
                                                           job_id):
    backend = make_backend(batch_app_version="1.2.0", task_max_wall_s=900)
    spec = chunk_spec(job_id, 3, store=batch_store, max_wall_s=900)
    backend.submit(job_id, [spec])

    job = fake.job(job_id)
    assert job["poolInfo"] == {"poolId": "stylebatch-gpu"}
    assert job["onAllTasksComplete"] == "noaction"  # retries are added after failures
    assert job["onTaskFailure"] == "noaction"
    assert job["constraints"]["maxTaskRetryCount"] == 0
    assert 23 * 3600 < _seconds(job["constraints"]["maxWallClockTime"]) <= 24 * 3600

    task = fake.task(job_id, "chunk-00003-a1")
    # Command line: the node launcher, the application package, the exact argv.
    assert task["commandLine"] == (
        "/bin/bash -c 'exec \"$AZ_BATCH_NODE_SHARED_DIR/stylebatch/run.sh\" --app "
        "AZ_BATCH_APP_PACKAGE_stylebatch_1_2_0 python -m scoring stylize --input chunk.mkv "
        "--output out.mkv --style style.jpg --model gatys --max-side 320 --steps 40 "
        "--warm-steps 6'")
    assert task["applicationPackageReferences"] == [
        {"applicationId": "stylebatch", "version": "1.2.0"}]
    assert task["userIdentity"] == {"autoUser": {"scope": "task", "elevationLevel": "nonadmin"}}
    assert {"name": "PYTHONUNBUFFERED", "value": "1"} in task["environmentSettings"]
    # Constraints: wall clock from the spec, no Batch retries (exit 2 must not be retried).
    assert _seconds(task["constraints"]["maxWallClockTime"]) == 900
    assert task["constraints"]["maxTaskRetryCount"] == 0
    assert _seconds(task["constraints"]["retentionTime"]) == 3600

    # Resource files: one read-only SAS per blob.
    by_path = {rf["filePath"]: rf for rf in task["resourceFiles"]}
    assert set(by_path) == {"chunk.mkv", "style.jpg"}
    chunk_url = by_path["chunk.mkv"]["httpUrl"]
    assert urllib.parse.urlparse(chunk_url).path.endswith(f"/work/{job_id}/chunks/00003.mkv")
    sas = sas_params(chunk_url)
    assert sas["sp"] == "r" and sas["sr"] == "b"
    assert "identityReference" not in by_path["chunk.mkv"]

    # Output files: result on success, std streams always, each to a create/write-only SAS
    # for that one blob.
    outs = {of["filePattern"]: of for of in task["outputFiles"]}
    assert set(outs) == {"out.mkv", "../stdout.txt", "../stderr.txt"}
    assert outs["out.mkv"]["uploadOptions"]["uploadCondition"] == "tasksuccess"
    assert outs["../stderr.txt"]["uploadOptions"]["uploadCondition"] == "taskcompletion"
    dest = outs["out.mkv"]["destination"]["container"]
    assert dest["path"] == f"{job_id}/stylized/00003.mkv"
    assert urllib.parse.urlparse(dest["containerUrl"]).path.endswith("/work")
    out_sas = sas_params(dest["containerUrl"])
    assert set(out_sas["sp"]) == {"c", "w"} and out_sas["sr"] == "b"
    assert sas_params(outs["../stdout.txt"]["destination"]["container"]["containerUrl"])["sig"] \
        != out_sas["sig"]
    assert outs["../stdout.txt"]["destination"]["container"]["path"] == \
        f"{job_id}/logs/chunk-00003-a1.stdout.txt"

    # And it really ran: downloaded with those SAS, uploaded its outputs with that SAS.
    final = wait_states(backend, job_id, {"chunk-00003-a1": "succeeded"})["chunk-00003-a1"]
    assert final.exit_code == 0 and final.error is None
    assert final.log == f"{job_id}/logs/chunk-00003-a1.stderr.txt"
    assert batch_store.read_bytes("work", f"{job_id}/stylized/00003.mkv") == b"chunk 3"
    stdout = batch_store.read_bytes("work", f"{job_id}/logs/chunk-00003-a1.stdout.txt")
    assert b'"event": "done"' in stdout


def _put(url: str) -> int:
    """HTTP status of a block-blob PUT to ``url`` (Azurite checks the SAS like Azure does)."""
    req = urllib.request.Request(url, data=b"evil", method="PUT", headers={
        "x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06", "Content-Length": "4"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_task_can_touch_only_its_own_blobs(make_backend, fake, batch_store, job_id):
    """Every URL a task carries works for its own blob only: its output SAS cannot write
    another job's chunk, another chunk of its job, the shared model or its own inputs, nor
    read anything; its input SAS cannot write. Azurite enforces SAS like Azure Storage."""
    other_job = f"{job_id}x"
    batch_store.write_bytes("work", f"{other_job}/stylized/00003.mkv", b"theirs")
    backend = make_backend(task_max_wall_s=900, sas_slack_minutes=10)
    spec = chunk_spec(job_id, 3, store=batch_store, max_wall_s=900)
    backend.submit(job_id, [spec])
    task = fake.task(job_id, "chunk-00003-a1")
    outs = {of["filePattern"]: of["destination"]["container"] for of in task["outputFiles"]}
    base, _, sas = outs["out.mkv"]["containerUrl"].partition("?")
    own = f"{base}/{job_id}/stylized/00003.mkv?{sas}"
    for victim in (f"{other_job}/stylized/00003.mkv",   # another job's result chunk
                   f"{job_id}/stylized/00004.mkv",       # another chunk of this job
                   f"{job_id}/chunks/00003.mkv",         # its own input
                   f"{job_id}/logs/chunk-00003-a1.stdout.txt"):  # its other output
        assert _put(f"{base}/{victim}?{sas}") == 403, victim
    assert _put(f"{base.rsplit('/', 1)[0]}/models/mosaic.pt?{sas}") == 403
    assert _get(own) == 403  # create/write only: not even its own output can be read back
    assert _put(own) == 201
    inputs = {rf["filePath"]: rf["httpUrl"] for rf in task["resourceFiles"]}
    assert _get(inputs["chunk.mkv"]) == 200
    assert _put(inputs["chunk.mkv"]) == 403
    assert batch_store.read_bytes("work", f"{other_job}/stylized/00003.mkv") == b"theirs"

    # Lifetime: the task's own limit plus the slack (and the 5-minute start skew), no more.
    params = sas_params(inputs["chunk.mkv"])
    st, se = (datetime.fromisoformat(params[k].replace("Z", "+00:00")) for k in ("st", "se"))
    assert timedelta(minutes=24) < se - st <= timedelta(minutes=30)
    assert "spr" not in params  # Azurite is plain http; see the https test below


def test_sas_demands_https_on_an_https_account():
    from shared.settings import AZURITE_ACCOUNT, AZURITE_KEY
    from shared.storage import BlobStore

    service = BlobServiceClient(f"https://{AZURITE_ACCOUNT}.blob.core.windows.net",
                                credential={"account_name": AZURITE_ACCOUNT,
                                            "account_key": AZURITE_KEY})
    store = BlobStore(service, account_key=AZURITE_KEY)
    for write in (False, True):
        params = sas_params("?" + store.blob_sas_token("work", "j/x.mkv", write=write))
        assert params["spr"] == "https" and params["sr"] == "b"


def test_no_task_names_the_pool_identity(make_backend, fake, batch_store, job_id):
    """The pool identity has no data role: no resource or output file may rely on it."""
    backend = make_backend()
    backend.submit(job_id, [chunk_spec(job_id, 0, store=batch_store)])
    task = fake.task(job_id, "chunk-00000-a1")
    for rf in task["resourceFiles"]:
        assert "identityReference" not in rf and "sig" in sas_params(rf["httpUrl"])
    for of in task["outputFiles"]:
        dest = of["destination"]["container"]
        assert "identityReference" not in dest and "sig" in sas_params(dest["containerUrl"])
    wait_states(backend, job_id, {"chunk-00000-a1": "succeeded"})


def test_command_line_runs_through_the_real_launcher(batch_azurite, batch_store, job_id,
                                                     tmp_path):
    """The command line as a Linux node runs it: split without a shell, bash, run.sh (the
    real one), the application package on PYTHONPATH. A stub scoring package echoes argv."""
    app = tmp_path / "app"
    (app / "scoring").mkdir(parents=True)
    (app / "scoring" / "__main__.py").write_text(
        "import json, os, sys, pathlib\n"
        "print(json.dumps({'event': 'frame', 'index': 0}))\n"
        "print(json.dumps({'argv': sys.argv[1:], 'cwd_files': sorted(os.listdir('.'))}))\n"
        "pathlib.Path('out.mkv').write_bytes(pathlib.Path('chunk.mkv').read_bytes()[::-1])\n")
    with FakeBatchService(nodes=1, executor=subprocess_executor) as fake:
        fake.app_packages["stylebatch"] = app
        for shared in fake.node_shared_dirs():
            (shared / "stylebatch").mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / "infra" / "batch" / "run.sh", shared / "stylebatch" / "run.sh")
        backend = AzureBatchBackend(azure_settings(fake, batch_azurite), batch_store)
        spec = chunk_spec(job_id, 0, store=batch_store,
                          extra_args=["--title", 'a "quoted" $HOME `x` \\ title'])
        spec.env["STYLEBATCH_PYTHON"] = sys.executable  # this machine has the dependencies
        backend.submit(job_id, [spec])
        done = wait_states(backend, job_id, {"chunk-00000-a1": "succeeded"})
        assert done["chunk-00000-a1"].exit_code == 0
    stdout = batch_store.read_bytes("work", f"{job_id}/logs/chunk-00000-a1.stdout.txt")
    report = json.loads(stdout.decode().splitlines()[-1])
    assert report["argv"] == spec.command[3:]  # after "python -m scoring"
    assert report["cwd_files"] == ["chunk.mkv", "style.jpg"]
    assert batch_store.read_bytes("work", f"{job_id}/stylized/00000.mkv") == b"0 knuhc"


def test_arguments_that_cannot_be_passed_are_refused(make_backend, job_id):
    backend = make_backend()
    spec = chunk_spec(job_id, 0, extra_args=["it's"])
    with pytest.raises(ValueError, match="cannot be passed"):
        backend.command_line(spec)
    assert shell_word("a b") == '"a b"' and shell_word("x.mkv") == "x.mkv"
    assert app_package_env_var("style-batch", "1.0") == "AZ_BATCH_APP_PACKAGE_style_batch_1_0"
    assert app_package_env_var("stylebatch") == "AZ_BATCH_APP_PACKAGE_stylebatch"
    plain = make_backend(batch_app_package="")
    assert plain.command_line(spec.__class__(id="t", command=["python", "-m", "scoring"])) == \
        "python -m scoring"


# --------------------------------------------------------------------------------------------
# monitoring


def test_progress_comes_from_task_counts_and_running_tasks(make_backend, fake, batch_store,
                                                           job_id):
    fake.nodes = fake.nodes[:2]  # two nodes: two tasks run, two wait
    fake.outcome("chunk-*", Outcome(hold=True, frames=5, frames_before_hold=2))
    backend = make_backend()
    specs = [chunk_spec(job_id, i, store=batch_store) for i in range(4)]
    backend.submit(job_id, specs)
    fake.wait_until(lambda: sum(fake.task_state(job_id, s.id) == "running" for s in specs) == 2,
                    what="two running tasks")
    now = states(backend, job_id)
    running = [t for t in now.values() if t.state == "running"]
    assert len(running) == 2 and {t.state for t in now.values()} == {"running", "pending"}
    assert all(t.frames_done == 2 for t in running)  # read from stdout.txt on the node
    assert backend.task_counts(job_id) == {"active": 2, "running": 2, "completed": 0,
                                           "succeeded": 0, "failed": 0}

    assert {t.id for t in running} == {specs[0].id, specs[1].id}  # in submission order
    for t in running:
        fake.release(job_id, t.id)
    fake.wait_until(lambda: sum(fake.task_state(job_id, s.id) == "completed"
                                for s in specs) == 2, what="two completed")
    counts_before = fake.calls("GET", r"/taskcounts$")
    now = states(backend, job_id)
    assert fake.calls("GET", r"/taskcounts$") == counts_before + 1
    assert sum(t.state == "succeeded" for t in now.values()) == 2
    # Nothing finished since: the next poll lists only the running tasks.
    fake.wait_until(lambda: sum(fake.task_state(job_id, s.id) == "running" for s in specs) == 2,
                    what="the other two running")
    lists_before = len(_task_lists(fake))
    now = states(backend, job_id)
    assert [q.get("$filter") for q in _task_lists(fake)[lists_before:]] == [
        "state eq 'preparing' or state eq 'running'"]
    assert {t.id for t in now.values() if t.state == "running"} == {s.id for s in specs[2:]}
    for s in specs[2:]:
        fake.release(job_id, s.id)
    final = wait_states(backend, job_id, {s.id: "succeeded" for s in specs})
    assert len(final) == 4


def _task_lists(fake) -> list[dict[str, str]]:
    return [q for (meth, p, q) in fake.requests if meth == "GET" and p.endswith("/tasks")]


def test_watching_a_big_job_costs_what_changes_not_what_the_job_holds(make_backend, fake,
                                                                       job_id):
    """Polls list the running tasks and fetch the ones that completed since, by id: over a
    job's life the task entries read are a few per task plus a few per poll, where listing
    every task at every poll would read (polls x tasks)."""
    n = 240
    fake.nodes = fake.nodes[:2] + [type(fake.nodes[0])(f"tvmps_x{i}") for i in range(6)]
    fake.time_scale = 0.5  # each task runs 0.5 s: a poll mostly sees it running
    fake.page_size = 100
    backend = make_backend(batch_progress_peek_tasks=0)
    specs = [TaskSpec(id=chunk_task_id(i, 1), command=["python", "-m", "scoring"], frames=3,
                      chunk=i) for i in range(n)]
    backend.submit(job_id, specs)
    listed = fake.listed_items
    polls = 0
    while True:
        now = states(backend, job_id)
        polls += 1
        assert len(now) == n
        if all(t.state == "succeeded" for t in now.values()):
            break
        assert polls < 10_000
    read = fake.listed_items - listed
    print(f"{n} tasks, {polls} polls: {read} task entries listed "
          f"(every task every poll: {n * polls})")
    # The first poll lists every task; later ones read the running tasks and the completed
    # ones once (a slow poll on a busy machine may list the unfinished ones now and then).
    assert read <= 6 * n + 10 * polls


def test_failing_chunk_is_retried_then_fails_the_job_with_its_reason(make_backend, fake,
                                                                     batch_store, job_id):
    """The orchestrator's retry rule, played against the backend: resubmit a failed chunk as
    a new attempt up to a bound, then fail the job with the chunk's reason."""
    fake.outcome("chunk-00001-*", Outcome(exit_code=1, reason="CUDA error: out of memory"))
    backend = make_backend()
    max_attempts = 3
    attempts = {0: 1, 1: 1}
    backend.submit(job_id, [chunk_spec(job_id, c, a, store=batch_store)
                            for c, a in attempts.items()])
    job_error = None
    while job_error is None:
        now = states(backend, job_id)
        current = {c: now.get(chunk_task_id(c, a)) for c, a in attempts.items()}
        if all(t is not None and t.state == "succeeded" for t in current.values()):
            break
        for c, t in current.items():
            if t is None or t.state != "failed":
                continue
            if t.bad_input or attempts[c] >= max_attempts:
                job_error = f"chunk {c}: {t.error}"
            else:
                attempts[c] += 1
                backend.submit(job_id, [chunk_spec(job_id, c, attempts[c], store=batch_store)])
    assert job_error == "chunk 1: CUDA error: out of memory"
    assert attempts == {0: 1, 1: 3}
    for a in (1, 2, 3):  # each attempt ran once: Batch itself never retried
        task = fake.task(job_id, chunk_task_id(1, a))
        assert task["executionInfo"]["retryCount"] == 0
        assert task["executionInfo"]["exitCode"] == 1
        assert task["executionInfo"]["failureInfo"]["code"] == "FailureExitCode"
    failed = states(backend, job_id)[chunk_task_id(1, 3)]
    assert failed.log == f"{job_id}/logs/chunk-00001-a3.stderr.txt"
    assert b"CUDA error" in batch_store.read_bytes("work", failed.log)


def test_bad_input_exit_2_is_not_retried(make_backend, fake, batch_store, job_id):
    fake.outcome("chunk-00000-a1", Outcome(exit_code=EXIT_BAD_INPUT,
                                           reason="not a video: no frames could be decoded"))
    backend = make_backend()
    backend.submit(job_id, [chunk_spec(job_id, 0, store=batch_store)])
    t = wait_states(backend, job_id, {"chunk-00000-a1": "failed"})["chunk-00000-a1"]
    assert t.bad_input and t.exit_code == 2
    assert t.error == "not a video: no frames could be decoded"
    assert fake.task(job_id, "chunk-00000-a1")["executionInfo"]["retryCount"] == 0


def test_timeout_reports_the_limit(make_backend, fake, batch_store, job_id):
    fake.outcome("chunk-00000-a1", Outcome(run_s=7200))  # two hours of work, one-hour limit
    backend = make_backend()
    backend.submit(job_id, [chunk_spec(job_id, 0, store=batch_store, max_wall_s=3600)])
    t = wait_states(backend, job_id, {"chunk-00000-a1": "failed"})["chunk-00000-a1"]
    assert t.error.startswith("timed out") and "3600 s" in t.error
    assert not t.bad_input
    assert batch_store.exists("work", f"{job_id}/logs/chunk-00000-a1.stderr.txt")
    assert not batch_store.exists("work", f"{job_id}/stylized/00000.mkv")


def test_missing_input_fails_without_retry(make_backend, fake, batch_store, job_id):
    backend = make_backend()
    backend.submit(job_id, [chunk_spec(job_id, 7)])  # chunk never uploaded
    t = wait_states(backend, job_id, {"chunk-00007-a1": "failed"})["chunk-00007-a1"]
    assert t.exit_code is None and "BlobNotFound" in t.error
    assert "could not download an input" in t.error


def test_preempted_task_is_requeued_and_finishes(make_backend, fake, batch_store, job_id):
    fake.outcome("chunk-00000-a1", Outcome(preempt=1))
    fake.outcome("chunk-00001-a1", Outcome(hold=True))
    backend = make_backend()
    backend.submit(job_id, [chunk_spec(job_id, i, store=batch_store) for i in range(2)])
    fake.wait_until(lambda: fake.task_state(job_id, "chunk-00001-a1") == "running",
                    what="chunk 1 running")
    fake.preempt(job_id, "chunk-00001-a1")  # its Spot node is taken back
    fake.wait_until(lambda: fake.task(job_id, "chunk-00001-a1")["executionInfo"]
                    ["requeueCount"] == 1, what="chunk 1 requeued")
    fake.wait_until(lambda: fake.task_state(job_id, "chunk-00001-a1") == "running",
                    what="chunk 1 running again")
    assert states(backend, job_id)["chunk-00001-a1"].state == "running"
    fake.release(job_id, "chunk-00001-a1")
    done = wait_states(backend, job_id, {"chunk-00000-a1": "succeeded",
                                         "chunk-00001-a1": "succeeded"})
    assert all(t.retries == 0 for t in done.values())  # preemption is not a retry
    assert fake.task(job_id, "chunk-00000-a1")["executionInfo"]["requeueCount"] == 1


# --------------------------------------------------------------------------------------------
# cancel, cleanup, scale and idempotency


def test_cancel_terminates_the_job_and_delete_removes_it(make_backend, fake, batch_store,
                                                         job_id):
    fake.nodes = fake.nodes[:1]
    fake.outcome("chunk-*", Outcome(hold=True))
    backend = make_backend()
    backend.submit(job_id, [chunk_spec(job_id, i, store=batch_store) for i in range(3)])
    fake.wait_until(lambda: fake.task_state(job_id, "chunk-00000-a1") == "running",
                    what="first task running")
    backend.cancel(job_id)
    fake.wait_until(lambda: fake.job(job_id)["state"] == "completed", what="job terminated")
    assert fake.calls("POST", rf"/jobs/{job_id}/terminate$") == 1
    now = states(backend, job_id)
    assert now["chunk-00000-a1"].state == "failed"  # killed
    assert "TaskEnded" in now["chunk-00000-a1"].error
    assert now["chunk-00001-a1"].state == "pending"  # never starts
    backend.cancel(job_id)  # twice is fine
    assert backend.wait_stopped(job_id, 30)

    backend.delete(job_id)
    fake.wait_until(lambda: fake.job(job_id) is None, what="job deleted")
    assert backend.task_states(job_id) == []
    backend.delete(job_id)  # gone already: fine
    backend.cancel(job_id)


def test_more_than_100_tasks_are_added_and_listed(make_backend, fake, batch_store, job_id):
    fake.page_size = 100  # list pages follow odata.nextLink
    backend = make_backend()
    specs = [chunk_spec(job_id, i) for i in range(250)]
    for s in specs:  # no files: this test is about adding and listing many tasks
        s.resource_files, s.output_files = [], []
    backend.submit(job_id, specs)
    assert fake.calls("POST", r"/addtaskcollection$") == 3  # 100 + 100 + 50
    assert len(fake.tasks[job_id]) == 250
    done = wait_states(backend, job_id, {s.id: "succeeded" for s in specs})
    assert len(done) == 250
    assert fake.calls("GET", r"/tasks$") >= 3  # pages of 100


def test_resubmission_is_idempotent(make_backend, fake, batch_store, job_id):
    fake.outcome("chunk-*", Outcome(hold=True))
    backend = make_backend()
    specs = [chunk_spec(job_id, i, store=batch_store) for i in range(3)]
    backend.submit(job_id, specs)
    backend.submit(job_id, specs)  # an activity retried after a crash
    backend.submit(job_id, specs[1:] + [chunk_spec(job_id, 3, store=batch_store)])
    assert sorted(fake.tasks[job_id]) == [chunk_task_id(i, 1) for i in range(4)]
    # A fresh process (another Functions instance) submitting again is just as harmless.
    other = make_backend()
    other.submit(job_id, specs)
    assert len(fake.tasks[job_id]) == 4
    assert len(states(other, job_id)) == 4


def test_sdk_retries_tasks_the_service_could_not_add(make_backend, fake, batch_store, job_id):
    fake.server_errors_on_add = 2
    backend = make_backend()
    backend.submit(job_id, [chunk_spec(job_id, i, store=batch_store) for i in range(5)])
    assert len(fake.tasks[job_id]) == 5


def test_unknown_job_has_no_tasks(make_backend):
    backend = make_backend()
    assert backend.task_states("never-submitted") == []
    assert backend.task_counts("never-submitted") is None


# --------------------------------------------------------------------------------------------
# connecting


def test_wrong_key_is_refused(make_backend, fake, job_id):
    backend = make_backend(batch_account_key="d3Jvbmcga2V5IHdyb25nIGtleQ==")
    with pytest.raises(HttpResponseError) as err:
        backend.submit(job_id, [chunk_spec(job_id, 0)])
    assert err.value.status_code == 403
    assert fake.job(job_id) is None


class _StaticToken:
    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        assert scopes == ("https://batch.core.windows.net//.default",)
        return AccessToken("token-for-tests", 2**31)


def test_entra_token_client(fake, batch_azurite, batch_store, job_id):
    fake.bearer_tokens.add("token-for-tests")
    settings = azure_settings(fake, batch_azurite, batch_account_key="")
    backend = AzureBatchBackend(settings, batch_store, credential=_StaticToken())
    backend.submit(job_id, [chunk_spec(job_id, 0, store=batch_store)])
    wait_states(backend, job_id, {"chunk-00000-a1": "succeeded"})
    with pytest.raises(ValueError, match="not https"):
        make_client(azure_settings(fake, batch_azurite, batch_account_key="",
                                   batch_account_url="http://example.com"), _StaticToken())
    with pytest.raises(ValueError, match="BATCH_ACCOUNT_URL"):
        make_client(azure_settings(fake, batch_azurite, batch_account_url=""))
    assert isinstance(make_client(azure_settings(fake, batch_azurite)), BatchClient)


def test_get_backend_returns_one_shared_instance(fake, batch_azurite, batch_store):
    settings = azure_settings(fake, batch_azurite)
    first = get_backend(settings, batch_store)
    assert isinstance(first, AzureBatchBackend)
    assert get_backend(settings, batch_store) is first


def _seconds(duration: str) -> float:
    from tests.batch.fake_batch_api import parse_duration

    return parse_duration(duration)
