"""The fake NodeService the API and client tests share, with its canned answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kadnode.core import vclock
from kadnode.core.ids import key_id, to_hex
from kadnode.core.ring import brute_successor
from kadnode.errors import LocalProtocolError
from kadnode.shell import api, daemon

NODE_ID = "ab" * 20
PEER = {"id": "cd" * 20, "host": "127.0.0.1", "port": 4001}
INFO = {
    "id": NODE_ID,
    "host": "127.0.0.1",
    "port": 8468,
    "peers": 1,
    "values": 1,
    "uptime_s": 12.25,
    "stats": {"rpc_sent": 5, "rpc_timeouts": 0},
}
METRICS_TEXT = "# TYPE kadnode_peers gauge\nkadnode_peers 1\n"
# The fake's ring: itself, PEER clockwise after it, PREDECESSOR after PEER (wrapping round).
SELF = {"id": NODE_ID, "host": "127.0.0.1", "port": 8468}
PREDECESSOR = {"id": "12" * 20, "host": "127.0.0.1", "port": 4002}
RING = {
    "self": SELF,
    "predecessor": PREDECESSOR,
    "successors": [PEER, PREDECESSOR],
    # ab.. + 2**i reaches cd.. for i <= 157; 12.. is 0x6767.. clockwise: finger 158.
    "fingers": [{"index": 0, **PEER}, {"index": 158, **PREDECESSOR}],
}
# Its one value, handed to the two other nodes it knows; both acknowledged.
LEFT = {"keys": 1, "stores": 2, "acks": 2, "elapsed_ms": 4.5}
# The peer in kadnode.api's examples: the fake holds its record, so the
# documented GET /peers/{id}/record example is found.
DOC_PEER = {"id": "8f14e45fceea167a5a36dedd4bea2543b0e1a1d3", "host": "192.0.2.7", "port": 8468}


def record_of(contact: dict[str, Any], seq: int) -> dict[str, Any]:
    """A peer record as the daemon's record_json renders one."""
    return {
        "id": contact["id"],
        "addresses": [{"host": contact["host"], "port": contact["port"]}],
        "seq": seq,
        "expires": 1732456800.5,
        "public_key": contact["id"][:16] * 4,
    }


SELF_RECORD = record_of(SELF, 1732435200123)
PEER_RECORD = record_of(PEER, 1732435100456)
# FakeService.lookup's answer, after "target", for any target but PEER's id.
LOOKUP_MISS = {
    "found": False,
    "peer": None,
    "closest": [PEER],
    "record": None,
    "queried": 4,
    "elapsed_ms": 12.5,
}
# Both other nodes acknowledged: the write quorum of a 2-node replica set is 2.
WRITTEN = {"stored": 2, "asked": 2, "needed": 2, "replicas": [PEER, PREDECESSOR]}
REGISTERED = {"key": NODE_ID, **WRITTEN, "elapsed_ms": 4.0, "record": SELF_RECORD}
# A quorum read over the same two replicas: one held the newest, one was repaired.
READ = {
    "replicas": 2,
    "answered": 2,
    "agreeing": 1,
    "repaired": 1,
    "rejected": 0,
    "needed": 2,
    "quorum": True,
    "elapsed_ms": 6.5,
}
READ_NOTHING = {**READ, "agreeing": 0, "repaired": 0}
# "greeting" as a shared value: PEER and PREDECESSOR wrote it concurrently.
SHARED_GREETING = (
    vclock.Versioned("hello", vclock.VectorClock.of({int(PEER["id"], 16): 1})),
    vclock.Versioned("bonjour", vclock.VectorClock.of({int(PREDECESSOR["id"], 16): 1})),
)
GREETING_SIBLINGS = [
    {"value": "hello", "clock": {PEER["id"]: 1}},
    {"value": "bonjour", "clock": {PREDECESSOR["id"]: 1}},
]
GREETING_CONTEXT = [[PREDECESSOR["id"], 1], [PEER["id"], 1]]  # sorted by writer id

QUORUM_ERROR = "only 1 of the 4 closest nodes acknowledged; the write quorum is 3"


