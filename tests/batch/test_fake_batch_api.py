"""The loopback fake itself: Batch semantics the backend's design relies on, and REST shapes.

    .venv/bin/pytest tests/batch/test_fake_batch_api.py -q

These tests use the raw SDK (no stylebatch code), so they pin down what the fake promises.
"""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.request

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from tests.batch.fake_batch_api import API_VERSION, FakeBatchService, Outcome, parse_duration


@pytest.fixture
def client(fake: FakeBatchService) -> BatchClient:
    return BatchClient(fake.url, AzureNamedKeyCredential(fake.account, fake.key))


def _job(client: BatchClient, job_id: str = "j1", **kw) -> None:
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(
        pool_id="stylebatch-gpu"), **kw))


def _task(task_id: str, retries: int = 0) -> m.BatchTaskCreateOptions:
    return m.BatchTaskCreateOptions(id=task_id, command_line="python -m scoring stylize",
                                    constraints=m.BatchTaskConstraints(
                                        max_task_retry_count=retries))


def test_durations_as_the_sdk_writes_them():
    assert parse_duration("PT01H00M00S") == 3600
    assert parse_duration("P1DT2H3M4.5S") == 86400 + 7200 + 184.5
    assert parse_duration("PT0.5S") == 0.5
    with pytest.raises(ValueError):
        parse_duration("1 hour")


def test_batch_retries_every_nonzero_exit_even_bad_input(fake, client):
    """Why the backend sets maxTaskRetryCount=0: Batch would retry exit code 2 as well."""
    fake.outcome("t*", Outcome(exit_code=2))
    _job(client)
    client.create_tasks("j1", [_task("t1", retries=2)])
    fake.wait_until(lambda: fake.task_state("j1", "t1") == "completed")
    info = client.get_task("j1", "t1").execution_info
    assert info.retry_count == 2 and info.exit_code == 2 and info.result == "failure"


def test_errors_are_odata_with_batch_codes(fake, client):
    with pytest.raises(ResourceNotFoundError) as err:
        client.get_job("nope")
    assert err.value.error.code == "JobNotFound"
    _job(client)
    with pytest.raises(ResourceExistsError) as err:
        _job(client)
    assert err.value.error.code == "JobExists"
    result = client.create_task_collection("j1", m.BatchTaskGroup(task_values=[
        _task("a"), _task("a")]))
    statuses = [(r.status, r.error.code if r.error else None) for r in result.result_values]
    assert statuses == [("success", None), ("clienterror", "TaskExists")]
    with pytest.raises(HttpResponseError) as err:
        client.create_task_collection("j1", m.BatchTaskGroup(task_values=[
            _task(f"x{i}") for i in range(101)]))
    assert err.value.status_code == 400


def test_headers_and_listing(fake, client):
    headers = client.create_job(m.BatchJobCreateOptions(
        id="j2", pool_info=m.BatchPoolInfo(pool_id="stylebatch-gpu")),
        cls=lambda response, body, headers: headers)
    assert isinstance(headers["Last-Modified"], datetime.datetime)  # RFC 1123 on the wire
    assert headers["ETag"]
    fake.outcome("bad", Outcome(exit_code=1))
    fake.page_size = 2
    client.create_tasks("j2", [_task("ok1"), _task("ok2"), _task("bad")])
    fake.wait_until(lambda: all(fake.task_state("j2", t) == "completed"
                                for t in ("ok1", "ok2", "bad")))
    failed = list(client.list_tasks("j2", filter="state eq 'completed' and "
                                                 "executionInfo/result eq 'failure'"))
    assert [t.id for t in failed] == ["bad"]
    listed = list(client.list_tasks("j2", select=["id", "state"]))
    assert sorted(t.id for t in listed) == ["bad", "ok1", "ok2"]  # over two pages
    assert listed[0].execution_info is None  # $select honoured
    counts = client.get_job_task_counts("j2").task_counts
    assert (counts.completed, counts.succeeded, counts.failed) == (3, 2, 1)
    stdout = b"".join(client.download_task_file("j2", "ok1", "stdout.txt"))
    assert b'"event": "done"' in stdout


def test_requests_must_be_signed_and_versioned(fake):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{fake.url}/jobs/j1?api-version={API_VERSION}")
    assert err.value.code == 401
    body = json.loads(err.value.read())
    assert body["code"] == "MissingRequiredHeader" and body["message"]["lang"] == "en-US"
    old = BatchClient(fake.url, AzureNamedKeyCredential(fake.account, fake.key),
                      api_version="2020-01-01")
    with pytest.raises(HttpResponseError) as err2:
        old.get_job("j1")
    assert err2.value.status_code == 400
