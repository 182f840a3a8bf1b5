"""The scanner wrapper's one piece of logic: fixing `vnetEnabled` for each scan. (The scans
themselves run in `make scan`, part of `make test`, with checkov and bandit from .venv-scan.)"""

from __future__ import annotations

from tests.infra.bicep_text import bicep_files
from tests.infra.iac_scan import with_switch

SRC = """param vnetEnabled bool = false
resource s 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35:vnetEnabled=false only: public without a VNet, Deny with one
  //checkov:skip=CKV_AZURE_206:a reason that holds either way, long enough
  properties: {
    vnetEnabled: vnetEnabled
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: vnetEnabled ? 'Deny' : 'Allow'
    }
    subnet: vnetEnabled ? network.outputs.poolSubnetId : batchSubnetId
  }
}
"""


def test_each_value_resolves_the_ternaries_it_decides():
    on, off = with_switch(SRC, True), with_switch(SRC, False)
    assert "param vnetEnabled bool = true" in on and "param vnetEnabled bool = false" in off
    assert "publicNetworkAccess: 'Disabled'" in on and "defaultAction: 'Deny'" in on
    assert "publicNetworkAccess: 'Enabled'" in off and "defaultAction: 'Allow'" in off
    assert "subnet: network.outputs.poolSubnetId" in on and "subnet: batchSubnetId" in off
    assert "    vnetEnabled: true" in on  # a module parameter name stays a name


def test_skips_for_the_public_variant_only_are_dropped_with_vnet_enabled():
    on, off = with_switch(SRC, True), with_switch(SRC, False)
    assert "CKV_AZURE_35" in off and "CKV_AZURE_35" not in on
    assert "CKV_AZURE_206" in on and "CKV_AZURE_206" in off


def test_every_use_of_the_switch_in_infra_resolves():
    for path in bicep_files():
        on = with_switch(path.read_text(encoding="utf-8"), True)
        assert "true ?" not in on and "false ?" not in on, path.name
