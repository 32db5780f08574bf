"""Write tokens (BEP 5): proof that a writer receives at its source address. Pure.

Every native find and ping reply carries a token for the asker's host: an
HMAC of the host under a secret. A native write must bring back a token
given to its source host, so a write with a forged source address fails.
Secrets rotate every :data:`TOKEN_ROTATE` seconds and the previous one stays
valid ("tokens up to ten minutes old are accepted"). On the writer's side,
the token a contact gave us is kept in its routing-table entry and used for
:data:`TOKEN_FRESH` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import random

from kadnode.config import TOKEN_BYTES, TOKEN_FRESH, TOKEN_MEMO, TOKEN_ROTATE
from kadnode.core.routing import RoutingTable


class WriteTokens:
    """The tokens this node gives out, and their check."""

    def __init__(self, rng: random.Random, now: float):
        self.rng = rng
        self._secrets = [rng.randbytes(16), rng.randbytes(16)]  # current, previous
        self._memo: list[dict[str, bytes]] = [{}, {}]  # host -> token, per secret
        self.rotate_at = now + TOKEN_ROTATE

    def rotate(self, now: float) -> None:
        """A new current secret; the current one becomes the previous."""
        self.rotate_at = now + TOKEN_ROTATE
        self._secrets = [self.rng.randbytes(16), self._secrets[0]]
        self._memo = [{}, self._memo[0]]

    def token_for(self, host: str, which: int = 0) -> bytes:
        """Our token for ``host`` under the current (0) or previous (1) secret:
        an HMAC, memoized per secret (every find reply carries one)."""
        memo = self._memo[which]
        token = memo.get(host)
        if token is None:
            if len(memo) >= TOKEN_MEMO:
                memo.clear()
            digest = hmac.new(self._secrets[which], host.encode(), hashlib.sha1).digest()
            token = memo[host] = digest[:TOKEN_BYTES]
        return token

    def valid(self, host: str, token: bytes) -> bool:
        return hmac.compare_digest(self.token_for(host), token) or hmac.compare_digest(
            self.token_for(host, 1), token
        )


def remember(table: RoutingTable, node_id: int, token: bytes, now: float) -> None:
    """Keep the token a contact gave us, in its table entry."""
    entry = table.get(node_id)
    if entry is not None:
        entry.token, entry.token_at = token, now


def proving(table: RoutingTable, node_id: int, now: float) -> bytes | None:
    """The contact's token while it is sure to be valid there (its secret has
    not rotated twice since): echoed in a request, it proves our address."""
    entry = table.get(node_id)
    if entry is not None and entry.token is not None and now - entry.token_at < TOKEN_ROTATE:
        return entry.token
    return None


def fresh(table: RoutingTable, node_id: int, now: float) -> bytes | None:
    """The contact's token if it is recent enough to write with, else None."""
    entry = table.get(node_id)
    if entry is not None and entry.token is not None and now - entry.token_at < TOKEN_FRESH:
        return entry.token
    return None
