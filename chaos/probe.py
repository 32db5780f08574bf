"""Batched control-API calls, run *on* a node (inside its container or network
namespace). Does network I/O (HTTP to the node's own control API).

The harness runs this file's source with ``python -c`` and the node's own
interpreter, so one process start serves a whole batch instead of one
``kadnode get`` per key. It uses only the standard library and
``kadnode.client``, the client behind ``kadnode get|peers|info|ping --json``,
and prints one JSON document::

    probe BUDGET get KEY...      [{"key", "found", "value"} or {"key", "error"}, ...]
    probe BUDGET peers           the /peers reply, or {"error": ...}
    probe BUDGET info            the /info reply, or {"error": ...}
    probe BUDGET ping HOST:PORT  the /ping reply, or {"error": ...}

The control API address comes from $KADNODE_API (default 127.0.0.1:8468).
Every call is bounded by the client's timeout, and a batch of gets by BUDGET
seconds: keys not asked by then come back as errors.
"""

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from kadnode.cli.client import ApiClient
from kadnode.errors import KadnodeError

CALL_TIMEOUT = 15.0
PARALLEL = 4


def main(argv: list[str]) -> int:
    client = ApiClient(os.environ.get("KADNODE_API", "127.0.0.1:8468"), timeout=CALL_TIMEOUT)
    deadline = time.monotonic() + float(argv[0])
    op, args = argv[1], argv[2:]
    if op == "get":

        def get(key: str) -> dict:
            if time.monotonic() > deadline:
                return {"key": key, "error": "not asked: the probe's time budget ran out"}
            try:
                reply = client.get(key)
            except KadnodeError as exc:
                return {"key": key, "error": str(exc)}
            return {"key": key, "found": reply["found"], "value": reply["value"]}

        with ThreadPoolExecutor(PARALLEL) as pool:
            print(json.dumps(list(pool.map(get, args))))
        return 0
    calls = {
        "peers": client.peers,
        "info": client.info,
        "ping": lambda: client.ping(args[0]),
    }
    try:
        print(json.dumps(calls[op]()))
    except KadnodeError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
