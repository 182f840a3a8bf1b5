"""Wiring checks a Bicep build would do, plus azd's own contract, without the Bicep compiler.

- every module path exists; every param passed to a module is declared there, and every required
  param is passed; every `<module>.outputs.<name>` that is read is declared by that module;
- infra/main.parameters.json and main.bicep agree; the outputs the hooks read exist;
- every resource type uses an API version known to exist (a typo is a deployment failure);
- every loadTextContent()/loadFileAsBase64() file exists;
- azure.yaml: service `api` is the repository root, Python on Functions, hooks are real scripts.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.infra import azd_yaml
from tests.infra.bicep_text import (
    INFRA,
    REPO,
    bicep_files,
    block,
    modules,
    object_keys,
    outputs,
    params,
    read,
    resources,
    strip_comments,
)

MAIN = INFRA / "main.bicep"
FILES = bicep_files()
IDS = [str(p.relative_to(REPO)) for p in FILES]

# API versions this project uses, each checked against the published resource reference.
KNOWN_API_VERSIONS = {
    "Microsoft.Resources/resourceGroups": {"2024-03-01", "2021-04-01"},
    "Microsoft.ManagedIdentity/userAssignedIdentities": {"2023-01-31"},
    "Microsoft.OperationalInsights/workspaces": {"2023-09-01"},
    "Microsoft.Insights/components": {"2020-02-02"},
    "Microsoft.Insights/diagnosticSettings": {"2021-05-01-preview"},
    "Microsoft.Storage/storageAccounts": {"2023-05-01"},
    "Microsoft.Storage/storageAccounts/blobServices": {"2023-05-01"},
    "Microsoft.Storage/storageAccounts/blobServices/containers": {"2023-05-01"},
    "Microsoft.Storage/storageAccounts/managementPolicies": {"2023-05-01"},
    "Microsoft.Storage/storageAccounts/queueServices": {"2023-05-01"},
    "Microsoft.Storage/storageAccounts/queueServices/queues": {"2023-05-01"},
    "Microsoft.Network/virtualNetworks": {"2024-05-01"},
    "Microsoft.Network/networkSecurityGroups": {"2024-05-01"},
    "Microsoft.Network/natGateways": {"2024-05-01"},
    "Microsoft.Network/publicIPAddresses": {"2024-05-01"},
    "Microsoft.Network/privateEndpoints": {"2024-05-01"},
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups": {"2024-05-01"},
    "Microsoft.Network/privateDnsZones": {"2024-06-01"},
    "Microsoft.Network/privateDnsZones/virtualNetworkLinks": {"2024-06-01"},
    "Microsoft.Web/sites/config": {"2024-04-01"},
    "Microsoft.Authorization/roleAssignments": {"2022-04-01"},
    "Microsoft.Batch/batchAccounts": {"2024-07-01"},
    "Microsoft.Batch/batchAccounts/applications": {"2024-07-01"},
    "Microsoft.Batch/batchAccounts/pools": {"2024-07-01"},
    "Microsoft.Web/serverfarms": {"2024-04-01"},
    "Microsoft.Web/sites": {"2024-04-01"},
    "Microsoft.Web/sites/host": {"2024-04-01"},
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": {"2024-04-01"},
    "Microsoft.EventGrid/systemTopics": {"2025-02-15"},
    "Microsoft.EventGrid/systemTopics/eventSubscriptions": {"2025-02-15"},
}
API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_api_versions_are_real(path):
    for r in resources(path.read_text(encoding="utf-8"), None, existing=None):
        assert API_VERSION.match(r.api_version), f"{r.symbol}: {r.target}@{r.api_version}"
        assert r.api_version in KNOWN_API_VERSIONS.get(r.target, set()), \
            f"{path.name} {r.symbol}: {r.target}@{r.api_version} is not a version known here"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_modules_get_the_params_they_declare(path):
    src = path.read_text(encoding="utf-8")
    for mod in modules(src):
        target = (path.parent / mod.target).resolve()
        assert target.is_file(), f"{path.name}: module {mod.symbol} -> {mod.target} is missing"
        declared = params(target.read_text(encoding="utf-8"))
        passed = object_keys(block(mod.body, "params") or "{}")
        unknown = passed - declared.keys()
        assert not unknown, f"{mod.symbol}: {sorted(unknown)} not declared in {mod.target}"
        missing = {p for p, has_default in declared.items() if not has_default} - passed
        assert not missing, f"{mod.symbol}: required {sorted(missing)} of {mod.target} not passed"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_module_outputs_that_are_read_exist(path):
    src = strip_comments(path.read_text(encoding="utf-8"))
    mods = {m.symbol: (path.parent / m.target).resolve() for m in modules(src)}
    for sym, name in set(re.findall(r"\b(\w+)\.outputs\.(\w+)", src)):
        assert sym in mods, f"{path.name}: {sym}.outputs.{name}: {sym} is not a module"
        declared = outputs(mods[sym].read_text(encoding="utf-8"))
        assert name in declared, f"{path.name}: {sym}.outputs.{name} is not declared"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_loaded_files_exist(path):
    src = strip_comments(path.read_text(encoding="utf-8"))
    loads = r"load(?:TextContent|FileAsBase64|JsonContent|YamlContent)\(\s*'([^']+)'"
    for rel in re.findall(loads, src):
        assert (path.parent / rel).is_file(), f"{path.name}: {rel}"


def test_resource_symbols_are_unique_per_file():
    for path in FILES:
        src = path.read_text(encoding="utf-8")
        symbols = [d.symbol for d in resources(src, None, existing=None)] + \
                  [m.symbol for m in modules(src)]
        assert len(symbols) == len(set(symbols)), path.name


def test_parameters_file_matches_main():
    declared = params(read(MAIN))
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(declared), set(given) - set(declared)
    required = {p for p, has_default in declared.items() if not has_default}
    assert required <= set(given), required - set(given)
    assert given["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert given["location"]["value"] == "${AZURE_LOCATION}"
    assert given["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"


def test_main_targets_the_subscription_and_tags_for_azd():
    src = strip_comments(read(MAIN))
    assert re.search(r"^targetScope = 'subscription'", src, re.MULTILINE)
    assert "'azd-env-name': environmentName" in src


def test_main_parameter_defaults():
    src = strip_comments(read(MAIN))
    assert "param gpuVmSize string = 'Standard_NC4as_T4_v3'" in src
    for name in ("maxGpuNodes", "useSpotNodes", "location", "batchSubnetId"):
        assert name in params(src), name


def test_outputs_the_hooks_and_docs_use_exist():
    declared = outputs(read(MAIN))
    used = set()
    for script in (INFRA / "hooks").glob("*.sh"):
        used |= set(re.findall(r"\b(AZURE_[A-Z_]+)\b", script.read_text()))
    # Set by azd itself, not by our outputs.
    used -= {"AZURE_SUBSCRIPTION_ID", "AZURE_ENV_NAME", "AZURE_BATCH_APPLICATION_VERSION"}
    assert used <= declared, used - declared
    assert {"AZURE_FUNCTION_APP_NAME", "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_RESOURCE_GROUP",
            "AZURE_LOCATION"} <= declared


# --- azure.yaml -----------------------------------------------------------------------------------

AZURE_YAML = REPO / "azure.yaml"


def test_azure_yaml_service_is_the_repository_root():
    doc = azd_yaml.load(AZURE_YAML)
    api = doc["services"]["api"]
    assert os.path.normpath(REPO / api["project"]) == str(REPO)
    assert api["language"] in ("python", "py")
    assert api["host"] == "function"
    assert doc["infra"]["path"] == "infra" and doc["infra"]["module"] == "main"
    assert (REPO / doc["infra"]["path"] / f"{doc['infra']['module']}.bicep").is_file()


def test_azure_yaml_hooks_are_executable_scripts():
    doc = azd_yaml.load(AZURE_YAML)
    for name in ("postprovision", "postdeploy"):
        hook = doc["hooks"][name]
        script = REPO / hook["run"]
        assert script.is_file() and os.access(script, os.X_OK), hook["run"]
        assert hook["shell"] == "sh"


def test_mapping_reader_agrees_with_yaml_when_available():
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed; the subset reader is used")
    text = AZURE_YAML.read_text()
    assert azd_yaml.parse_mapping_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_no_unused_params_or_variables(path):
    """What the Bicep linter warns about (no-unused-params, no-unused-vars)."""
    src = strip_comments(path.read_text(encoding="utf-8"))
    names = set(params(src)) | set(re.findall(r"^\s*var\s+(\w+)\s*=", src, re.MULTILINE))
    for name in names:
        uses = len(re.findall(rf"(?<![\w.]){name}\b", src))
        assert uses > 1, f"{path.name}: {name} is declared but never used"
