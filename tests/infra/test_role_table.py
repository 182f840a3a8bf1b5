"""Who may do what, read from the Bicep: every role assignment as (identity, role, scope).

The table below is the whole of it: an assignment added, widened or moved in infra/ fails
this test until the table (and docs/security.md, which must show the same rows) says so.
The point of the table: a tenant's upload can touch nothing else. Uploaders reach only
`incoming` (write) and `outgoing` (read); the Batch nodes hold no data role at all (each task
carries SAS URLs for its own blobs); the app's code package sits in an account no user can write.
"""

from __future__ import annotations

import re

from tests.infra.bicep_text import REPO, block, read, resources, strip_comments, value

ROLE_NAMES = {
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "db58b8e5-c6ad-4a2a-8342-4190687cbf4a": "Storage Blob Delegator",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "48e5e92e-a480-4e71-aa9c-2778f4c13781": "Azure Batch Job Submitter",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
IDENTITIES = {
    "functionPrincipalId": "Function app",
    "eventGridPrincipalId": "Event Grid topic",
    "uploadersPrincipalId": "uploaders",
    "deployerPrincipalId": "deployer",
    "batchAccountIdentityPrincipalId": "Batch account",
    "poolIdentityPrincipalId": "Batch pool (nodes)",
}
# Scope symbol in each file -> what it is.
SCOPES = {
    "rbac.bicep": {"storage": "data account", "hostStorage": "host account",
                   "poisonQueue": "data queue webjobs-blobtrigger-poison",
                   "batchAccount": "Batch account", "applicationInsights": "Application Insights"},
    "batch-account.bicep": {"autoStorage": "Batch auto-storage account"},
}

EXPECTED = {
    # The Function app: least per container, account-wide only where the platform needs it.
    ("Function app", "Storage Blob Data Reader", "data: incoming"),
    ("Function app", "Storage Blob Data Reader", "data: styles"),
    ("Function app", "Storage Blob Data Contributor", "data: models"),
    ("Function app", "Storage Blob Data Contributor", "data: work"),
    ("Function app", "Storage Blob Data Contributor", "data: outgoing"),
    ("Function app", "Storage Blob Delegator", "data account"),
    ("Function app", "Storage Queue Data Contributor", "data queue webjobs-blobtrigger-poison"),
    ("Function app", "Storage Blob Data Contributor", "host account"),
    ("Function app", "Storage Queue Data Contributor", "host account"),
    ("Function app", "Storage Table Data Contributor", "host account"),
    ("Function app", "Azure Batch Job Submitter", "Batch account"),
    ("Function app", "Monitoring Metrics Publisher", "Application Insights"),
    # Batch: packages only; no data role for the nodes.
    ("Batch account", "Storage Blob Data Contributor", "Batch auto-storage account"),
    ("Batch pool (nodes)", "Storage Blob Data Reader", "Batch auto-storage account"),
    ("Event Grid topic", "Storage Blob Data Contributor", "data: deadletter"),
    # People.
    ("uploaders", "Storage Blob Data Contributor", "data: incoming"),
    ("uploaders", "Storage Blob Data Reader", "data: outgoing"),
    ("deployer", "Storage Blob Data Contributor", "data: incoming"),
    ("deployer", "Storage Blob Data Reader", "data: outgoing"),
    ("deployer", "Storage Blob Data Contributor", "data: styles"),
    ("deployer", "Storage Blob Data Contributor", "data: models"),
}


def _roles(src: str) -> dict[str, str]:
    """``var roles = {key: 'guid'}`` -> key -> role name."""
    m = re.search(r"var roles = (\{)", src)
    body = src[m.start(1):]
    body = body[: body.index("\n}") + 2]
    return {k: ROLE_NAMES[g] for k, g in re.findall(r"(\w+): '([0-9a-f-]{36})'", body)}


def _array_var(src: str, name: str) -> str:
    m = re.search(rf"^var {name} = (\[)", src, re.MULTILINE)
    assert m, name
    rest = src[m.start(1):]
    return rest[: rest.index("\n]") + 2]


def _objects(array: str) -> list[str]:
    return re.findall(r"\{[^{}]*\}", array)


def assignments() -> set[tuple[str, str, str]]:
    found = set()
    for rel in ("infra/modules/rbac.bicep", "infra/modules/batch-account.bicep"):
        src = strip_comments(read(rel))
        roles = _roles(src)
        scopes = SCOPES[rel.rsplit("/", 1)[1]]
        for r in resources(src, "Microsoft.Authorization/roleAssignments"):
            if "in containerGrants" in r.head:
                grants = []
                line = re.search(r"^var containerGrants = (.*)$", src, re.MULTILINE).group(1)
                for var in re.findall(r"\b(\w+Grants)\b", line):
                    grants += _objects(_array_var(src, var))
                for g in grants:
                    role = roles[value(g, "role").removeprefix("roles.")]
                    found.add((IDENTITIES[value(g, "principalId")], role,
                               f"data: {value(g, 'container').strip(chr(39))}"))
                continue
            props = block(r.body, "properties")
            who = IDENTITIES[value(props, "principalId")]
            scope = scopes[value(r.body, "scope")]
            loop = re.search(r"\[for role in (\w+):", r.head)
            if loop:
                keys = re.findall(r"roles\.(\w+)", _array_var(src, loop.group(1)))
            else:
                keys = [re.search(r"roles\.(\w+)\)", props).group(1)]
            for key in keys:
                found.add((who, roles[key], scope))
    return found


def test_every_assignment_is_in_the_table_and_nothing_more():
    got = assignments()
    assert got - EXPECTED == set(), f"not in the table: {sorted(got - EXPECTED)}"
    assert EXPECTED - got == set(), f"in the table, not in the Bicep: {sorted(EXPECTED - got)}"


def test_an_uploader_can_touch_nothing_but_incoming_and_read_outgoing():
    mine = {(role, scope) for who, role, scope in EXPECTED if who == "uploaders"}
    assert mine == {("Storage Blob Data Contributor", "data: incoming"),
                    ("Storage Blob Data Reader", "data: outgoing")}


def test_the_nodes_hold_no_data_role_and_nobody_owns_an_account():
    for who, role, scope in assignments():
        assert "Owner" not in role, (who, role, scope)
        if who == "Batch pool (nodes)":
            assert scope == "Batch auto-storage account", (who, role, scope)
        if scope == "host account":  # the app's code and host state
            assert who == "Function app", (who, role, scope)
        if scope == "data account":  # account-wide on user data: signing keys only
            assert role == "Storage Blob Delegator", (who, role, scope)


def test_the_table_in_docs_is_this_table():
    doc = (REPO / "docs" / "security.md").read_text(encoding="utf-8")
    section = doc[doc.index("<!-- role-table:after -->"):doc.index("<!-- /role-table:after -->")]
    rows = set()
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("Identity", "") and not cells[0].startswith("-"):
            rows.add(tuple(cells))
    assert rows == EXPECTED
