"""The web page in a real browser: Debian's chromium driven by Playwright, against a real
`stylebatch serve` (its embedded Azurite, the real Function app, local Batch tasks).

Upload a small real clip through the page with the fast model as an ordinary signed-in caller,
watch the upload bar reach 100 %, see that upload make exactly one job, the caller's, follow it
to `completed`, see the before/after preview, download the result and
count its frames; cancel a second job from its page; a bad file and a bad name show their
reasons. A screenshot of each page goes to artifacts/web/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import telemetry
from stylebatch.azurite import free_port
from tests.conftest import ffmpeg, framemd5
from tests.corpus import CARPHONE
from tests.test_callers import ALICE, BOB, as_

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("STYLEBATCH_ARTIFACTS", REPO / "artifacts")) / "web"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at "
                       "/usr/bin/chromium (apt-get install chromium; .ci/run installs it)"),
]
playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is in requirements-dev.txt")

FRAMES = 24  # the clip the page uploads and the result must have
TRACES: list[Path] = []  # where the server writes its spans


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("web-clips")
    short, long = d / "carphone short.mp4", d / "carphone long.mp4"
    ffmpeg("-i", str(CARPHONE), "-frames:v", str(FRAMES), "-c:v", "libx264", "-preset",
           "veryfast", str(short))
    ffmpeg("-i", str(CARPHONE), "-frames:v", "120", "-c:v", "libx264", "-preset", "veryfast",
           str(long))
    bad = d / "not a video.mp4"  # 9 MiB: it goes up in three 4 MiB blocks
    bad.write_text("these are words, not frames\n" * (9 * 1024**2 // 28))
    notes = d / "notes.txt"
    notes.write_text("a text file\n")
    style = d / "My Starry.jpg"
    style.write_bytes((REPO / "assets" / "styles" / "swirl.jpg").read_bytes())
    return {"short": short, "long": long, "bad": bad, "notes": notes, "style": style}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`stylebatch serve` as a user starts it; yields the page URL it prints."""
    data = tmp_path_factory.mktemp("serve")
    TRACES.append(data / "traces.jsonl")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORAGE")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stylebatch.cli", "serve", "--port", str(port), "--data",
         str(data / "azurite"), "--poll-blobs", "0.5", "--poll", "1", "--max-side", "64",
         "--chunk-frames", "8", "--slots", "2", "--trace-file", str(TRACES[-1])],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    url: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"web page: (http://\S+)", line)
            if m:
                url.append(m.group(1))
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not found.wait(120):
            pytest.fail("stylebatch serve printed no page URL:\n" + "".join(lines))
        yield url[0]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def console() -> list[str]:
    """The page's console errors and uncaught exceptions: none is allowed."""
    return []


@pytest.fixture
def page(browser, server, console) -> Iterator[object]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1366, "height": 900})
    page = context.new_page()
    errors = console
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server)
    page.wait_for_selector("#styles input[value=swirl]", state="attached")
    yield page
    assert errors == [], f"console errors: {errors}"
    context.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _upload(page, path: Path, model: str) -> str:
    """Upload through the form; returns the job id the page links to."""
    page.set_input_files("#file", str(path))
    page.select_option("#model", model)
    page.click("#go")
    link = page.wait_for_selector("#upload-msg a", timeout=60_000)
    return link.get_attribute("href").removeprefix("#job/")


def _state(page) -> str:
    return page.inner_text("#job-facts dd")


def test_add_a_style_image_to_the_gallery(page, clips, console):
    page.set_input_files("#new-style", str(clips["style"]))
    playwright_api.expect(page.locator("#style-msg")).to_have_text("Added style my-starry.")
    assert page.is_checked("#styles input[value=my-starry]")
    page.wait_for_function("[...document.querySelectorAll('#styles img')]"
                           ".every((img) => img.complete && img.naturalWidth > 0)")
    _shot(page, "0-style-added")
    page.set_input_files("#new-style", str(clips["style"]))  # the same name again
    playwright_api.expect(page.locator("#style-msg")).to_contain_text("exists already")
    assert console == ["Failed to load resource: the server responded with a status of 400 "
                       "(Bad Request)"]  # the refusal, as Chromium reports any failed fetch
    console.clear()


def _as(page, headers: dict[str, str]) -> None:
    """The page's API calls carry a signed-in caller's principal headers, as App Service
    authentication sets them in Azure (storage requests are left alone)."""
    page.route("**/api/**", lambda route: route.continue_(
        headers={**route.request.headers, **headers}))
    page.reload()
    page.wait_for_selector("#styles input[value=swirl]", state="attached")


