"""Clients for the services whose tokens we rotate: Slack and the Matrix homeserver.

stdlib ``urllib`` only. A token goes in a header (Slack) or the query the Matrix spec
defines, and never into a message: every text we show from a reply is scrubbed of it.
"""

from __future__ import annotations

from opssecrets.verify.http import Rejected, Unreachable, VerifyResult

__all__ = ["Rejected", "Unreachable", "VerifyResult"]
