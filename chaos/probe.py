"""Batched control-API calls, run *on* a node (inside its container or network
namespace). Does network I/O (HTTP to the node's own control API).

The harness runs this file's source with ``python -c`` and the node's own
interpreter, so one process start serves a whole batch instead of one
``kadnode get`` per key. It uses only the standard library and
``kadnode.client``, the client behind ``kadnode get|peers|info|ping --json``,
and prints one JSON document::

    probe BUDGET get KEY...      [{"key", "found", "value"} or {"key", "error"}, ...]
    probe BUDGET find-peer ID... [{"id", "found", "left", "addresses", "seq", "rejected"}
                                  or {"id", "error"}, ...]
    probe BUDGET lookup ID...    [{"id", "found", "ms" (the daemon's elapsed_ms)}
                                  or {"id", "error"}, ...]
    probe BUDGET rtt N HOST:PORT...  [{"address", "rtt_ms": [N round trips, null if lost]}, ...]
                                  (the pings of one address RTT_GAP s apart)
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
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from kadnode.cli.client import ApiClient, api_token, default_data_dir
from kadnode.errors import KadnodeError

CALL_TIMEOUT = 15.0
PARALLEL = 4
RTT_GAP = 0.15  # seconds between pings of one address: 10 of them span a pause cycle


def _found(reply: dict) -> dict:
    return {"found": reply["found"], "value": reply["value"]}


def _record(reply: dict) -> dict:
    record = reply.get("record") or {}
    return {
        "found": reply["found"],
        "left": reply.get("left", False),
        "addresses": [f"{a['host']}:{a['port']}" for a in record.get("addresses", [])],
        "seq": record.get("seq"),
        "rejected": reply.get("rejected", 0),
    }


def _timed(reply: dict) -> dict:
    return {"found": reply["found"], "ms": reply["elapsed_ms"]}


def main(argv: list[str]) -> int:
    # The token (a ping is a POST) from $KADNODE_API_TOKEN or $KADNODE_DATA_DIR, as the CLI's.
    token = api_token(default_data_dir())
    api = os.environ.get("KADNODE_API", "127.0.0.1:8468")
    client = ApiClient(api, token=token, timeout=CALL_TIMEOUT)
    deadline = time.monotonic() + float(argv[0])
    op, args = argv[1], argv[2:]

    def each(run: Callable[[str], dict], items: list[str]) -> int:
        with ThreadPoolExecutor(PARALLEL) as pool:
            print(json.dumps(list(pool.map(run, items))))
        return 0

    # A batch: one call per argument, each answer named by the argument it asked.
    batches = {
        "get": ("key", client.get, _found),
        "find-peer": ("id", client.find_peer, _record),
        "lookup": ("id", client.lookup, _timed),
    }
    if op in batches:
        name, call, shape = batches[op]

        def ask(arg: str) -> dict:
            if time.monotonic() > deadline:
                return {name: arg, "error": "not asked: the probe's time budget ran out"}
            try:
                return {name: arg, **shape(call(arg))}
            except KadnodeError as exc:
                return {name: arg, "error": str(exc)}

        return each(ask, args)
    if op == "rtt":  # N pings of each address, RTT_GAP s apart

        def rtts(address: str) -> dict:
            times = []
            for i in range(int(args[0])):
                if time.monotonic() > deadline:
                    break
                if i:  # not time.sleep: it fails under the containers' libfaketime
                    threading.Event().wait(RTT_GAP)
                try:
                    reply = client.ping(address)
                except KadnodeError:
                    reply = {}
                times.append(reply.get("rtt_ms") if reply.get("alive") else None)
            return {"address": address, "rtt_ms": times}

        return each(rtts, args[1:])
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
