"""The real Python worker's door, for the host-less hosts: index, load and invoke the Function app
through the worker's own code (the PyPI package ``azure-functions-runtime``).

The Functions host starts the Python worker, which imports ``function_app.py``, indexes it
(``loader.index_function_app``), validates every function against its bindings
(``functions.Registry`` via ``loader.process_indexed_function``: annotations, directions,
``$return``) and reports each function's binding JSON to the host. One refused function fails
the whole app. ``load_app`` runs those same steps, so `stylebatch run/serve` and the tests
accept exactly the apps the worker accepts, and see the binding JSON the host would read.

``invoke`` then calls a function the way the worker's ``invocation_request`` does: each input
arrives as the host's typed data (a ``Datum``), is decoded by the converter the worker picks for
that binding (azure-functions' converters; the blob extension's for the SDK-type
``BlobClient``), ``async def`` functions run on one event loop and plain ones on a thread, and
the return value is encoded by the return binding's converter into the ``Datum`` the host gets.

The worker is handed its protobuf module by the host; ``_Protos`` stands in for the few
messages indexing builds, with the protobuf enum values (a real ``BindingInfo.out`` is the int
1, so the worker's direction checks behave as they do in Azure).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from azure_functions_runtime import loader
from azure_functions_runtime.bindings import meta
from azure_functions_runtime.bindings.context import get_context
from azure_functions_runtime.bindings.datumdef import Datum
from azure_functions_runtime.bindings.out import Out
from azure_functions_runtime.functions import FunctionInfo, Registry
from azure_functions_runtime.utils.executor import execute_async, run_sync_func

__all__ = ["AppLoadError", "Datum", "LoadedFunction", "WorkerApp", "invoke", "load_app",
           "load_script"]


class _Message:
    """A protobuf message stand-in: keeps the fields it was built with."""

    def __init__(self, **fields: Any):
        self.__dict__.update(fields)


class _BindingInfo(_Message):
    # protobuf enum values of BindingInfo.Direction and BindingInfo.DataType
    out, inout = 1, 2
    undefined, string, binary, stream = 0, 1, 2, 3


_Protos = SimpleNamespace(BindingInfo=_BindingInfo, RpcFunctionMetadata=_Message,
                          RpcRetryOptions=_Message)


class AppLoadError(Exception):
    """The worker refused the app; the message is the worker's own (type: text)."""


@dataclass(frozen=True)
class LoadedFunction:
    """One function as the worker loaded it: its registry entry and its binding JSON."""

    name: str
    info: FunctionInfo
    bindings: tuple[dict[str, Any], ...]  # the raw binding JSON the host reads
    directory: str

    @property
    def trigger(self) -> dict[str, Any]:
        (trigger,) = [b for b in self.bindings if b["type"].endswith("Trigger")]
        return trigger

    def binding(self, type_: str) -> dict[str, Any] | None:
        found = [b for b in self.bindings if b["type"] == type_]
        return found[0] if found else None


@dataclass
class WorkerApp:
    """The app as the worker indexed it: every function, in the app's order."""

    module: str
    functions: dict[str, LoadedFunction] = field(default_factory=dict)

    def with_trigger(self, type_: str) -> list[LoadedFunction]:
        return [f for f in self.functions.values() if f.trigger["type"] == type_]


_loaded: dict[str, WorkerApp | AppLoadError] = {}
_lock = threading.Lock()


def load_app(module: str = "function_app") -> WorkerApp:
    """Index and load the app in ``module`` with the worker's code; once per process.

    The worker imports the script's stem as a module, so a dotted name reaches an app inside a
    package too (tests load their own small apps that way). The app object can be indexed only
    once (a second ``get_functions()`` sees every name twice), so the result — or the refusal —
    is kept for the process. Raises ``AppLoadError`` with the worker's message.
    """
    with _lock:
        if module not in _loaded:
            _loaded[module] = _load(module)
        result = _loaded[module]
    if isinstance(result, AppLoadError):
        raise result
    return result


