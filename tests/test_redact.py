"""Secrets never leave the process: SAS signatures, keys and tokens are redacted from errors,
log records, the orchestration history and the job status (shared/redact.py).

The central case is real: ffmpeg reading a real SAS URL (signed like every URL the app hands
out) from Azurite fails, and ffmpeg's own stderr carries the signature; nothing the app lets out
may.
"""

from __future__ import annotations

import json
import logging
import subprocess
import urllib.parse

import pytest

from shared.jobs import INCOMING
from shared.redact import MASK, install_log_redaction, redact
from shared.settings import Settings
from shared.storage import BlobStore
from shared.video import VideoError, ffmpeg_exe, run_ffmpeg


def _sig(url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["sig"][0]


def _forms(secret: str) -> set[str]:
    """The ways a signature can appear in text: as is, URL-encoded, lower-case encoded."""
    quoted = urllib.parse.quote(secret, safe="")
    return {secret, quoted, quoted.lower()}


def _leaks(text: str, secret: str) -> bool:
    decoded = urllib.parse.unquote(text.replace("\\u0026", "&"))
    return any(form in text or form in decoded for form in _forms(secret))


@pytest.mark.parametrize("text, kept", [
    ("GET https://a.blob.core.windows.net/work/j/c.mkv?sv=2025-01-05&se=2026-01-01T00%3A00Z"
     "&sr=b&sp=r&sig=AbC%2Bd%3D: Server returned 403", "https://a.blob.core.windows.net/work/j/c.mkv?"),
    ("https://a.blob.core.windows.net/w?skoid=1&sktid=2&skt=3&ske=4&sks=b&skv=5&sig=x", "/w?"),
    ("token sig=abc&se=2026 left", "token "),
    ("Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiIxMjMifQ.c2lnbmF0dXJl", "Authorization"),
    ("claims eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiIxMjMifQ.c2lnbmF0dXJl end", "claims "),
    ("DefaultEndpointsProtocol=https;AccountName=st;AccountKey=bXlrZXk=;EndpointSuffix=x",
     "AccountName=st"),
    ("BlobEndpoint=https://x;SharedAccessSignature=sv=1&sig=zz", "BlobEndpoint=https://x"),
    ("https://func.azurewebsites.net/runtime/webhooks/blobs?functionName=f&code=KEYKEYKEY",
     "/runtime/webhooks/blobs?"),
])
def test_secrets_are_masked_and_the_rest_is_kept(text, kept):
    out = redact(text)
    assert MASK in out and kept in out
    for secret in ("AbC%2Bd%3D", "sig=x", "abc", "c2lnbmF0dXJl", "bXlrZXk=", "zz", "KEYKEYKEY"):
        if secret in text:
            assert secret not in out, out


def test_text_without_secrets_is_unchanged():
    for text in ("chunk 3 failed: exit code 2 (not a video file)",
                 "see https://learn.microsoft.com/azure/batch?tabs=linux for details",
                 "website=ok useless=1 code review", "incoming/clip.mp4 (12.3 MB)"):
        assert redact(text) == text


@pytest.fixture
def sas_url(azurite) -> str:
    """A read SAS URL (signed like every URL the app hands out) to a blob that is no video."""
    store = BlobStore.from_settings(Settings(storage_connection_string=azurite.connection_string))
    store.ensure_containers()
    store.write_bytes(INCOMING, "redact/not-a-video.mp4", b"this is not a video" * 100)
    return store.blob_sas_url(INCOMING, "redact/not-a-video.mp4")


def test_a_failing_ffmpeg_on_a_sas_url_leaks_nothing(sas_url, caplog):
    secret = _sig(sas_url)
    # What ffmpeg itself prints: the signature is there, so this test can fail.
    raw = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
                          "-i", sas_url, "-f", "null", "-"], capture_output=True)
    assert raw.returncode != 0 and _leaks(raw.stderr.decode(errors="replace"), secret)

    install_log_redaction()
    log = logging.getLogger("stylebatch.test")
    with pytest.raises(VideoError) as info, caplog.at_level(logging.INFO):
        try:
            run_ffmpeg(["-i", sas_url, "-f", "null", "-"])
        except VideoError:
            log.exception("stitch failed")  # the traceback carries the message too
            raise
    message = str(info.value)
    assert message.startswith("ffmpeg failed") and MASK in message
    assert "not-a-video.mp4" in message  # still says which blob
    assert not _leaks(message, secret)
    # A careless log line with the raw URL or an exception is redacted as well.
    log.warning("reading %s", sas_url)
    text = caplog.text + "".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "stitch failed" in text and "reading" in text
    assert not _leaks(text, secret)


def test_job_status_and_history_never_see_the_signature(make_harness, sas_url, monkeypatch,
                                                        clips, caplog):
    """An activity that fails on a SAS URL (a real ffmpeg failure): the job fails with a
    readable, redacted error; the orchestration history and the log records are clean."""
    from shared import pipeline

    secret = _sig(sas_url)

    def probe_reads_a_url(ctx, req):
        try:
            run_ffmpeg(["-i", sas_url, "-f", "null", "-"])
        except VideoError as exc:  # and an error text that names the raw URL on top
            raise OSError(f"{exc} (while reading {sas_url})") from exc

    monkeypatch.setattr(pipeline, "probe_job", probe_reads_a_url)
    h = make_harness()
    with caplog.at_level(logging.INFO):
        name = h.upload(clips["bbb_small"])
        h.functions.trigger_blob(name)
        job_id = h.job_id_for(name)
        final, _ = h.watch(job_id, timeout=120)
    assert final["state"] == "failed"
    assert "ffmpeg failed" in final["error"] and MASK in final["error"]
    assert not _leaks(json.dumps(final), secret)
    inst = h.durable.instances[job_id]
    history = json.dumps([inst.history, inst.new_events, inst.custom_status, inst.output])
    assert "ffmpeg failed" in history and not _leaks(history, secret)
    assert not _leaks(caplog.text, secret)
