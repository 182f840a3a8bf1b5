"""The page's upload URL, against Azurite (which enforces SAS): one new blob in `incoming`,
create/write only, nothing else, and not after it expires; the name it is issued for is
reserved for its asker, whose job the upload starts — exactly one. Plus the page's other
routes through the real worker's converters."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from functions import web
from functions.starter import upload_request
from shared import uploads
from shared.jobs import INCOMING, STYLES, WORK, InvalidName, upload_record_blob
from shared.settings import Settings
from shared.storage import BlobStore
from tests.test_callers import ADMIN, ALICE, BOB, as_

ME = "local-dev"  # who asks for the URLs in the tests that call web.issue_upload directly


def _unique(name: str) -> str:
    return f"{uuid.uuid4().hex[:8]}-{name}"


@pytest.fixture
def store(azurite) -> BlobStore:
    s = BlobStore(BlobServiceClient.from_connection_string(azurite.connection_string),
                  account_key=azurite.connection_string.split("AccountKey=")[1].split(";")[0])
    s.ensure_containers()
    return s


def _http(url: str, method: str, data: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _put_blocks(url: str, data: bytes, headers: dict[str, str] | None = None) -> int:
    """What the page does: Put Block, then Put Block List."""
    code, _ = _http(f"{url}&comp=block&blockid=QUFBQQ%3D%3D", "PUT", data)
    if code >= 300:
        return code
    xml = b'<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>QUFBQQ==</Latest></BlockList>'
    code, _ = _http(f"{url}&comp=blocklist", "PUT", xml, headers)
    return code


def _sibling(url: str, other: str) -> str:
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + other + "?" + query


def test_upload_url_writes_one_new_blob_whose_job_has_the_askers_style_and_model(store):
    name = _unique("clip.mp4")
    issued = web.issue_upload(store, {"name": name, "style": "swirl", "model": "fast",
                                      "size": 5}, Settings(), ALICE)
    assert issued["blob"] == name
    # Whoever holds the URL sets the blob's metadata: it does not change whose job it is, nor
    # the style and model asked for.
    forged = {"x-ms-meta-style": "mosaic", "x-ms-meta-model": "gatys"}
    assert _put_blocks(issued["url"], b"video", forged) == 201
    info = store.info(INCOMING, name)
    assert info is not None and store.read_bytes(INCOMING, name) == b"video"
    job = upload_request(name, info.etag, info.metadata, info.last_modified,
                         uploads.read(store, name), Settings())
    assert (job.caller, job.style, job.model) == (ALICE, "swirl", "fast")


def test_upload_url_cannot_read_list_delete_or_touch_another_blob(store):
    other, new, secret = _unique("other.mp4"), _unique("new.mp4"), _unique("secret.jpg")
    store.write_bytes(INCOMING, other, b"someone else's upload")
    store.write_bytes(STYLES, secret, b"not for you")
    mine = _unique("mine.mp4")
    url = web.issue_upload(store, {"name": mine}, Settings(), ME)["url"]
    assert _put_blocks(url, b"mine") == 201
    base, _, query = url.partition("?")
    container_url = base.rsplit("/", 1)[0]
    assert _http(url, "GET")[0] == 403  # cannot read back even its own blob
    assert _http(f"{container_url}?restype=container&comp=list&{query}", "GET")[0] == 403
    assert _http(url, "DELETE")[0] == 403
    for name in (other, new):  # an existing blob, or any other new name
        assert _put_blocks(_sibling(url, name), b"overwrite") == 403
        assert _http(_sibling(url, name), "GET")[0] == 403
    styles_url = _sibling(url, secret).replace(f"/{INCOMING}/", f"/{STYLES}/")
    assert _put_blocks(styles_url, b"overwrite") == 403
    # Nor the app's record of who asked for it.
    record = upload_record_blob(mine)
    record_url = f"{base.rsplit('/', 2)[0]}/{WORK}/{record}?{query}"
    assert _put_blocks(record_url, b'{"caller": "someone-else"}') == 403
    assert uploads.read(store, mine).caller == ME
    assert store.read_bytes(INCOMING, other) == b"someone else's upload"
    assert store.read_bytes(STYLES, secret) == b"not for you"
    assert not store.exists(INCOMING, new)


def test_upload_url_is_only_issued_for_a_name_no_blob_has(store):
    stem = _unique("taken")
    store.write_bytes(INCOMING, f"{stem}.mp4", b"first")
    issued = web.issue_upload(store, {"name": f"{stem}.mp4"}, Settings(), ME)
    assert issued["blob"] == f"{stem} (2).mp4"  # never a URL over an existing upload
    assert _put_blocks(issued["url"], b"second") == 201
    assert store.read_bytes(INCOMING, f"{stem}.mp4") == b"first"
    # Nor over another URL's name that has no blob yet: two askers at once get two names.
    names = []
    threads = [threading.Thread(target=lambda who=who: names.append(web.issue_upload(
        store, {"name": f"{stem}.mp4"}, Settings(), who)["blob"])) for who in (ALICE, BOB)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(names) == [f"{stem} (3).mp4", f"{stem} (4).mp4"]
    assert {uploads.read(store, n).caller for n in names} == {ALICE, BOB}


def test_an_expired_upload_url_frees_its_name_and_attributes_nothing_later(store):
    name = _unique("abandoned.mp4")
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    issued = web.issue_upload(store, {"name": name}, Settings(), ALICE, now=long_ago)
    assert issued["blob"] == name and _put_blocks(issued["url"], b"late") == 403
    # Someone else writes that name afterwards (not through Alice's URL): not Alice's job.
    store.write_bytes(INCOMING, name, b"someone else's")
    info = store.info(INCOMING, name)
    job = upload_request(name, info.etag, info.metadata, info.last_modified,
                         uploads.read(store, name), Settings())
    assert job.caller == ""
    # A name whose URL expired unused is free again.
    other = _unique("unused.mp4")
    web.issue_upload(store, {"name": other}, Settings(), ALICE, now=long_ago)
    assert web.issue_upload(store, {"name": other}, Settings(), BOB)["blob"] == other
    assert uploads.read(store, other).caller == BOB


def test_upload_url_expires(store):
    name = _unique("late.mp4")
    issued = web.issue_upload(store, {"name": name}, Settings(), ME, ttl=timedelta(seconds=1))
    time.sleep(2.5)  # past the expiry (the SAS's own clock check is Azurite's)
    assert _put_blocks(issued["url"], b"too late") == 403
    assert not store.exists(INCOMING, name)


@pytest.mark.parametrize("body, reason", [
    ({"name": "notes.txt"}, "unsupported file extension .txt"),
    ({"name": "clip.mp4", "model": "huge"}, "model must be one of gatys, fast"),
    ({"name": "clip.mp4", "style": "../etc"}, "not a valid style name"),
    ({"name": "clip.mp4", "size": 0}, "the file is empty"),
    ({"name": "clip.mp4", "size": 9 * 1024**3}, "larger than the limit MAX_INPUT_BYTES"),
    ({}, "\"name\" (the file's name) is required"),
])
def test_a_bad_upload_is_refused_at_the_door_with_its_reason(store, body, reason):
    with pytest.raises(InvalidName, match=reason.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")):
        web.issue_upload(store, body, Settings(), ME)


def test_page_routes_through_the_worker(harness):
    resp = harness.functions.http("GET", "/api/ui")
    assert resp.status_code == 200
    html = resp.get_body().decode()
    assert 'id="upload-form"' in html and "function refreshJobs" in html and "<style>" in html
    assert "http://" not in html.replace("http://www.w3.org", "")  # no asset from elsewhere
    styles = json.loads(harness.functions.http("GET", "/api/styles").get_body())
    assert "swirl" in [s["name"] for s in styles["styles"]]
    thumb = next(s["url"] for s in styles["styles"] if s["name"] == "swirl")
    code, data = _http(thumb, "GET")
    assert code == 200 and data[:2] == b"\xff\xd8"  # the JPEG, through its read URL
    bad = harness.functions.http("POST", "/api/uploads", {"name": "movie.exe"})
    assert bad.status_code == 400
    assert "unsupported file extension .exe" in json.loads(bad.get_body())["error"]
    links = harness.functions.http("GET", "/api/jobs/nope-0000000000000000/links")
    assert links.status_code == 404


def test_a_new_style_image_gets_a_url_for_its_own_new_name_only(store):
    stem = _unique("My Starry")
    issued = web.issue_style_upload(store, {"kind": "style", "name": f"{stem}.JPG"})
    assert issued["style"] == stem.lower().replace(" ", "-") and issued["blob"].endswith(".jpg")
    code, _ = _http(issued["url"], "PUT", b"\xff\xd8 an image", issued["headers"])
    assert code == 201
    assert issued["style"] in [s["name"] for s in web.list_styles(store)]
    assert _http(issued["url"], "GET")[0] == 403
    with pytest.raises(InvalidName, match="exists already"):
        web.issue_style_upload(store, {"kind": "style", "name": f"{stem}.png"})
    with pytest.raises(InvalidName, match="must be one of .jpg, .jpeg, .png"):
        web.issue_style_upload(store, {"kind": "style", "name": "style.gif"})


def _call(h, method, path, who, body=None, params=None):
    resp = h.functions.http(method, path, body, params=params, headers=who)
    return resp.status_code, json.loads(resp.get_body() or b"null")


def test_one_upload_through_the_page_is_one_job_of_the_uploader(make_harness, clips, held):
    """What the page does, as an ordinary caller in Azure: ask for an upload URL, put the
    blocks, let the blob trigger start the job (twice: Event Grid delivers at least once),
    look the job up. One job, Alice's, with her style and model; Bob never sees it."""
    h = make_harness(LOCAL_CALLER="", ADMIN_ROLE="stylebatch.admin")
    admin = as_(ADMIN, "stylebatch.admin")
    data = clips["bbb_small"].read_bytes()
    code, issued = _call(h, "POST", "/api/uploads", as_(ALICE),
                         {"name": _unique("page clip.mp4"), "style": "swirl",
                          "model": "gatys", "size": len(data)})
    assert code == 201, issued
    blob = issued["blob"]
    lookup = {"blob": blob}
    assert _call(h, "GET", "/api/uploads", as_(ALICE), params=lookup)[1] == {
        "blob": blob, "job": None, "started": False}  # nothing uploaded yet
    assert _put_blocks(issued["url"], data, {"x-ms-meta-model": "fast"}) == 201

    h.functions.trigger_blob(blob)
    h.functions.trigger_blob(blob)
    code, found = _call(h, "GET", "/api/uploads", as_(ALICE), params=lookup)
    assert code == 200 and found["started"] is True
    job = found["job"]
    code, status = _call(h, "GET", f"/api/jobs/{job}", as_(ALICE))
    assert code == 200
    assert (status["caller"], status["style"], status["model"], status["input"]) == (
        ALICE, "swirl", "gatys", f"{INCOMING}/{blob}")
    assert [j["id"] for j in _call(h, "GET", "/api/jobs", as_(ALICE))[1]["jobs"]] == [job]
    everyone = _call(h, "GET", "/api/jobs", admin)[1]["jobs"]
    assert [j["id"] for j in everyone if j["input"] == f"{INCOMING}/{blob}"] == [job]

    # Bob: neither the job nor the upload exists for him.
    assert _call(h, "GET", f"/api/jobs/{job}", as_(BOB))[0] == 404
    assert _call(h, "GET", "/api/uploads", as_(BOB), params=lookup)[0] == 404
    assert _call(h, "DELETE", f"/api/jobs/{job}", as_(BOB))[0] == 404
    assert _call(h, "GET", "/api/jobs", as_(BOB))[1]["jobs"] == []

    # The page's retry, and an admin's POST for the blob, act on that same job: still one, and
    # still Alice's.
    assert _call(h, "POST", "/api/jobs", as_(ALICE), {"blob": blob})[1]["id"] == job
    assert _call(h, "POST", "/api/jobs", admin, {"blob": blob})[1]["id"] == job
    assert _call(h, "GET", f"/api/jobs/{job}", admin)[1]["caller"] == ALICE
    everyone = _call(h, "GET", "/api/jobs", admin)[1]["jobs"]
    assert [j["id"] for j in everyone if j["input"] == f"{INCOMING}/{blob}"] == [job]
    assert _call(h, "DELETE", f"/api/jobs/{job}", as_(ALICE))[0] == 202


