"""Slack Web API checks for the bridge's tokens: ``auth.test`` and ``apps.connections.open``."""

from __future__ import annotations

import os

from opssecrets.verify.http import DEFAULT_TIMEOUT, Rejected, Unreachable, VerifyResult, request_json, scrub

DEFAULT_SLACK_API = "https://slack.com/api"
SLACK_API_ENV = "OPSSECRETS_SLACK_API_URL"


def slack_api_url(explicit: str | None = None) -> str:
    """``--slack-api-url``, else ``OPSSECRETS_SLACK_API_URL``, else Slack's own."""
    return (explicit or os.environ.get(SLACK_API_ENV) or DEFAULT_SLACK_API).rstrip("/")


class SlackClient:
    def __init__(self, base_url: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = slack_api_url(base_url)
        self.timeout = timeout

    def _call(self, method: str, token: str) -> dict[str, object]:
        _, reply = request_json(
            "POST",
            f"{self.base_url}/{method}",
            secret=token,
            service=f"Slack ({self.base_url}/{method})",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-www-form-urlencoded"},
            body=b"",
            timeout=self.timeout,
        )
        if not isinstance(reply, dict):
            raise Unreachable(f"Slack {method} answered with JSON that is not an object")
        if reply.get("ok") is not True:
            error = scrub(str(reply.get("error") or "no error given"), token, 80)
            raise Rejected(f"Slack {method} refused the token: {error}", error)
        return reply

    def auth_test(self, token: str, expected_team: str | None = None) -> VerifyResult:
        """The bot token works; if ``expected_team`` is given, for that workspace (name or id)."""
        reply = self._call("auth.test", token)
        team = str(reply.get("team") or "")
        team_id = str(reply.get("team_id") or "")
        if expected_team and expected_team.casefold() not in (team.casefold(), team_id.casefold()):
            shown = scrub(team or team_id or "an unnamed workspace", token, 80)
            raise Rejected(
                f"Slack auth.test says the token belongs to workspace {shown!r}, but the policy expects {expected_team!r}",
                "wrong_team",
            )
        facts = {k: scrub(str(reply[k]), token, 80) for k in ("team", "team_id", "user", "bot_id") if reply.get(k)}
        detail = f"workspace {facts['team']}" if "team" in facts else "ok"
        if "user" in facts:
            detail += f", bot user {facts['user']}"
        return VerifyResult("Slack auth.test", detail, facts)

    def apps_connections_open(self, token: str) -> VerifyResult:
        """The app-level token can open a Socket Mode connection (the URL it returns is dropped)."""
        self._call("apps.connections.open", token)
        return VerifyResult("Slack apps.connections.open", "Socket Mode connection allowed")
