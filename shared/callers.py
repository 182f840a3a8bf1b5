"""Who is calling the HTTP API, and what that caller may see and do.

In Azure, App Service authentication (Entra ID, infra/modules/functionapp.bicep) sits in front
of the app: a request reaches it only with a valid sign-in, and the platform passes the caller
in headers it sets itself (whatever a client sends under those names is replaced):

    X-MS-CLIENT-PRINCIPAL-ID    the caller's object id
    X-MS-CLIENT-PRINCIPAL-NAME  a display name (user principal name, app name)
    X-MS-CLIENT-PRINCIPAL       base64 JSON {"auth_typ", "claims": [{"typ", "val"}], "role_typ"}
                                whose role claims carry app roles (ADMIN_ROLE sees every job)

Locally (`stylebatch serve`, the tests) the same code runs: with no principal header and
``LOCAL_CALLER`` set, the request runs as that fixed identity (the machine's one user, an
admin); a test or a local client may send the headers above to act as someone else.

Rules (the API applies them; the ids are validated here, at the door):
- every job started through the API records its caller (``JobRequest.caller``, the status's
  ``caller``), and so does a job started by an upload through an upload URL the app issued (the
  caller who asked for it, ``shared/uploads.py``); jobs started by any other upload have none;
- a caller reads, lists and cancels only its own jobs; an admin sees and cancels all; a job with
  no caller (an upload) can be read by id by any signed-in caller, listed and cancelled by admins;
- a caller may have at most ``MAX_ACTIVE_JOBS_PER_CALLER`` unfinished jobs.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.jobs import InvalidName, validate_caller
from shared.settings import Settings

PRINCIPAL = "x-ms-client-principal"
PRINCIPAL_ID = "x-ms-client-principal-id"
PRINCIPAL_NAME = "x-ms-client-principal-name"
_ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
_OID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
# What `stylebatch serve/run` run as (LOCAL_CALLER): the machine's owner, an admin.
LOCAL_IDENTITY = "local-dev"
_MAX_PRINCIPAL_BYTES = 16 * 1024


class NotSignedIn(Exception):
    """No usable caller on the request (401)."""


@dataclass(frozen=True)
class Caller:
    id: str
    name: str = ""
    admin: bool = False

    def may_see(self, owner: str | None) -> bool:
        """Read access to a job whose caller is ``owner`` (None/'' = started by an upload)."""
        return self.admin or not owner or owner == self.id

    def may_manage(self, owner: str | None) -> bool:
        """Cancel (and list) a job whose caller is ``owner``."""
        return self.admin or (bool(owner) and owner == self.id)


def validate_caller_id(caller_id: str) -> str:
    try:
        if caller_id and validate_caller(caller_id):
            return caller_id
    except InvalidName:
        pass
    raise NotSignedIn("the caller's id is not usable")


def _claims(encoded: str) -> dict[str, list[str]]:
    if len(encoded) > _MAX_PRINCIPAL_BYTES:
        raise NotSignedIn("the client principal header is too large")
    try:
        data = json.loads(base64.b64decode(encoded, validate=False))
    except (binascii.Error, ValueError) as exc:
        raise NotSignedIn("the client principal header is not base64 JSON") from exc
    claims: dict[str, list[str]] = {}
    if not isinstance(data, dict) or not isinstance(data.get("claims", []), list):
        raise NotSignedIn("the client principal header has no claims")
    role_typ = data.get("role_typ")
    for claim in data.get("claims", []):
        if isinstance(claim, dict) and isinstance(claim.get("typ"), str) \
                and isinstance(claim.get("val"), str):
            typ = "roles" if claim["typ"] == role_typ else claim["typ"]
            claims.setdefault(typ, []).append(claim["val"])
    return claims


def caller_from_headers(headers: Mapping[str, str], settings: Settings) -> Caller:
    """The caller of a request, from the headers App Service authentication sets (or the
    fixed local identity). Raises NotSignedIn when there is none."""
    h = {k.lower(): v for k, v in headers.items()}
    principal, principal_id = h.get(PRINCIPAL), h.get(PRINCIPAL_ID)
    if not principal and not principal_id:
        if settings.local_caller:  # no sign-in in front of a local host: its one user
            return Caller(validate_caller_id(settings.local_caller), settings.local_caller,
                          admin=True)
        raise NotSignedIn("sign in first: this API needs an Entra ID token")
    claims = _claims(principal) if principal else {}
    oid = principal_id or next((v for c in _OID_CLAIMS for v in claims.get(c, [])), "")
    roles = {v for c in _ROLE_CLAIMS for v in claims.get(c, [])}
    name = h.get(PRINCIPAL_NAME) or next(iter(claims.get("name", [])), "")
    return Caller(validate_caller_id(oid), name[:128], admin=settings.admin_role in roles)


def principal_headers(caller_id: str, name: str = "", roles: tuple[str, ...] = ()
                      ) -> dict[str, str]:
    """The headers App Service authentication would send for a caller (local clients, tests)."""
    role_typ = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    claims: list[dict[str, Any]] = [{"typ": _OID_CLAIMS[0], "val": caller_id}]
    claims += [{"typ": role_typ, "val": r} for r in roles]
    if name:
        claims.append({"typ": "name", "val": name})
    body = {"auth_typ": "aad", "name_typ": "name", "role_typ": role_typ, "claims": claims}
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(body).encode()).decode(),
            "X-MS-CLIENT-PRINCIPAL-ID": caller_id, "X-MS-CLIENT-PRINCIPAL-NAME": name}