def test_an_upload_url_counts_against_the_callers_unfinished_jobs(make_harness, clips, held):
    h = make_harness(LOCAL_CALLER="", MAX_ACTIVE_JOBS_PER_CALLER="1")
    code, issued = _call(h, "POST", "/api/uploads", as_(ALICE), {"name": "first.mp4"})
    assert _put_blocks(issued["url"], clips["bbb_small"].read_bytes()) == 201
    h.functions.trigger_blob(issued["blob"])
    # Once Alice can see her first job working, a second upload URL is refused.
    code, found = _call(h, "GET", "/api/uploads", as_(ALICE), params={"blob": issued["blob"]})
    assert code == 200 and found["started"] is True, found
    deadline, state = time.monotonic() + 60, None
    while state != "probing" and time.monotonic() < deadline:
        state = _call(h, "GET", f"/api/jobs/{found['job']}", as_(ALICE))[1]["state"]
        assert state in ("queued", "probing"), state
        time.sleep(0.1)
    assert state == "probing", state
    code, body = _call(h, "POST", "/api/uploads", as_(ALICE), {"name": "second.mp4"})
    assert code == 429 and "MAX_ACTIVE_JOBS_PER_CALLER" in body["error"]
    assert _call(h, "POST", "/api/uploads", as_(BOB), {"name": "second.mp4"})[0] == 201