def load_script(script: str | Path) -> WorkerApp:
    """``load_app`` for a script file (``function_app.py`` in a Function app folder), as the
    worker finds it: the folder goes on ``sys.path`` and the file's stem is imported."""
    path = Path(script).resolve()
    if not path.is_file():
        raise AppLoadError(f"FileNotFoundError: no such script: {path}")
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    app = load_app(path.stem)
    imported = Path(sys.modules[path.stem].__file__ or "").resolve()
    if imported != path:
        raise AppLoadError(f"ImportError: {path.stem} was already imported from {imported}")
    return app


def _load(module: str) -> WorkerApp | AppLoadError:
    meta.load_binding_registry()
    # The worker looks for the SDK-type (deferred) binding registry once per process, and only
    # if the app imported the extension; a process here may load several apps (tests), so each
    # load starts as a fresh worker's would when none was found yet.
    if meta.DEFERRED_BINDING_REGISTRY is None:
        meta._DEFERRED_BINDING_REGISTRY_LOADED = False
    try:
        indexed = loader.index_function_app(module + ".py")
        directory = str(Path(sys.modules[module].__file__ or ".").resolve().parent)
        registry = Registry()
        metadata, _ = loader.process_indexed_function(_Protos, registry, indexed, directory)
    except Exception as exc:  # the worker reports any error here as the app's load failure
        return AppLoadError(f"{type(exc).__name__}: {exc}")
    app = WorkerApp(module=module)
    for md in metadata:
        info = registry.get_function(md.function_id)
        assert info is not None
        app.functions[md.name] = LoadedFunction(
            name=md.name, info=info, directory=directory,
            bindings=tuple(json.loads(b) for b in md.raw_bindings))
    return app


def invoke(fn: LoadedFunction, inputs: dict[str, Datum],
           trigger_metadata: dict[str, Datum] | None = None, *,
           loop: asyncio.AbstractEventLoop | None = None,
           timeout: float | None = None) -> Datum | None:
    """Invoke ``fn`` as the worker does; returns the return binding's ``Datum`` (or None).

    ``async def`` functions run on ``loop`` (the worker has one event loop for all of them);
    plain functions run on the calling thread (the worker's thread pool: callers here are
    already off the loop). Exceptions from the function propagate, as a failed invocation.
    """
    fi = fn.info
    args: dict[str, Any] = {}
    for name, datum in inputs.items():
        pti = fi.input_types[name]
        binding = meta.get_binding(pti.binding_name, pti.deferred_bindings_enabled)
        metadata = (trigger_metadata or {}) if meta.is_trigger_binding(pti.binding_name) else {}
        if pti.deferred_bindings_enabled:
            args[name] = meta.deferred_bindings_decode(
                binding=binding, pb=None, pytype=pti.pytype, datum=datum, metadata=metadata,
                function_name=fi.name)
        else:
            args[name] = binding.decode(datum, trigger_metadata=metadata)
    invocation_id = str(uuid.uuid4())
    context = get_context(_invocation(invocation_id), fi.name, fi.directory)
    if fi.requires_context:
        args["context"] = context
    for name in fi.output_types:
        args[name] = Out()
    if fi.is_async:
        if loop is None:
            raise RuntimeError(f"{fi.name} is async: the worker runs it on its event loop")
        if _running_loop() is loop:
            raise RuntimeError("invoke() on the event loop's own thread would wait for itself")
        result = asyncio.run_coroutine_threadsafe(execute_async(fi.func, args),
                                                  loop).result(timeout)
    else:
        result = run_sync_func(invocation_id, context, fi.func, args)
    if result is not None and not fi.has_return:
        raise RuntimeError(f"function {fi.name!r} without a $return binding returned a "
                           "non-None value")
    if fi.return_type is None:
        return None
    return meta.get_datum(fi.return_type.binding_name, result, fi.return_type.pytype)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _invocation(invocation_id: str) -> SimpleNamespace:
    """The parts of an InvocationRequest the worker's context reads."""
    return SimpleNamespace(
        invocation_id=invocation_id,
        trace_context=SimpleNamespace(trace_parent="", trace_state="", attributes={}),
        retry_context=SimpleNamespace(retry_count=0, max_retry_count=0, exception=None))
