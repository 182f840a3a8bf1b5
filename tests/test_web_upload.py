"""The page's upload URL, against Azurite (which enforces SAS): one new blob in `incoming`,
create/write only, nothing else, and not after it expires. Plus the page's other routes
through the real worker's converters."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from functions import web
from shared.jobs import INCOMING, STYLES, InvalidName
from shared.settings import Settings
from shared.storage import BlobStore


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


def test_upload_url_writes_one_new_blob_with_its_style_and_model(store):
    name = _unique("clip.mp4")
    issued = web.issue_upload(store, {"name": name, "style": "swirl", "model": "fast",
                                      "size": 5}, Settings())
    assert issued["blob"] == name
    assert _put_blocks(issued["url"], b"video", issued["headers"]) == 201
    info = store.info(INCOMING, name)
    assert info is not None and store.read_bytes(INCOMING, name) == b"video"
    assert {k.lower(): v for k, v in info.metadata.items()} == {"style": "swirl", "model": "fast"}


def test_upload_url_cannot_read_list_delete_or_touch_another_blob(store):
    other, new, secret = _unique("other.mp4"), _unique("new.mp4"), _unique("secret.jpg")
    store.write_bytes(INCOMING, other, b"someone else's upload")
    store.write_bytes(STYLES, secret, b"not for you")
    url = web.issue_upload(store, {"name": _unique("mine.mp4")}, Settings())["url"]
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
    assert store.read_bytes(INCOMING, other) == b"someone else's upload"
    assert store.read_bytes(STYLES, secret) == b"not for you"
    assert not store.exists(INCOMING, new)


def test_upload_url_is_only_issued_for_a_name_no_blob_has(store):
    stem = _unique("taken")
    store.write_bytes(INCOMING, f"{stem}.mp4", b"first")
    issued = web.issue_upload(store, {"name": f"{stem}.mp4"}, Settings())
    assert issued["blob"] == f"{stem} (2).mp4"  # never a URL over an existing upload
    assert _put_blocks(issued["url"], b"second") == 201
    assert store.read_bytes(INCOMING, f"{stem}.mp4") == b"first"
    assert web.issue_upload(store, {"name": f"{stem}.mp4"}, Settings())["blob"] == f"{stem} (3).mp4"


def test_upload_url_expires(store):
    name = _unique("late.mp4")
    issued = web.issue_upload(store, {"name": name}, Settings(), ttl=timedelta(seconds=1))
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
        web.issue_upload(store, body, Settings())


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
