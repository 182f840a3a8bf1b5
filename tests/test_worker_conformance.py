"""The Function app as the real Python worker sees it, held to host.json and the infra.

The app is indexed and loaded with the worker's own code (PyPI ``azure-functions-runtime``:
``loader.index_function_app``, ``loader.process_indexed_function`` and ``functions.Registry``,
through ``stylebatch/worker.py``). In Azure and under `func start` one refused function fails
the whole app, so any load error fails here. Then every function's binding JSON — what the
worker reports to the host — is checked against what host.json, the Bicep app settings and the
Event Grid subscription expect. A deliberately broken app shows the check catches a refusal
with the worker's own message, and that `stylebatch serve` refuses it too.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import azurefunctions.extensions.bindings.blob as blob_types
import pytest

from functions.orchestrator import ORCHESTRATOR
from shared.jobs import INCOMING
from stylebatch import worker
from stylebatch.durable_host import DurableHost
from stylebatch.local_host import route_prefix
from tests.infra.bicep_text import block, read, strip_comments

REPO = Path(__file__).resolve().parent.parent
HOST_JSON = __import__("json").loads((REPO / "host.json").read_text())
FUNCTIONAPP_BICEP = strip_comments(read("infra/modules/functionapp.bicep"))
SUBSCRIPTION_BICEP = strip_comments(read("infra/hooks/eventgrid-subscription.bicep"))

# The HTTP API the README documents: (method, route under /api/).
API = {("GET", "jobs/{id}"), ("GET", "jobs"), ("POST", "jobs"), ("DELETE", "jobs/{id}"),
       # the web page and what it asks for (functions/web.py)
       ("GET", "ui"), ("GET", "styles"), ("POST", "uploads"), ("GET", "uploads"),
       ("GET", "jobs/{id}/links")}


@pytest.fixture(scope="module")
def app() -> worker.WorkerApp:
    return worker.load_app()  # raises AppLoadError with the worker's message on any refusal


def _base_app_settings() -> dict[str, str]:
    start = FUNCTIONAPP_BICEP.index("var baseSettings = {")
    body = FUNCTIONAPP_BICEP[start + len("var baseSettings = "):]
    body = body[: body.index("\n}\n") + 2]
    return {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
            for line in body.splitlines()[1:-1] if ":" in line}


def _param_default(src: str, name: str) -> str:
    m = re.search(rf"^param {name} string = '([^']*)'", src, re.M)
    assert m, f"no default for param {name}"
    return m.group(1)


def test_every_function_loads_in_the_real_worker(app: worker.WorkerApp):
    kinds = {name: fn.trigger["type"] for name, fn in app.functions.items()}
    assert kinds == {
        "on_upload": "blobTrigger", "video_pipeline": "orchestrationTrigger",
        **{a: "activityTrigger" for a in ("probe", "scan", "scan_state", "split",
                                          "split_state", "model_exists", "submit", "progress",
                                          "stitch", "stitch_state", "publish", "publish_state",
                                          "cleanup")},
        **{h: "httpTrigger" for h in ("get_job", "list_jobs", "create_job", "cancel_job",
                                      "web_page", "web_styles", "web_upload", "web_upload_job",
                                      "web_links")},
    }
    for fn in app.functions.values():  # the worker's registry entry is the function it calls
        assert fn.info.name == fn.name and callable(fn.info.func)


def test_durable_functions_are_known_by_the_names_the_orchestrator_uses(app):
    (orchestrator,) = app.with_trigger("orchestrationTrigger")
    # The extension resolves orchestrators and activities by function name: a trigger's own
    # name property that said something else would name a function nobody can call.
    assert orchestrator.name == orchestrator.trigger["orchestration"] == ORCHESTRATOR
    activities = {fn.name for fn in app.with_trigger("activityTrigger")}
    for fn in app.with_trigger("activityTrigger"):
        assert fn.trigger.get("activity", fn.name) == fn.name
        assert fn.info.is_async is False  # runs on the worker's thread pool, not its loop
    called = set(re.findall(r'job\.call\("(\w+)"', (REPO / "functions/orchestrator.py")
                            .read_text()))
    assert called and called <= activities, called - activities
    assert orchestrator.info.is_async is False


def test_durable_task_hub_and_its_storage_match_host_json_and_the_infra(app):
    durable = HOST_JSON["extensions"]["durableTask"]
    for fn in app.functions.values():
        client = fn.binding("durableClient")
        if client is not None:  # no per-binding override: host.json's hub and connection
            assert "taskHub" not in client and "connectionName" not in client, fn.name
    connection = durable["storageProvider"]["connectionName"]
    settings = _base_app_settings()
    assert settings[f"{connection}__credential"] == "'managedidentity'"
    assert f"{connection}__accountName" in settings and f"{connection}__clientId" in settings
    # the local host plays the same task hub, with as many activities at once
    defaults = inspect.signature(DurableHost).parameters
    assert defaults["task_hub"].default == durable["hubName"]
    assert defaults["activity_workers"].default == durable["maxConcurrentActivityFunctions"]


def test_blob_trigger_is_event_grid_with_an_sdk_type_client_on_the_storage_setting(app):
    (fn,) = app.with_trigger("blobTrigger")
    trigger = fn.trigger
    assert trigger["source"] == "EventGrid"  # the only blob trigger Flex Consumption runs
    assert trigger["path"] == INCOMING + "/{name}"
    assert trigger["properties"] == {"SupportsDeferredBinding": True}  # SDK type: no bytes read
    assert "dataType" not in trigger
    (pti,) = [p for name, p in fn.info.input_types.items() if name == trigger["name"]]
    assert pti.pytype is blob_types.BlobClient and pti.deferred_bindings_enabled
    # The extension builds the client from <connection>__blobServiceUri + managed identity.
    settings = _base_app_settings()
    connection = trigger["connection"]
    assert f"{connection}__blobServiceUri" in settings
    assert settings[f"{connection}__credential"] == "'managedidentity'"
    assert f"{connection}__clientId" in settings
    # Event Grid delivers BlobCreated in that container to this very function.
    assert _param_default(SUBSCRIPTION_BICEP, "triggerFunctionName") == fn.name
    assert _param_default(SUBSCRIPTION_BICEP, "container") == INCOMING
    assert "functionName=Host.Functions.${triggerFunctionName}" in SUBSCRIPTION_BICEP
    assert "'Microsoft.Storage.BlobCreated'" in block(SUBSCRIPTION_BICEP, "includedEventTypes")


def test_http_routes_methods_and_auth_levels_are_the_documented_api(app):
    prefix = HOST_JSON["extensions"]["http"]["routePrefix"]
    assert prefix == route_prefix(REPO) == "api"
    seen = set()
    for fn in app.with_trigger("httpTrigger"):
        trigger = fn.trigger
        assert trigger["authLevel"] == "FUNCTION", fn.name  # a function key in Azure
        (method,) = trigger["methods"]
        seen.add((method, trigger["route"]))
        assert fn.binding("http") == {"direction": "OUT", "type": "http", "name": "$return"}
        assert fn.info.return_type is not None
    assert seen == API


# The repository's app with one more activity, annotated as given.
APP_PLUS_ONE = """
    from typing import Any

    import azure.durable_functions as df
    import azure.functions as func

    from functions import activities, api, orchestrator, trigger, web

    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    for blueprint in (trigger.bp, orchestrator.bp, activities.bp, api.bp, web.bp):
        app.register_functions(blueprint)


    @app.activity_trigger(input_name="payload", activity="added")
    def added(payload: {annotation}) -> dict:
        return payload
