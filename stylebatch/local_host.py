"""Run the Function app on this machine without Core Tools: the pieces `stylebatch run/serve` use.

``LocalFunctionHost`` takes the app as the real Python worker indexed and loaded it
(``stylebatch/worker.py``: an app the worker refuses never gets here) and invokes its functions
the way the Functions host does, handing each input over as the host's typed data so that the
worker's own converters build what the function receives:

- HTTP functions: routes and methods come from each function's ``httpTrigger`` binding JSON
  under host.json's ``routePrefix``; a request becomes the host's ``http`` data (method, url,
  headers, raw body bytes, route parameters, query), decoded by azure-functions'
  ``HttpRequestConverter``; the returned ``HttpResponse`` is encoded by the ``http`` output
  converter and read back from that encoding; ``serve_http`` serves them on 127.0.0.1:7071;
- the blob trigger: the binding is SDK-typed, so the host sends ``model_binding_data`` naming
  the connection setting, container and blob, and the blob extension's converter builds the
  ``BlobClient`` from the connection setting, as in Azure; ``BlobPoller`` watches ``incoming``
  for new versions, standing in for Event Grid;
- the Durable client binding: the client JSON of the in-process ``DurableHost``, decoded by the
  ``durableClient`` converter.

``async def`` functions run on the host's one event loop, as in the worker.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import azure.functions as func
from aiohttp import web

from shared.jobs import INCOMING
from shared.settings import STORAGE_SETTING_NAMES
from shared.storage import BlobStore
from stylebatch import worker
from stylebatch.durable_host import DurableHost
from stylebatch.worker import Datum, LoadedFunction, WorkerApp

log = logging.getLogger(__name__)


def binding_environment(values: Mapping[str, str]) -> dict[str, str]:
    """The settings the hosted app's bindings read from the process environment themselves:
    the blob trigger's SDK-type binding builds its ``BlobClient`` from its ``connection``
    setting (``STORAGE``, or ``STORAGE__blobServiceUri``) found in ``os.environ``, as in Azure.
    A host sets these in its environment; every other setting it installs
    (``shared.settings.install_settings``)."""
    return {name: values[name] for name in STORAGE_SETTING_NAMES if values.get(name)}

# Bindings this host can feed: triggers, and the inputs/outputs that go with them.
_TRIGGERS = {"httpTrigger", "blobTrigger", "orchestrationTrigger", "activityTrigger"}
_OTHER_BINDINGS = {"durableClient", "http"}


class UnsupportedBinding(Exception):
    """The app uses a binding the local host cannot feed."""


def route_prefix(directory: str | Path) -> str:
    """host.json's ``extensions.http.routePrefix`` (the host's default: ``api``)."""
    host_json = Path(directory) / "host.json"
    if not host_json.is_file():
        return "api"
    config = json.loads(host_json.read_text(encoding="utf-8"))
    return str(config.get("extensions", {}).get("http", {}).get("routePrefix", "api"))


class LocalFunctionHost:
    def __init__(self, app: WorkerApp, durable: DurableHost, store: BlobStore):
        self.app = app
        self.durable = durable
        self.store = store
        self.http_routes: list[tuple[re.Pattern[str], set[str], LoadedFunction]] = []
        self.blob_trigger: LoadedFunction | None = None
        for fn in app.functions.values():
            trigger = fn.trigger
            unknown = {b["type"] for b in fn.bindings} - _TRIGGERS - _OTHER_BINDINGS
            if trigger["type"] not in _TRIGGERS or unknown:
                raise UnsupportedBinding(f"{fn.name}: the local host cannot feed "
                                         f"{sorted(unknown | {trigger['type']} - _TRIGGERS)}")
            if trigger["type"] == "httpTrigger":
                prefix = route_prefix(fn.directory).strip("/")
                route = (trigger.get("route") or fn.name).strip("/")
                path = "/".join(p for p in (prefix, route) if p)
                # ASP.NET Core route matching: case-insensitive, a trailing slash tolerated
                pattern = re.compile("^/" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "/?$",
                                     re.IGNORECASE)
                methods = {m.upper() for m in trigger.get("methods") or []}
                self.http_routes.append((pattern, methods, fn))
            elif trigger["type"] == "blobTrigger":
                self.blob_trigger = fn
        self._server: web.AppRunner | None = None

    def _client_input(self, fn: LoadedFunction, inputs: dict[str, Datum]) -> dict[str, Datum]:
        client = fn.binding("durableClient")
        if client is not None:
            inputs[client["name"]] = Datum(self.durable.client_binding(), "string")
        return inputs

    # -- HTTP -------------------------------------------------------------------------------

    def http(self, method: str, path: str, body: Any = None,
             params: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> func.HttpResponse:
        method = method.upper()
        allowed = False
        for pattern, methods, fn in self.http_routes:
            m = pattern.match(path)
            if not m:
                continue
            allowed = True
            if methods and method not in methods:
                continue
            if isinstance(body, bytes) or body is None:
                raw = body or b""
            else:
                raw = json.dumps(body).encode()
                headers = {"content-type": "application/json", **(headers or {})}
            query = params or {}
            url = f"http://127.0.0.1:7071{path}"
            if query:
                url += "?" + urlencode(query)
            request = Datum({
                "method": Datum(method, "string"), "url": Datum(url, "string"),
                "headers": {k.lower(): Datum(v, "string") for k, v in (headers or {}).items()},
                "body": Datum(raw, "bytes"),
                "params": {k: Datum(v, "string") for k, v in m.groupdict().items()},
                "query": {k: Datum(v, "string") for k, v in query.items()},
            }, "http")
            inputs = self._client_input(fn, {fn.trigger["name"]: request})
            returned = worker.invoke(fn, inputs, loop=self.durable.loop, timeout=60)
            return _http_response(returned)
        status = 405 if allowed else 404
        return func.HttpResponse(json.dumps({"error": "no such route"}), status_code=status,
                                 headers={"content-type": "application/json"})

    def serve_http(self, port: int = 7071) -> None:
        async def handle(request: web.Request) -> web.Response:
            data = await request.read()
            resp = await self.durable.loop.run_in_executor(
                None, lambda: self.http(request.method, request.path, data or None,
                                        dict(request.query), dict(request.headers)))
            headers = {k: v for k, v in resp.headers.items() if k.lower() != "content-length"}
            return web.Response(body=resp.get_body(), status=resp.status_code,
                                headers=headers)

        async def start() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            self._server = web.AppRunner(app, access_log=None)
            await self._server.setup()
            await web.TCPSite(self._server, "127.0.0.1", port).start()

        self.durable.run_async(start())

    # -- blob trigger -------------------------------------------------------------------------

    def trigger_blob(self, name: str) -> None:
        """Deliver a BlobCreated for incoming/<name> to the blob trigger function."""
        assert self.blob_trigger is not None, "the app has no blob trigger"
        fn = self.blob_trigger
        trigger = fn.trigger
        container = trigger["path"].split("/", 1)[0]
        assert container == INCOMING, trigger["path"]
        # What the host sends for an SDK-type blob binding: which blob, through which
        # connection setting; the extension builds the client from that setting itself.
        content = json.dumps({"Connection": trigger["connection"], "ContainerName": container,
                              "BlobName": name})
        binding_data = SimpleNamespace(version="1.0", source="AzureStorageBlobs",
                                       content_type="application/json",
                                       content=content.encode())
        inputs = self._client_input(fn, {trigger["name"]: Datum(binding_data,
                                                                "model_binding_data")})
        metadata = {"name": Datum(name, "string"),
                    "BlobTrigger": Datum(f"{container}/{name}", "string")}
        worker.invoke(fn, inputs, metadata, loop=self.durable.loop, timeout=60)


def _http_response(returned: Datum | None) -> func.HttpResponse:
    """The response the host builds from the ``http`` output converter's encoding."""
    if returned is None or returned.type is None:
        return func.HttpResponse(status_code=204)
    if returned.type == "string":
        return func.HttpResponse(returned.value, status_code=200)
    value = returned.value
    headers = {k: v.value for k, v in value["headers"].items()}
    return func.HttpResponse(value["body"].value, status_code=int(value["status_code"].value),
                             headers=headers)


