"""Run the Function app on this machine without Core Tools: the pieces `stylebatch run/serve` use.

``LocalFunctionHost`` loads ``function_app.app`` and invokes its functions the way the
Functions host would:

- HTTP functions: builds ``func.HttpRequest`` objects, matches routes (``/api/jobs/{id}``), and
  can serve them on 127.0.0.1:7071;
- the blob trigger: calls ``on_upload`` with a real ``BlobClient`` for the uploaded blob (the
  SDK-type binding it gets in Azure); ``BlobPoller`` watches ``incoming`` for new versions,
  standing in for Event Grid;
- the Durable client binding points at the in-process ``DurableHost``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any

import azure.functions as func
from aiohttp import web

from shared.jobs import INCOMING
from shared.storage import BlobStore
from stylebatch.durable_host import DurableHost

log = logging.getLogger(__name__)


class LocalFunctionHost:
    def __init__(self, app: Any, durable: DurableHost, store: BlobStore):
        self.app = app
        self.durable = durable
        self.store = store
        self.http_routes: list[tuple[re.Pattern[str], set[str], Any, dict[str, str]]] = []
        self.blob_trigger: tuple[Any, str] | None = None
        for fn in durable.functions:
            trigger = fn.get_trigger()
            names = {b.type: b.name for b in fn.get_bindings()}
            if trigger.type == "httpTrigger":
                route = trigger.route or fn.get_function_name()
                pattern = re.compile("^/api/" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", route) + "$")
                methods = {str(getattr(m, "value", m)).upper() for m in (trigger.methods or [])}
                self.http_routes.append((pattern, methods, fn.get_user_function(), names))
            elif trigger.type == "blobTrigger":
                self.blob_trigger = (fn.get_user_function(), names)
        self._server: web.AppRunner | None = None

    # -- HTTP -------------------------------------------------------------------------------

    def http(self, method: str, path: str, body: Any = None,
             params: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> func.HttpResponse:
        method = method.upper()
        allowed = False
        for pattern, methods, fn, names in self.http_routes:
            m = pattern.match(path)
            if not m:
                continue
            allowed = True
            if methods and method not in methods:
                continue
            raw = body if isinstance(body, bytes) else (
                json.dumps(body).encode() if body is not None else b"")
            req = func.HttpRequest(method=method, url=f"http://127.0.0.1:7071{path}",
                                   headers={"content-type": "application/json",
                                            **(headers or {})},
                                   params=params or {}, route_params=m.groupdict(), body=raw)
            kwargs = {names["httpTrigger"]: req}
            if "durableClient" in names:
                kwargs[names["durableClient"]] = self.durable.client_binding()
            return self.durable.run_async(fn(**kwargs))
        status = 405 if allowed else 404
        return func.HttpResponse(json.dumps({"error": "no such route"}), status_code=status,
                                 mimetype="application/json")

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
        fn, names = self.blob_trigger
        kwargs = {names["blobTrigger"]: self.store.service.get_blob_client(INCOMING, name)}
        if "durableClient" in names:
            kwargs[names["durableClient"]] = self.durable.client_binding()
        self.durable.run_async(fn(**kwargs))


class BlobPoller:
    """Stands in for Event Grid locally: triggers once per new blob version in `incoming`."""

    def __init__(self, host: LocalFunctionHost, interval_s: float = 2.0,
                 include_existing: bool = False):
        self.host = host
        self.interval_s = interval_s
        self.seen: set[tuple[str, str]] = set()
        if not include_existing:
            self.seen = {(b.name, b.etag) for b in host.store.list(INCOMING)}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="blob-poller")

    def start(self) -> BlobPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def poll_once(self) -> int:
        fired = 0
        for b in self.host.store.list(INCOMING):
            key = (b.name, b.etag)
            if key in self.seen:
                continue
            self.seen.add(key)
            try:
                self.host.trigger_blob(b.name)
                fired += 1
            except Exception:
                log.exception("blob trigger failed for %s/%s", INCOMING, b.name)
        return fired

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll_once()
            except Exception:
                log.exception("polling %s failed", INCOMING)
