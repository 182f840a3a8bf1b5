"""The IaC and code scanners `make test` runs (target `scan`): checkov on infra/ for both values of
the `vnetEnabled` switch, and bandit on the app's code. Prints the counts; exits non-zero on any
failed check that is not skipped in the Bicep with a reason (`//checkov:skip=CKV_…:why`), on a
Bicep file checkov cannot parse, or on a bandit finding of medium or high severity.

    .venv/bin/python -m tests.infra.iac_scan    # --checkov/--bandit: .venv-scan/bin/… by default

checkov does not evaluate parameters, so each value of `vnetEnabled` gets its own copy of infra/
with the switch written in as a literal and `true ? a : b` / `false ? a : b` resolved: the scanner
then sees exactly the values that deployment would get. A skip whose reason starts with
`vnetEnabled=false only` is dropped from the `vnetEnabled=true` copy: that check must pass there.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP_CODE = ("functions", "shared", "stylebatch", "scoring", "function_app.py")
SWITCH = "vnetEnabled"
_OPERAND = r"('[^'\n]*'|[\w.]+|\[\])"
_TERNARY = re.compile(rf"\b(true|false) \? {_OPERAND} : {_OPERAND}")
_OFF_ONLY_SKIP = re.compile(r"^\s*//checkov:skip=\w+:vnetEnabled=false only\b.*\n", re.M)


def with_switch(src: str, on: bool) -> str:
    """Bicep source with ``vnetEnabled`` fixed to ``on`` and the ternaries it decides resolved."""
    literal = "true" if on else "false"
    src = re.sub(rf"^(param {SWITCH} bool)( = \w+)?", rf"\1 = {literal}", src, flags=re.M)
    lines = []
    for line in src.splitlines(keepends=True):
        if line.lstrip().startswith("//") or re.match(rf"\s*param {SWITCH}\b", line):
            lines.append(line)  # comments (skip reasons) and the declaration itself
            continue
        key = re.match(rf"(\s*{SWITCH}\s*:)(.*)", line, re.S)  # a module parameter's name
        head, tail = (key.group(1), key.group(2)) if key else ("", line)
        lines.append(head + re.sub(rf"(?<![\w.]){SWITCH}\b", literal, tail))
    src = "".join(lines)
    if on:
        src = _OFF_ONLY_SKIP.sub("", src)
    return _TERNARY.sub(lambda m: m.group(2) if m.group(1) == "true" else m.group(3), src)


def checkov(exe: str, infra: Path, on: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"scan-vnet-{str(on).lower()}-") as tmp:
        root = Path(tmp) / "infra"
        shutil.copytree(infra, root)
        for path in root.rglob("*.bicep"):
            path.write_text(with_switch(path.read_text(encoding="utf-8"), on), encoding="utf-8")
        proc = subprocess.run([exe, "-d", str(root), "--framework", "bicep", "-o", "json"],
                              capture_output=True, text=True, check=False)
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    total = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0, "failures": []}
    for r in reports:
        for key in ("passed", "failed", "skipped", "parsing_errors"):
            total[key] += r["summary"][key]
        total["failures"] += [f"{c['check_id']} {c['file_path']} {c['resource']}: "
                              f"{c['check_name']}" for c in r["results"]["failed_checks"]]
    return total


def bandit(exe: str) -> dict:
    proc = subprocess.run([exe, "-q", "-r", *APP_CODE, "-f", "json"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    results = json.loads(proc.stdout)["results"]
    counts = {"LOW": 0, "MEDIUM": 0, "HIGH": 0}
    for r in results:
        counts[r["issue_severity"]] += 1
    bad = [f"{r['test_id']} {r['filename']}:{r['line_number']} {r['issue_text']}"
           for r in results if r["issue_severity"] in ("MEDIUM", "HIGH")]
    return {**counts, "findings": bad}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkov", default=str(REPO / ".venv-scan" / "bin" / "checkov"))
    p.add_argument("--bandit", default=str(REPO / ".venv-scan" / "bin" / "bandit"))
    args = p.parse_args(argv)
    ok = True
    for on in (False, True):
        r = checkov(args.checkov, REPO / "infra", on)
        print(f"checkov infra/ ({SWITCH}={str(on).lower()}): {r['passed']} passed, "
              f"{r['failed']} failed, {r['skipped']} skipped (each with its reason in the "
              f"Bicep), {r['parsing_errors']} parsing errors")
        for line in r["failures"]:
            print(f"  FAILED {line}")
        ok &= r["failed"] == 0 and r["parsing_errors"] == 0
    b = bandit(args.bandit)
    print(f"bandit {' '.join(APP_CODE)}: {b['HIGH']} high, {b['MEDIUM']} medium, {b['LOW']} low")
    for line in b["findings"]:
        print(f"  {line}")
    ok &= not b["findings"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
