"""The one fake NodeService: a canned answer per operation, or an injected error.

For tests of the HTTP layer (framing, bad requests, error mapping, the OpenAPI document)
and of how the CLI renders replies a small real network does not give. What the
operations themselves do is tested against a real daemon (tests/loopback.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kadnode.core import signed
from kadnode.core.ids import key_id, to_hex
from kadnode.errors import LocalProtocolError
from kadnode.shell import examples as ex
from kadnode.shell.messages import QUESTIONS

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
SIGNER = SELF_RECORD["public_key"]  # this node's key, which signs its signed values
PEER_RECORD = record_of(PEER, 1732435100456)
# Both other nodes acknowledged: the write quorum of a 2-node replica set is 2.
WRITTEN = {
    "stored": 2,
    "pending": 0,
    "asked": 2,
    "needed": 2,
    "local": False,
    "only_copy": False,
    "replicas": [PEER, PREDECESSOR],
}
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
# A shared value PEER and PREDECESSOR wrote concurrently.
SIBLINGS = [
    {"value": "hello", "clock": {PEER["id"]: 1}},
    {"value": "bonjour", "clock": {PREDECESSOR["id"]: 1}},
]
CONTEXT = [[PREDECESSOR["id"], 1], [PEER["id"], 1]]  # sorted by writer id

QUORUM_ERROR = "only 1 of the 4 closest nodes acknowledged; the write quorum is 3"


class FakeService:
    """A NodeService with one canned answer per operation; every answer is a found one.

    ``error`` makes every call raise it; ``answered`` lists the operations answered.
    """

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.answered: list[str] = []

    def _answer(self, operation: str, reply: Any) -> Any:
        if self.error is not None:
            raise self.error
        self.answered.append(operation)
        return reply

    async def info(self) -> dict[str, Any]:
        return self._answer("info", INFO)

    async def doctor(self) -> dict[str, Any]:
        return self._answer("doctor", ex.DOCTOR)

    async def lookup(self, target: int) -> dict[str, Any]:
        closest = [{**PEER, "answered": True}]
        found = {"found": True, "peer": PEER, "closest": closest, "record": PEER_RECORD}
        return self._answer(
            "lookup", {"target": to_hex(target), **found, "queried": 4, "elapsed_ms": 12.5}
        )

    async def put(self, key: str, value: str, ttl: float | None = None) -> dict[str, Any]:
        return self._answer("put", {"key": key, **WRITTEN, "elapsed_ms": 3.0})

    async def get(self, key: str) -> dict[str, Any]:
        return self._answer("get", {"key": key, "found": True, "value": "hello", "elapsed_ms": 1.5})

    async def peers(self) -> dict[str, Any]:
        return self._answer(
            "peers", {"count": 1, "peers": [{**PEER, "failures": 1, "last_seen_s": 2.5}]}
        )

    async def ping(self, host: str, port: int) -> dict[str, Any]:
        alive = {"alive": True, "id": PEER["id"], "rtt_ms": 0.75}
        return self._answer("ping", {"host": host, "port": port, **alive})

    async def register(self) -> dict[str, Any]:
        registered = {"key": NODE_ID, **WRITTEN, "elapsed_ms": 4.0, "record": SELF_RECORD}
        return self._answer("register", registered)

    async def deregister(self) -> dict[str, Any]:
        gone = {**SELF_RECORD, "addresses": []}
        return self._answer(
            "deregister", {"key": NODE_ID, **WRITTEN, "elapsed_ms": 3.0, "record": gone}
        )

    async def find_peer(self, target: int) -> dict[str, Any]:
        found = {"id": to_hex(target), "found": True, "left": False, "record": PEER_RECORD, **READ}
        return self._answer("find_peer", found)

    async def put_shared(self, key: str, value: str, context: list | None) -> dict[str, Any]:
        return self._answer("put_shared", {"key": key, **WRITTEN, "elapsed_ms": 3.5})

    async def exists(self, key: str) -> dict[str, Any]:
        held = {"kind": "plain", "deleted": False, "holding": 3, "queried": 4}
        return self._answer("exists", {"key": key, "exists": True, **held, "elapsed_ms": 2.5})

    async def get_shared(self, key: str) -> dict[str, Any]:
        found = {"key": key, "found": True, "deleted": False, "siblings": SIBLINGS}
        return self._answer("get_shared", {**found, "context": CONTEXT, **READ})

    async def delete_shared(self, key: str, context: list | None) -> dict[str, Any]:
        return self._answer("delete_shared", {"key": key, **WRITTEN, "elapsed_ms": 3.5})

    async def put_signed(self, value: str, salt: str, cas: int | None) -> dict[str, Any]:
        return self._signed("put_signed", salt, cas)

    def _signed(self, operation: str, salt: str, cas: int | None) -> dict[str, Any]:
        owner = {"public_key": SIGNER, "salt": salt, "seq": 1 if cas is None else cas + 1}
        key = signed.target(bytes.fromhex(SIGNER), salt.encode()).hex()
        return self._answer(operation, {"key": key, **WRITTEN, "elapsed_ms": 4.5, **owner})

    async def get_signed(self, public_key: str, salt: str) -> dict[str, Any]:
        key = signed.target(bytes.fromhex(public_key), salt.encode()).hex()
        found = {"found": True, "deleted": False, "value": "hello", "seq": 3}
        return self._answer(
            "get_signed", {"key": key, "public_key": public_key, "salt": salt, **found, **READ}
        )

    async def delete_signed(self, salt: str, cas: int | None) -> dict[str, Any]:
        return self._signed("delete_signed", salt, cas)

    async def delete(self, key: str) -> dict[str, Any]:
        return self._answer("delete", {"key": key, "dropped": True, "replicas_keep_it_h": 24.0})

    async def owner(self, key: str) -> dict[str, Any]:
        answers = {"successor": SELF, "successor_hops": 0, "closest": [SELF, PEER, PREDECESSOR]}
        return self._answer(
            "owner",
            {
                "key": key,
                "key_id": to_hex(key_id(key)),
                **answers,
                "questions": QUESTIONS,
                "elapsed_ms": 2.5,
            },
        )

    async def ring(self) -> dict[str, Any]:
        return self._answer("ring", RING)

    async def leave(self) -> dict[str, Any]:
        return self._answer("leave", LEFT)

    async def fault(self, delay_ms: float, jitter_ms: float) -> dict[str, Any]:
        mechanism = "kadnode transport send delay (--allow-fault-injection)"
        return self._answer(
            "fault", {"delay_ms": delay_ms, "jitter_ms": jitter_ms, "mechanism": mechanism}
        )

    async def metrics(self) -> str:
        return self._answer("metrics", METRICS_TEXT)

    def watch(self, key: str) -> AsyncIterator[dict[str, Any] | None]:
        return self._stream("watch", self.get, key)

    def watch_shared(self, key: str) -> AsyncIterator[dict[str, Any] | None]:
        return self._stream("watch_shared", self.get_shared, key)

    def watch_signed(self, public_key: str, salt: str) -> AsyncIterator[dict[str, Any] | None]:
        return self._stream("watch_signed", self.get_signed, public_key, salt)

    async def _stream(
        self, operation: str, read: Callable[..., Awaitable[dict[str, Any]]], *args: Any
    ) -> AsyncIterator[dict[str, Any] | None]:
        """The read's answer, then a read that brought nothing new, then the end (as
        when the daemon stops); answered as the stream, not as the read."""
        reply = await read(*args)
        self.answered[-1] = operation
        yield reply
        yield None


def message_of(parse: Callable[[str], object], text: str) -> str:
    """The one-line error a parser the API relies on gives for ``text``."""
    with pytest.raises(LocalProtocolError) as caught:
        parse(text)
    return str(caught.value)