"""
REFUSAL = ("FunctionLoadError: cannot load the added function: binding payload has invalid "
           "non-type annotation dict[str, typing.Any]")


def _write_app(folder: Path, annotation: str) -> Path:
    script = folder / f"app_{uuid.uuid4().hex[:8]}.py"  # a fresh module name per app
    script.write_text(textwrap.dedent(APP_PLUS_ONE).replace("{annotation}", annotation))
    return script


def test_a_bad_annotation_fails_the_app_with_the_workers_message(tmp_path: Path, app):
    good = worker.load_script(_write_app(tmp_path, "dict"))
    assert set(good.functions) == set(app.functions) | {"added"}
    with pytest.raises(worker.AppLoadError) as refused:
        worker.load_script(_write_app(tmp_path, "dict[str, Any]"))
    assert str(refused.value) == REFUSAL


def test_stylebatch_serve_and_run_refuse_an_app_the_worker_refuses(tmp_path: Path):
    script = _write_app(tmp_path, "dict[str, Any]")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORAGE")}
    for args in (["serve", "--port", "0", "--data", str(tmp_path / "az")],
                 ["run", str(script), "-q"]):
        # Were the app accepted, serve would start Azurite and run until the timeout.
        proc = subprocess.run([sys.executable, "-m", "stylebatch.cli", *args, "--app",
                               str(script)], capture_output=True, text=True, timeout=60,
                              env=env, cwd=REPO)
        assert proc.returncode == 3, (args, proc.stdout, proc.stderr)
        assert REFUSAL in proc.stderr
        assert "serving on" not in proc.stdout


def test_the_app_loads_the_same_after_an_app_without_sdk_types():
    """Each load is indexed as a fresh worker would index it, whatever was loaded before in the
    process (the worker looks up the SDK-type binding registry once per process)."""
    code = ("from stylebatch import worker; worker.load_app('tests.test_durable_host'); "
            "print(sorted(worker.load_app().functions))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "'on_upload'" in proc.stdout
