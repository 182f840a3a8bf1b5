"""A small reader for Bicep source text, enough for the infra tests to check structure.

No Bicep compiler can be installed here (the CLI is a .NET binary from GitHub/NuGet), so the tests
read the files themselves: comments are stripped, then `resource`, `module`, `param` and `output`
declarations are found and each declaration's `{ ... }` body is cut out with a brace matcher that
knows Bicep strings ('...', '''...''', escapes and ${...} interpolation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"


def strip_comments(src: str) -> str:
    """Remove // and /* */ comments, keeping strings (and line numbers) intact."""
    out: list[str] = []
    i, n = 0, len(src)
    while i < n:
        if src.startswith("'''", i):
            j = src.find("'''", i + 3)
            j = n if j < 0 else j + 3
            out.append(src[i:j])
            i = j
        elif src[i] == "'":
            j = i + 1
            while j < n and src[j] != "'":
                j += 2 if src[j] == "\\" else 1
            out.append(src[i : j + 1])
            i = j + 1
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * src.count("\n", i, j))
            i = j
        else:
            out.append(src[i])
            i += 1
    return "".join(out)


def matching_brace(src: str, start: int) -> int:
    """Index just past the bracket that closes the one at ``start`` (``{`` or ``[``)."""
    pairs = {"{": "}", "[": "]", "(": ")"}
    stack = [pairs[src[start]]]
    i, n = start + 1, len(src)
    while i < n:
        c = src[i]
        if src.startswith("'''", i):
            j = src.find("'''", i + 3)
            i = n if j < 0 else j + 3
            continue
        if c == "'":
            i = _skip_string(src, i)
            continue
        if c in pairs:
            stack.append(pairs[c])
        elif stack and c == stack[-1]:
            stack.pop()
            if not stack:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced bracket at offset {start}")


def _skip_string(src: str, i: int) -> int:
    """Index just past the single-quoted string starting at ``i`` (interpolations included)."""
    j = i + 1
    while j < len(src):
        if src[j] == "\\":
            j += 2
        elif src.startswith("${", j):
            j = matching_brace(src, j + 1)
        elif src[j] == "'":
            return j + 1
        else:
            j += 1
    raise ValueError(f"unterminated string at offset {i}")


@dataclass
class Decl:
    kind: str  # resource | module
    symbol: str
    target: str  # resource type (without version) or module path
    api_version: str
    existing: bool
    head: str  # text between '=' and the body (loops, conditions)
    body: str  # the object body, braces included

    def has(self, pattern: str) -> bool:
        return re.search(pattern, self.body) is not None


_DECL = re.compile(
    r"^\s*(resource|module)\s+(\w+)\s+'([^']+)'\s*(existing)?\s*=", re.MULTILINE
)


def declarations(src: str) -> list[Decl]:
    src = strip_comments(src)
    found = []
    for m in _DECL.finditer(src):
        kind, symbol, target, existing = m.group(1), m.group(2), m.group(3), bool(m.group(4))
        brace = src.index("{", m.end())
        body = src[brace : matching_brace(src, brace)]
        version = ""
        if kind == "resource":
            target, _, version = target.partition("@")
        found.append(Decl(kind, symbol, target, version, existing, src[m.end() : brace], body))
    return found


def resources(src: str, type_: str | None = None, *, existing: bool | None = False) -> list[Decl]:
    return [
        d
        for d in declarations(src)
        if d.kind == "resource"
        and (type_ is None or d.target.lower() == type_.lower())
        and (existing is None or d.existing == existing)
    ]


def modules(src: str) -> list[Decl]:
    return [d for d in declarations(src) if d.kind == "module"]


_PARAM = re.compile(r"^\s*param\s+(\w+)\s+([\w.]+(?:\[\])?\??)(\s*=)?", re.MULTILINE)
_OUTPUT = re.compile(r"^\s*output\s+(\w+)\s+", re.MULTILINE)


def params(src: str) -> dict[str, bool]:
    """Parameter name -> whether it has a default value (or is nullable)."""
    src = strip_comments(src)
    return {m.group(1): bool(m.group(3)) or m.group(2).endswith("?") for m in _PARAM.finditer(src)}


def outputs(src: str) -> set[str]:
    return {m.group(1) for m in _OUTPUT.finditer(strip_comments(src))}


def block(body: str, key: str) -> str:
    """The ``{...}`` or ``[...]`` value of ``key:`` inside ``body`` (first match), or ''."""
    m = re.search(rf"(?<![\w.]){re.escape(key)}\s*:\s*", body)
    if not m:
        return ""
    i = m.end()
    while i < len(body) and body[i] not in "{[":
        if body[i] == "\n":
            return ""
        i += 1
    if i >= len(body):
        return ""
    return body[i : matching_brace(body, i)]


def value(body: str, key: str) -> str | None:
    """The single-line value text of ``key:`` (first match), stripped, or None."""
    m = re.search(rf"(?<![\w.']){re.escape(key)}'?\s*:\s*(.+)", body)
    return m.group(1).strip() if m else None


def object_keys(obj: str) -> set[str]:
    """Top-level keys of a ``{ ... }`` object literal."""
    assert obj.startswith("{"), obj[:40]
    keys, depth, i = set(), 0, 1
    inner = obj[1:-1]
    line_start = True
    i = 0
    while i < len(inner):
        c = inner[i]
        if c == "'" and depth == 0 and line_start:
            end = _skip_string(inner, i)
            rest = inner[end:].lstrip(" ")
            if rest.startswith(":"):
                keys.add(inner[i + 1 : end - 1])
            i = end
            line_start = False
            continue
        if c == "'":
            i = _skip_string(inner, i)
            continue
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
        elif c == "\n":
            line_start = True
            i += 1
            continue
        elif depth == 0 and line_start and (c.isalpha() or c == "_"):
            m = re.match(r"(\w+)\s*:", inner[i:])
            if m:
                keys.add(m.group(1))
            line_start = False
        elif not c.isspace():
            line_start = False
        i += 1
    return keys


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def read(path: str | Path) -> str:
    p = Path(path)
    return (p if p.is_absolute() else REPO / p).read_text(encoding="utf-8")
