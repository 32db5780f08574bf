"""Which event loop runs kadnode. I/O.

uvloop (libuv) when installed (``pip install 'kadnode[fast]'``), asyncio's
own loop otherwise. A bare UDP echo between two sockets in one process
costs 6.7 us per datagram with uvloop and 21 us with asyncio's loop; a put
at N=200 in one process is ~81 datagrams (docs/decisions.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

try:
    import uvloop
except ImportError:  # optional: the "fast" extra
    uvloop = None


def run(main: Coroutine[Any, Any, T]) -> T:
    if uvloop is not None:
        return uvloop.run(main)
    return asyncio.run(main)


def name() -> str:
    return "uvloop" if uvloop is not None else "asyncio"