class FakeService:
    """A NodeService with canned answers; ``error`` makes every call raise it."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {"greeting": "hello"}
        self.records: dict[str, dict[str, Any]] = {
            PEER["id"]: PEER_RECORD,
            DOC_PEER["id"]: record_of(DOC_PEER, 1732435000789),
        }
        self.shared: dict[str, tuple[vclock.Versioned, ...]] = {"greeting": SHARED_GREETING}
        self.error: Exception | None = None
        self.left = False

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    async def info(self) -> dict[str, Any]:
        self._check()
        return dict(INFO)

    async def lookup(self, target: int) -> dict[str, Any]:
        self._check()
        reply = {"target": to_hex(target), **LOOKUP_MISS}
        if reply["target"] == PEER["id"]:
            reply.update(found=True, peer=PEER, record=PEER_RECORD)
        return reply

    async def put(self, key: str, value: str) -> dict[str, Any]:
        self._check()
        self.values[key] = value
        return {"key": key, "stored": 2, "replicas": [PEER], "elapsed_ms": 3.0}

    async def get(self, key: str) -> dict[str, Any]:
        self._check()
        value = self.values.get(key)
        return {"key": key, "found": value is not None, "value": value, "elapsed_ms": 1.5}

    async def peers(self) -> dict[str, Any]:
        self._check()
        return {"count": 1, "peers": [{**PEER, "failures": 1, "last_seen_s": 2.5}]}

    async def ping(self, host: str, port: int) -> dict[str, Any]:
        self._check()
        alive = port == PEER["port"]
        return {
            "host": host,
            "port": port,
            "alive": alive,
            "id": PEER["id"] if alive else None,
            "rtt_ms": 0.75 if alive else None,
        }

    async def register(self) -> dict[str, Any]:
        self._check()
        self.records[NODE_ID] = SELF_RECORD
        return dict(REGISTERED)

    async def find_peer(self, target: int) -> dict[str, Any]:
        self._check()
        record = self.records.get(to_hex(target))
        found = record is not None
        return {
            "id": to_hex(target),
            "found": found,
            "record": record,
            **(READ if found else READ_NOTHING),
        }

    async def put_shared(self, key: str, value: str, context: list | None) -> dict[str, Any]:
        """A write by this node, with the daemon's context checks and vector-clock rules."""
        self._check()
        seen = vclock.from_wire(daemon.context_wire(context)) if context is not None else None
        version = vclock.write(seen, int(NODE_ID, 16), value)
        self.shared[key] = vclock.reconcile(self.shared.get(key, ()), version)
        return {"key": key, **WRITTEN, "elapsed_ms": 3.5}

    async def get_shared(self, key: str) -> dict[str, Any]:
        self._check()
        siblings = self.shared.get(key, ())
        return {
            "key": key,
            "found": bool(siblings),
            "siblings": [{"value": s.value, "clock": daemon.clock_json(s.clock)} for s in siblings],
            "context": daemon.context_json(vclock.context(siblings)) if siblings else None,
            **(READ if siblings else READ_NOTHING),
        }

    async def owner(self, key: str) -> dict[str, Any]:
        """Both answers, by brute force over the three nodes of the fake's ring."""
        self._check()
        target = key_id(key)
        nodes = {int(c["id"], 16): c for c in (SELF, PEER, PREDECESSOR)}
        successor = nodes[brute_successor(target, nodes)]
        return {
            "key": key,
            "key_id": to_hex(target),
            "successor": successor,
            "successor_hops": 0 if successor is SELF else 1,
            "closest": [nodes[i] for i in sorted(nodes, key=lambda i: i ^ target)],
            "questions": api.QUESTIONS,
            "elapsed_ms": 2.5,
        }

    async def ring(self) -> dict[str, Any]:
        self._check()
        return RING

    async def leave(self) -> dict[str, Any]:
        self._check()
        self.left = True
        return dict(LEFT)

    async def fault(self, delay_ms: float, jitter_ms: float) -> dict[str, Any]:
        self._check()
        mechanism = "kadnode transport send delay (--allow-fault-injection)"
        return {"delay_ms": delay_ms, "jitter_ms": jitter_ms, "mechanism": mechanism}

    async def metrics(self) -> str:
        self._check()
        return METRICS_TEXT


def message_of(parse: Callable[[str], object], text: str) -> str:
    """The one-line error a parser the API relies on gives for ``text``."""
    with pytest.raises(LocalProtocolError) as caught:
        parse(text)
    return str(caught.value)