class BlobPoller:
    """Stands in for Event Grid locally: triggers once per new blob version in `incoming`.

    Like an Event Grid subscription it reports what arrives after it was created: on the very
    first start, blobs already in `incoming` start nothing (unless ``include_existing``). With
    a ``state`` store it keeps a checkpoint (the start of its last complete scan), so after a
    restart it delivers every blob version that arrived while it was down. Delivering a version
    twice is harmless: the trigger starts nothing for a version whose job exists, running or
    finished.
    """

    CHECKPOINT = "blob-poller.json"
    SLACK = timedelta(seconds=2)  # Last-Modified has one-second resolution

    def __init__(self, host: LocalFunctionHost, interval_s: float = 2.0,
                 include_existing: bool = False, state: Any = None):
        self.host = host
        self.interval_s = interval_s
        self.state = state  # a BlobInstanceStore (its host state), or None
        self.seen: set[tuple[str, str]] = set()
        checkpoint = state.read_host_state(self.CHECKPOINT) if state is not None else None
        since = _parse_time(checkpoint.get("scanned")) if isinstance(checkpoint, dict) else None
        if not include_existing:
            # Handled by an earlier run (or there before the first one): not delivered again.
            self.seen = {(b.name, b.etag) for b in host.store.list(INCOMING)
                         if since is None or b.last_modified < since - self.SLACK}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="blob-poller")

    def start(self) -> BlobPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def poll_once(self) -> int:
        scanned = datetime.now(UTC)
        fired = failed = 0
        for b in self.host.store.list(INCOMING):
            key = (b.name, b.etag)
            if key in self.seen:
                continue
            self.seen.add(key)
            try:
                self.host.trigger_blob(b.name)
                fired += 1
            except Exception:
                failed += 1
                log.exception("blob trigger failed for %s/%s", INCOMING, b.name)
        if self.state is not None and not failed and not self._stop.is_set():
            self.state.write_host_state(self.CHECKPOINT, {"scanned": scanned.isoformat()})
        return fired

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if not self._stop.is_set():
                    log.exception("polling %s failed", INCOMING)
            self._stop.wait(self.interval_s)


def _parse_time(text: Any) -> datetime | None:
    try:
        t = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
