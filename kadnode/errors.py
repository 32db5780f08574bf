"""The one error family of kadnode. No I/O.

Every error kadnode raises on purpose derives from :class:`KadnodeError`, so a
caller (the CLI, the HTTP API) can turn any of them into one clear line.
The split follows h11: :class:`LocalProtocolError` is "you misused the API",
:class:`RemoteProtocolError` is "a peer broke the protocol".
"""

from __future__ import annotations


class KadnodeError(Exception):
    """Base class: its message is one line a user can read."""


class LocalProtocolError(KadnodeError):
    """The caller asked for something invalid (bad id, oversized value...)."""


class RemoteProtocolError(KadnodeError):
    """A peer sent something that breaks the protocol."""


class DecodeError(RemoteProtocolError):
    """A datagram could not be decoded; it is counted and dropped."""


class StorageError(KadnodeError):
    """The data directory cannot be used."""


class ApiError(KadnodeError):
    """The control API could not answer (daemon down, bad reply...)."""


class Conflict(KadnodeError):
    """A compare-and-swap write that found another version than the one named."""


class QuorumError(KadnodeError):
    """A write that fewer than W replicas acknowledged."""


class HttpError(KadnodeError):
    """A request the control API refuses before any operation runs (401, 403, 413...)."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.headers = headers
