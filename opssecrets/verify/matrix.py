"""The Matrix client-server calls opssecrets makes: the registration-token validity check
(API v1.2+, conduwuit and Synapse have it) and a notice posted to the team's room."""

from __future__ import annotations

import json
import os
import urllib.parse
import uuid

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

    def send_notice(self, room: str, access_token: str, text: str) -> str:
        """Post ``text`` to ``room`` as an ``m.notice`` (what bots send, so no bot answers it);
        returns the event id. The access token travels only in the Authorization header."""
        path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room, safe='')}/send/m.room.message/{uuid.uuid4().hex}"
        service = f"the homeserver ({self.homeserver})"
        status, reply = request_json(
            "PUT",
            self.homeserver + path,
            secret=access_token,
            service=service,
            headers={"Authorization": f"Bearer {access_token}", "Content-Type": "application/json"},
            body=json.dumps({"msgtype": "m.notice", "body": text}).encode("utf-8"),
            timeout=self.timeout,
            accept_status=(200, 401, 403, 404),
        )
        errcode = scrub(str(reply.get("errcode", "")), access_token, 80) if isinstance(reply, dict) else ""
        if status == 401:
            raise Rejected(f"{service} does not accept the bot's access token ({errcode or 'HTTP 401'})", errcode)
        if status in (403, 404):
            raise Rejected(f"{service} refused the post to {room} ({errcode or f'HTTP {status}'}): invite the bot to the room", errcode)
        if not isinstance(reply, dict) or not isinstance(reply.get("event_id"), str):
            raise Unreachable(f"{service} answered without an event id")
        return str(reply["event_id"])
