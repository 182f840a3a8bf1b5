"""Offline syntax checks for every Bicep file under infra/ (infra/batch/ included).

The Bicep compiler cannot be installed here (a .NET binary from GitHub/NuGet; no npm or PyPI
package ships it), so two independent parsers from PyPI stand in for `bicep build`'s syntax pass:
  - tree-sitter-bicep (the tree-sitter grammar): reports ERROR/MISSING nodes with positions;
  - pycep-parser (a Lark grammar of Bicep): must turn each file into its JSON-like structure.
Each is skipped, with the reason, when its package is absent
(`pip install tree-sitter tree-sitter-bicep pycep-parser`). They check syntax only;
types, API versions and symbol references are checked by test_infra_wiring.py.
"""

from __future__ import annotations

import pytest

from tests.infra.bicep_text import REPO, bicep_files

FILES = bicep_files()
IDS = [str(p.relative_to(REPO)) for p in FILES]


def test_there_is_bicep_to_check():
    assert (REPO / "infra" / "main.bicep") in FILES


def _tree_sitter_parser():
    try:
        import tree_sitter
        import tree_sitter_bicep
    except ImportError as exc:
        pytest.skip(f"tree-sitter-bicep not installed ({exc}); "
                    "pip install tree-sitter tree-sitter-bicep to check Bicep syntax")
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def _errors(node, out):
    if node.type == "ERROR" or node.is_missing:
        row, col = node.start_point
        out.append(f"line {row + 1} col {col + 1}: {node.type} {node.text[:80]!r}")
    for child in node.children:
        _errors(child, out)
    return out


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_tree_sitter_parses_without_errors(path):
    parser = _tree_sitter_parser()
    tree = parser.parse(path.read_bytes())
    assert _errors(tree.root_node, []) == []


def test_tree_sitter_catches_a_syntax_error():
    """The check above is live: a broken file is reported."""
    parser = _tree_sitter_parser()
    broken = (b"resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n"
              b"  name: 'x'\n  properties: {\n}\n")
    assert _errors(parser.parse(broken).root_node, [])


def _pycep():
    try:
        from pycep import BicepParser
    except ImportError as exc:
        pytest.skip(f"pycep-parser not installed ({exc}); "
                    "pip install pycep-parser to check Bicep syntax")
    return BicepParser()


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_pycep_parses(path):
    parsed = _pycep().parse(text=path.read_text(encoding="utf-8"))
    assert isinstance(parsed, dict)
    assert parsed.get("resources") or parsed.get("modules") or parsed.get("outputs")


def test_pycep_catches_a_syntax_error():
    with pytest.raises(Exception):  # noqa: B017 - any parse error will do
        _pycep().parse(text="param x string = \nresource y 'A/b@2020-01-01' = {{\n")