def _api(server: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, object]:
    base = server.split("/api/ui")[0]
    req = urllib.request.Request(f"{base}/api/{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _record_upload_percents(page) -> list[float]:
    """Every value the upload bar shows, as the page shows it."""
    percents: list[float] = []
    page.expose_function("recordPercent", lambda p: percents.append(float(p)))
    page.evaluate("""() => new MutationObserver(() => window.recordPercent(
        document.getElementById('upload-progress').value)).observe(
        document.getElementById('upload-percent'), {childList: true, characterData: true,
                                                    subtree: true})""")
    return percents


def test_upload_watch_preview_and_download(page, server, clips, tmp_path):
    # An ordinary caller, as in Azure: the upload's job must be theirs, and the only one.
    _as(page, as_(ALICE))
    percents = _record_upload_percents(page)
    # The form is reachable from the keyboard: Tab reaches the upload button.
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "go":
            break
    assert page.evaluate("document.activeElement.id") == "go"
    job_id = _upload(page, clips["short"], "fast")
    assert page.inner_text("#upload-percent") == "100 %"
    assert percents and max(percents) == 100.0
    _shot(page, "1-uploaded")
    page.click("#upload-msg a")
    page.wait_for_selector("#job-view:not([hidden])")
    page.wait_for_function("document.querySelector('#job-facts dd') && "
                           "document.querySelector('#job-facts dd').textContent == 'completed'",
                           timeout=180_000)
    page.wait_for_function("document.getElementById('preview').naturalWidth > 0",
                           timeout=30_000)
    assert page.inner_text("#job-percent") == "100 %"
    assert page.locator("#timeline [role=listitem]").count() >= 3  # 24 frames, chunks of 8
    _shot(page, "2-job-completed")
    with page.expect_download(timeout=60_000) as download:
        page.click("#download")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.suffix == ".mp4"
    assert len(framemd5(saved)) == FRAMES
    # One upload, one job: Alice's (an admin lists every job), which Bob cannot see.
    status = _api(server, f"jobs/{job_id}", as_(ALICE))[1]
    assert (status["caller"], status["style"], status["model"]) == (ALICE, "swirl", "fast")
    everyone = _api(server, "jobs?limit=500")[1]["jobs"]
    assert [j["id"] for j in everyone if j["input"] == status["input"]] == [job_id]
    assert _api(server, f"jobs/{job_id}", as_(BOB))[0] == 404
    # The server wrote the job's trace: its own span, one per chunk task, all one trace id.
    spans = [json.loads(line) for line in TRACES[-1].read_text().splitlines()]
    mine = [s for s in spans if s["attributes"].get("job.id") == job_id]
    assert {s["context"]["trace_id"] for s in mine} == {"0x" + telemetry.trace_id_hex(job_id)}
    assert [s["attributes"]["state"] for s in mine if s["name"] == "job"] == ["completed"]
    assert len([s for s in mine if s["name"].startswith("task chunk-")]) == FRAMES // 8
    page.goto(page.url.split("#")[0] + "#")
    page.wait_for_selector(f"#jobs a[href='#job/{job_id}']")
    row = page.locator("#jobs tr", has=page.locator(f"a[href='#job/{job_id}']"))
    playwright_api.expect(row).to_contain_text("completed", timeout=10_000)
    _shot(page, "3-jobs")


def test_cancel_a_job_from_its_page(page, clips):
    job_id = _upload(page, clips["long"], "gatys")
    page.click("#upload-msg a")
    page.wait_for_selector(f"#job-h:text('Job {job_id}')")
    # Cancel while its chunk tasks run on the (local) Batch pool.
    page.wait_for_function("document.querySelector('#job-facts dd').textContent == 'scoring' "
                           "&& document.querySelectorAll('#timeline .lane').length > 0",
                           timeout=120_000)
    _shot(page, "4-job-scoring")
    page.keyboard.press("Tab")  # the buttons work from the keyboard
    page.focus("#cancel")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#job-facts dd').textContent == "
                           "'cancelled'", timeout=60_000)
    assert page.is_disabled("#cancel") and page.is_enabled("#retry")
    spans = [json.loads(line) for line in TRACES[-1].read_text().splitlines()]
    assert [s["name"] for s in spans if s["attributes"].get("job.id") == job_id
            and s["name"] == "cancel"] == ["cancel"]  # the cancel is in the job's trace
    _shot(page, "5-job-cancelled")


def test_bad_uploads_show_their_reason(page, clips, console):
    page.set_input_files("#file", str(clips["notes"]))
    page.click("#go")
    page.wait_for_selector("#upload-msg.error")
    assert "unsupported file extension .txt" in page.inner_text("#upload-msg")
    # The refusal is the API's 400, which Chromium reports for any failed fetch; nothing else.
    assert console == ["Failed to load resource: the server responded with a status of 400 "
                       "(Bad Request)"]
    console.clear()
    percents = _record_upload_percents(page)
    job_id = _upload(page, clips["bad"], "fast")
    # A large file goes up block by block, and the bar moves with each block.
    assert max(percents) == 100.0 and any(40 < p < 100 for p in percents), percents
    page.click("#upload-msg a")
    page.wait_for_function("document.querySelector('#job-facts dd') && "
                           "document.querySelector('#job-facts dd').textContent == 'failed'",
                           timeout=60_000)
    reason = page.inner_text("#job-error")
    assert reason.startswith("Failed: ") and len(reason) > len("Failed: ") + 10
    _shot(page, "6-job-failed")
    page.goto(page.url.split("#")[0] + "#")
    row = page.locator("#jobs tr", has=page.locator(f"a[href='#job/{job_id}']"))
    # The table refreshes itself (it may still show the state from before the job failed).
    playwright_api.expect(row).to_contain_text(reason.removeprefix("Failed: "), timeout=10_000)
    playwright_api.expect(row).to_contain_text("failed")
    _shot(page, "7-jobs-with-failure")
