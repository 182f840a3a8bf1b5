"""The API knows who is calling: each job records its caller; a caller reads, lists and
cancels only its own jobs (an admin all of them); a caller has a bounded number of unfinished
jobs; no caller, no answer (401). Driven through the local host's HTTP with the headers App
Service authentication sets in Azure (shared/callers.py)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from shared.callers import NotSignedIn, caller_from_headers, principal_headers
from shared.settings import Settings
from stylebatch.azurite import free_port

ALICE = "11111111-aaaa-4aaa-8aaa-111111111111"
BOB = "22222222-bbbb-4bbb-8bbb-222222222222"
ADMIN = "33333333-cccc-4ccc-8ccc-333333333333"


def as_(who: str, *roles: str) -> dict[str, str]:
    return principal_headers(who, name=who[:8], roles=roles)


# --- reading the principal ----------------------------------------------------------------------

def test_the_principal_headers_name_the_caller_and_its_roles():
    s = Settings(admin_role="stylebatch.admin")
    alice = caller_from_headers(as_(ALICE), s)
    assert alice.id == ALICE and not alice.admin
    admin = caller_from_headers(as_(ADMIN, "reader", "stylebatch.admin"), s)
    assert admin.id == ADMIN and admin.admin
    # Only the encoded principal (no id header): the object id comes from its claims.
    only = {"X-MS-CLIENT-PRINCIPAL": as_(BOB)["X-MS-CLIENT-PRINCIPAL"]}
    assert caller_from_headers(only, s).id == BOB


@pytest.mark.parametrize("headers", [
    {},  # nobody, and no local identity configured
    {"X-MS-CLIENT-PRINCIPAL": "%%% not base64 %%%"},
    {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(b"[1, 2]").decode()},
    {"X-MS-CLIENT-PRINCIPAL-ID": "../../etc/passwd"},
    {"X-MS-CLIENT-PRINCIPAL-ID": "a" * 300},
])
def test_no_usable_caller_is_refused(headers):
    with pytest.raises(NotSignedIn):
        caller_from_headers(headers, Settings())


def test_locally_requests_without_a_principal_run_as_the_local_identity():
    me = caller_from_headers({}, Settings(local_caller="local-dev"))
    assert me.id == "local-dev" and me.admin
    # A principal header still wins: a local client can act as someone else.
    assert caller_from_headers(as_(BOB), Settings(local_caller="local-dev")).id == BOB


# --- through the local host ---------------------------------------------------------------------

def _call(h, method, path, who=None, body=None):
    resp = h.functions.http(method, path, body, headers=who)
    return resp.status_code, json.loads(resp.get_body() or b"null")


def test_a_caller_cannot_read_or_cancel_another_callers_job(make_harness, clips, held):
    h = make_harness(LOCAL_CALLER="", MAX_ACTIVE_JOBS_PER_CALLER="1",
                     ADMIN_ROLE="stylebatch.admin")
    clip = h.upload(clips["bbb_small"], "shared-clip.mp4")
    other = h.upload(clips["bbb_small"], "other-clip.mp4")
    admin = as_(ADMIN, "stylebatch.admin")

    # No caller: nothing at all.
    assert _call(h, "GET", "/api/jobs")[0] == 401
    assert _call(h, "POST", "/api/jobs", body={"blob": clip})[0] == 401

    code, started = _call(h, "POST", "/api/jobs", as_(ALICE), {"blob": clip})
    assert code == 202
    job = started["id"]
    code, status = _call(h, "GET", f"/api/jobs/{job}", as_(ALICE))
    assert code == 200 and status["caller"] == ALICE

    # Bob: the job does not exist for him, and he cannot cancel it.
    assert _call(h, "GET", f"/api/jobs/{job}", as_(BOB))[0] == 404
    assert _call(h, "DELETE", f"/api/jobs/{job}", as_(BOB))[0] == 404
    assert _call(h, "GET", f"/api/jobs/{job}", as_(ALICE))[1]["state"] not in (
        "cancelled", "failed")
    assert job not in [j["id"] for j in _call(h, "GET", "/api/jobs", as_(BOB))[1]["jobs"]]
    # The same blob for Bob is Bob's own job, not Alice's.
    code, bobs = _call(h, "POST", "/api/jobs", as_(BOB), {"blob": clip})
    assert code == 202 and bobs["id"] != job
    assert [j["id"] for j in _call(h, "GET", "/api/jobs", as_(BOB))[1]["jobs"]] == [bobs["id"]]
    assert [j["id"] for j in _call(h, "GET", "/api/jobs", as_(ALICE))[1]["jobs"]] == [job]
    # An admin sees both.
    listed = {j["id"]: j["caller"] for j in _call(h, "GET", "/api/jobs", admin)[1]["jobs"]}
    assert listed == {job: ALICE, bobs["id"]: BOB}

    # One unfinished job each (MAX_ACTIVE_JOBS_PER_CALLER=1): Alice's second one waits.
    code, body = _call(h, "POST", "/api/jobs", as_(ALICE), {"blob": other})
    assert code == 429 and "MAX_ACTIVE_JOBS_PER_CALLER" in body["error"]
    assert _call(h, "POST", "/api/jobs", as_(ALICE), {"blob": clip})[0] == 202  # same job

    # Alice cancels her own; the admin cancels Bob's.
    assert _call(h, "DELETE", f"/api/jobs/{job}", as_(ALICE))[0] == 202
    assert _call(h, "DELETE", f"/api/jobs/{bobs['id']}", admin)[0] == 202
    assert _call(h, "GET", f"/api/jobs/{job}", as_(ALICE))[1]["state"] == "cancelled"


def test_a_job_not_yet_run_is_listed_and_counted_for_its_caller(make_harness, clips,
                                                                  monkeypatch):
    """Between the start and the orchestration's first episode a job has no custom status, and a
    Durable query returns no inputs: the job must still be its caller's, in the list and in the
    MAX_ACTIVE_JOBS_PER_CALLER count (else two quick POSTs both start)."""
    import threading

    from stylebatch.durable_host import DurableHost

    h = make_harness(LOCAL_CALLER="", MAX_ACTIVE_JOBS_PER_CALLER="1")
    first = h.upload(clips["bbb_small"], "first.mp4")
    second = h.upload(clips["bbb_small"], "second.mp4")
    go = threading.Event()
    episode = DurableHost._episode

    def paused(self, inst):
        go.wait(60)
        return episode(self, inst)

    monkeypatch.setattr(DurableHost, "_episode", paused)
    try:
        code, started = _call(h, "POST", "/api/jobs", as_(ALICE), {"blob": first})
        assert code == 202
        assert h.durable.instances[started["id"]].custom_status is None  # not run yet
        code, status = _call(h, "GET", f"/api/jobs/{started['id']}", as_(ALICE))
        assert code == 200 and (status["state"], status["caller"]) == ("queued", ALICE)
        listed = _call(h, "GET", "/api/jobs", as_(ALICE))[1]["jobs"]
        assert [(j["id"], j["state"], j["caller"]) for j in listed] == [
            (started["id"], "queued", ALICE)]
        assert _call(h, "GET", "/api/jobs", as_(BOB))[1]["jobs"] == []
        code, body = _call(h, "POST", "/api/jobs", as_(ALICE), {"blob": second})
        assert code == 429 and "MAX_ACTIVE_JOBS_PER_CALLER" in body["error"]
        assert _call(h, "POST", "/api/jobs", as_(BOB), {"blob": second})[0] == 202
    finally:
        go.set()
    assert _call(h, "DELETE", f"/api/jobs/{started['id']}", as_(ALICE))[0] == 202


def test_an_uploaded_job_is_readable_by_id_but_only_an_admin_lists_or_cancels_it(
        make_harness, clips, held):
    h = make_harness(LOCAL_CALLER="", ADMIN_ROLE="stylebatch.admin")
    name = h.upload(clips["bbb_small"])
    h.functions.trigger_blob(name)
    job = h.job_id_for(name)
    code, status = _call(h, "GET", f"/api/jobs/{job}", as_(BOB))
    assert code == 200 and status["caller"] is None
    assert _call(h, "DELETE", f"/api/jobs/{job}", as_(BOB))[0] == 403
    assert _call(h, "GET", "/api/jobs", as_(BOB))[1]["jobs"] == []
    admin = as_(ADMIN, "stylebatch.admin")
    assert [j["id"] for j in _call(h, "GET", "/api/jobs", admin)[1]["jobs"]] == [job]
    assert _call(h, "DELETE", f"/api/jobs/{job}", admin)[0] == 202


def test_the_served_api_reads_the_caller_from_real_http_headers(make_harness, clips, held):
    """`stylebatch serve`'s HTTP server passes the headers through to the same code."""
    h = make_harness(LOCAL_CALLER="")
    clip = h.upload(clips["bbb_small"])
    port = free_port()
    h.functions.serve_http(port)
    base = f"http://127.0.0.1:{port}/api/jobs"

    def call(method, url, who=None, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers=who or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    assert call("GET", base)[0] == 401
    code, started = call("POST", base, as_(ALICE), {"blob": clip})
    assert code == 202
    assert call("GET", f"{base}/{started['id']}", as_(BOB))[0] == 404
    assert call("DELETE", f"{base}/{started['id']}", as_(BOB))[0] == 404
    assert call("GET", f"{base}/{started['id']}", as_(ALICE))[1]["caller"] == ALICE
