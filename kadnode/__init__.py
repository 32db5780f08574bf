"""kadnode: a Kademlia peer-discovery daemon and library.

The public face: :class:`Server` (a node inside an asyncio program),
:class:`Config` (the protocol's parameters) and the error family rooted at
:class:`KadnodeError`. ``Server`` is imported on first use, so importing the
pure core (``kadnode.core``) does not pull in asyncio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kadnode.config import Config
from kadnode.errors import (
    ApiError,
    DecodeError,
    KadnodeError,
    LocalProtocolError,
    QuorumError,
    RemoteProtocolError,
    StorageError,
)

if TYPE_CHECKING:
    from kadnode.shell.library import Server

__version__ = "0.1.0"
__all__ = [
    "ApiError",
    "Config",
    "DecodeError",
    "KadnodeError",
    "LocalProtocolError",
    "QuorumError",
    "RemoteProtocolError",
    "Server",
    "StorageError",
    "__version__",
]


def __getattr__(name: str) -> object:
    if name == "Server":
        from kadnode.shell.library import Server

        return Server
    raise AttributeError(f"module 'kadnode' has no attribute {name!r}")
