"""Who may call the control API. Pure: a request's method and headers in, a
refusal (an :class:`~kadnode.errors.HttpError`) or None out.

The API can stop the node (``POST /leave``), write values and inject faults,
so it is guarded against the callers an operator does not see:

- **Web pages.** A browser lets any page send a "simple" cross-site request
  (a form post, no custom header) without asking the server first. Every
  request that changes state must carry the node's API token in an
  ``Authorization: Bearer`` header, which a page cannot add without a CORS
  preflight that this API never grants; a request whose ``Origin`` is not
  the API's own is refused before anything else.
- **DNS rebinding.** A page on a name its owner re-points at 127.0.0.1 talks
  to us as "same origin", but its ``Host`` header still carries that name:
  while the API listens on loopback, only loopback names are accepted.
- **Other users of the machine, and the network.** The token lives in the
  data directory (0600). On loopback, reads (GET, HEAD) need no token; an
  API that listens beyond loopback needs it on every route, and the daemon
  refuses to listen there unless the operator chose one
  (``KADNODE_API_TOKEN``), so an open port is never open by accident.

Jupyter's server takes the same three measures (token, Host allow-list on
local listeners, Origin check); the Docker and Kubernetes APIs take Bearer
tokens the same way (RFC 6750).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from kadnode.errors import HttpError, LocalProtocolError

TOKEN_ENV = "KADNODE_API_TOKEN"
READS = frozenset({"GET", "HEAD"})
TOKEN_MIN_CHARS = 16  # 96 bits in the base64 of secrets.token_urlsafe
_HOW = (
    "the kadnode CLI reads the token from the daemon's data directory (--data-dir) or"
    f" ${TOKEN_ENV}; other clients send 'Authorization: Bearer TOKEN'"
)
_CHALLENGE = (("WWW-Authenticate", 'Bearer realm="kadnode"'),)  # RFC 6750 section 3


def is_loopback(host: str) -> bool:
    """``host`` (a name or an address, IPv6 with or without brackets) is this machine."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port."""
    if header.startswith("["):
        return header.partition("]")[0] + "]"
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def check_token(token: str, where: str) -> str:
    """A token an operator chose: long enough, and printable without spaces."""
    token = token.strip()
    if len(token) < TOKEN_MIN_CHARS or not token.isprintable() or " " in token:
        raise LocalProtocolError(
            f"{where} must be at least {TOKEN_MIN_CHARS} printable characters without spaces"
            f" (it has {len(token)}); e.g. python3 -c 'import secrets;"
            " print(secrets.token_urlsafe(32))'"
        )
    return token


@dataclass(frozen=True, slots=True)
class Guard:
    token: str
    # Listening on loopback: reads need no token, and the Host header must
    # name this machine (DNS rebinding). Beyond it: the token on every route.
    local: bool

    @classmethod
    def listening_on(cls, host: str, token: str) -> Guard:
        return cls(token, is_loopback(host))

    def refusal(self, method: str, headers: Mapping[str, str]) -> HttpError | None:
        """Why this request may not be served, or None. ``headers``: lower-cased names."""
        host = headers.get("host")
        if host is None:
            return HttpError(400, "send a Host header (HTTP/1.1 requires one)")
        if self.local and not is_loopback(host_name(host)):
            return HttpError(
                403,
                f"Host {host!r} is not this machine: the API listens on loopback only and"
                " answers to localhost, 127.0.0.1 or [::1] (a page on another name may be"
                " rebinding DNS)",
            )
        origin = headers.get("origin")
        if origin is not None and origin.lower() != f"http://{host}".lower():
            return HttpError(403, f"cross-origin requests are refused (Origin {origin!r})")
        if method in READS and self.local:
            return None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            what = (
                "this call changes the node and needs the API token"
                if method not in READS
                else "this API listens beyond loopback and needs its token on every call"
            )
            return HttpError(401, f"{what}; {_HOW}", _CHALLENGE)
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return HttpError(401, f"wrong API token; {_HOW}", _CHALLENGE)
        return None
