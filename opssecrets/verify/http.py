"""The one HTTP helper the verifiers share: a request, a JSON reply, errors without secrets."""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opssecrets.errors import BadInput

DEFAULT_TIMEOUT = 15.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: urllib would resend the Authorization header (the token) to
    wherever it points. A redirect is reported instead, so the URL can be corrected."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def open_no_redirect(request: urllib.request.Request, timeout: float) -> Any:
    """``urlopen`` that never follows a redirect (it could lead off https, or to another host)."""
    return _OPENER.open(request, timeout=timeout)


class VerifyError(Exception):
    """Base: ``message`` is one line, safe to show (the token is never in it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unreachable(VerifyError):
    """The service could not be asked, or gave no usable answer."""


class Rejected(VerifyError):
    """The service answered and refused the value; ``reason`` is its own error text."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class VerifyResult:
    service: str
    detail: str = ""
    facts: Mapping[str, str] = field(default_factory=dict)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_https(url: str, what: str) -> str:
    """``url`` if a value may be sent there: https, or plain http to this machine (a test stand-in).

    Anything else is BadInput (exit 2) before any connection: over plain http the value (a
    token in a query string, an enrolment answer) is readable and changeable on the way."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    if parsed.scheme == "https" and host:
        return url
    if parsed.scheme == "http" and is_loopback(host):
        return url
    shown = f"{parsed.scheme}://{host}" if parsed.scheme and host else repr(url[:60])
    raise BadInput(
        f"{what} {shown} is not https: opssecrets sends values and enrolment requests only over https "
        "(plain http only to 127.0.0.1/localhost); use the https:// URL"
    )


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: what is printed before a request (never the path or query)."""
    parsed = urllib.parse.urlsplit(url)
    return f"{parsed.scheme}://{parsed.netloc.rpartition('@')[2]}"


def scrub(text: str, secret: str, limit: int = 200) -> str:
    """Text from a reply made safe to show: the secret removed, control characters gone, short."""
    if secret:
        text = text.replace(secret, "[redacted]")
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def request_json(
    method: str,
    url: str,
    *,
    secret: str,
    service: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    accept_status: tuple[int, ...] = (200,),
) -> tuple[int, Any]:
    """Send one request; return ``(status, parsed JSON)``.

    Raises ``Unreachable`` for a network failure, a timeout, a status outside
    ``accept_status`` or a reply that is not JSON. Messages never hold ``secret`` or ``url``
    (a URL may carry it in the query).
    """
    require_https(url, service)
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))  # noqa: S310 - scheme checked
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status = int(response.status)
            raw = response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        status = exc.code
        raw = exc.read(1 << 20) if exc.fp is not None else b""
        if 300 <= status < 400:
            raise Unreachable(f"{service} answered with a redirect (HTTP {status}); give the final URL instead") from None
        if status not in accept_status:
            raise Unreachable(f"{service} answered HTTP {status}") from None
    except TimeoutError:
        raise Unreachable(f"{service} did not answer within {timeout:.0f}s") from None
    except urllib.error.URLError as exc:
        reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else str(exc.reason)
        raise Unreachable(f"{service} could not be reached ({scrub(reason, secret, 120)})") from None
    except OSError as exc:
        raise Unreachable(f"{service} could not be reached ({exc.__class__.__name__})") from None
    if status not in accept_status:
        raise Unreachable(f"{service} answered HTTP {status}")
    try:
        return status, json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Unreachable(f"{service} answered HTTP {status} with something that is not JSON") from None
