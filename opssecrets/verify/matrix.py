"""The Matrix registration-token validity check (client-server API v1.2+, conduwuit has it)."""

from __future__ import annotations

import os
import urllib.parse

from opssecrets.verify.http import DEFAULT_TIMEOUT, Rejected, Unreachable, VerifyResult, request_json, scrub

HOMESERVER_ENV = "OPSSECRETS_HOMESERVER"
VALIDITY_PATH = "/_matrix/client/v1/register/m.login.registration_token/validity"


def homeserver_url(explicit: str | None, policy_default: str) -> str:
    """``--homeserver``, else ``OPSSECRETS_HOMESERVER``, else the policy's."""
    url = explicit or os.environ.get(HOMESERVER_ENV) or policy_default
    if not url:
        raise Unreachable("no homeserver URL: pass --homeserver https://... or set homeserver in the policy")
    return url.rstrip("/")


class MatrixClient:
    def __init__(self, homeserver: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.homeserver = homeserver.rstrip("/")
        self.timeout = timeout

    def registration_token_valid(self, token: str) -> VerifyResult:
        query = urllib.parse.urlencode({"token": token})
        status, reply = request_json(
            "GET",
            f"{self.homeserver}{VALIDITY_PATH}?{query}",
            secret=token,
            service=f"the homeserver ({self.homeserver})",
            timeout=self.timeout,
            accept_status=(200, 403),
        )
        if not isinstance(reply, dict):
            raise Unreachable(f"the homeserver ({self.homeserver}) answered with JSON that is not an object")
        if status == 403:
            error = scrub(str(reply.get("errcode") or "M_FORBIDDEN"), token, 80)
            raise Rejected(
                f"the homeserver ({self.homeserver}) refused the check ({error}): registration tokens are not enabled there",
                error,
            )
        if reply.get("valid") is not True:
            raise Rejected(f"the homeserver ({self.homeserver}) does not accept this registration token", "invalid")
        return VerifyResult("Matrix registration token validity", f"valid on {self.homeserver}")
