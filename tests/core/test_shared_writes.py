"""Shared values against a hostile writer with a write token (issue 13, item 7):
no counter can pin a key, a full clock never makes it unreadable, and a shared
value cannot squat a peer record's key (kadnode.core.kinds, kadnode.core.vclock)."""

from __future__ import annotations

import random

from kadnode.config import MAX_CLOCK_ENTRIES, MAX_CONTEXT_ENTRIES, MAX_COUNTER_STEP, Config
from kadnode.core import codec, kinds, records, vclock
from kadnode.core.codec import NATIVE_MAGIC
from kadnode.core.identity import Identity
from kadnode.core.ids import to_bytes
from kadnode.core.messages import Kind
from kadnode.core.node import NodeCore
from kadnode.core.store import MemoryStore

SENDER = (0xCD << 152).to_bytes(20, "big")
HOST = "203.0.113.9"
KEY = (0x5A << 152).to_bytes(20, "big")


def node() -> NodeCore:
    return NodeCore(1 << 159, MemoryStore(), config=Config(), rng=random.Random(5))


def kn_put(core: NodeCore, kind: Kind, payload: object, key: bytes = KEY) -> dict:
    """A kn_put from HOST with the token it was given; the node's reply."""
    args = [SENDER, key, kind, payload, 100.0, core.tokens.token_for(HOST)]
    data = codec.encode_request(NATIVE_MAGIC + bytes(16), "kn_put", args)
    core.receive_datagram(data, (HOST, 4000), 1.0)
    [reply] = [codec.decode(d, 10_000) for d, _ in core.datagrams_to_send() if d[0] == 1]
    return reply.body


def sibling(value: str, counters: dict[int, int]) -> list:
    return kinds.siblings_to_wire((vclock.Versioned(value, vclock.VectorClock.of(counters)),))


def held_siblings(core: NodeCore) -> tuple[vclock.Versioned, ...]:
    return kinds.siblings_from_wire(core.store.get(KEY).value)


def test_a_counter_driven_to_the_top_is_refused_and_the_owner_keeps_writing():
    core = node()
    core.put_shared(KEY, "v0", None, 1.0)
    pin = sibling("pin", {core.id: vclock.MAX_COUNTER, 7: 1})
    reply = kn_put(core, Kind.SHARED, pin)
    assert not reply["ok"] and "past what is held" in reply["reason"]
    context = vclock.to_wire(vclock.context(held_siblings(core)))
    core.put_shared(KEY, "v1", context, 2.0)
    assert [s.value for s in held_siblings(core)] == ["v1"]
    core.put_shared(KEY, "blind", None, 3.0)  # passes every counter of ours it holds
    assert [(s.value, s.clock.get(core.id)) for s in held_siblings(core)] == [("blind", 3)]


def test_a_counter_may_climb_one_step_at_a_time():
    core = node()
    core.put_shared(KEY, "v0", None, 1.0)
    step = sibling("near", {core.id: 1, 7: MAX_COUNTER_STEP})
    assert kn_put(core, Kind.SHARED, step)["ok"]


def test_a_sibling_with_a_full_clock_leaves_the_key_readable_and_writable():
    core = node()
    core.put_shared(KEY, "mine", None, 1.0)
    full = sibling("full", {0x100 + i: 1 for i in range(MAX_CLOCK_ENTRIES)})
    assert kn_put(core, Kind.SHARED, full)["ok"]
    context = vclock.to_wire(vclock.context(held_siblings(core)))
    assert len(context) == MAX_CLOCK_ENTRIES + 1
    core.put_shared(KEY, "mine again", context, 2.0)
    assert sorted(s.value for s in held_siblings(core)) == ["full", "mine again"]


def test_a_peer_record_takes_its_key_back_from_a_squatting_shared_value():
    core = node()
    me = Identity.from_seed(bytes(range(32)))
    key = to_bytes(me.node_id)
    squat = kinds.siblings_to_wire((vclock.write(None, 7, "squat"),))
    record = records.to_wire(records.sign_record(me, (("192.0.2.1", 4000),), 1, 600.0))
    assert kn_put(core, Kind.SHARED, squat, key) == {"ok": True, "reason": None}
    assert kn_put(core, Kind.PEER, record, key) == {"ok": True, "reason": None}
    assert core.store.get(key).kind == Kind.PEER
    refused = kn_put(core, Kind.SHARED, squat, key)  # and the shared value cannot take it back
    assert refused == {"ok": False, "reason": "key holds a peer record"}


def test_one_payload_cannot_climb_by_steps_and_a_read_is_never_refused_for_it():
    core = node()
    core.put_shared(KEY, "v0", None, 1.0)
    step = MAX_COUNTER_STEP
    chain = kinds.siblings_to_wire(
        (
            vclock.Versioned("a", vclock.VectorClock.of({7: step})),
            vclock.Versioned("b", vclock.VectorClock.of({7: 2 * step})),
        )
    )
    assert not kn_put(core, Kind.SHARED, chain)["ok"]
    # A reader merges what replicas answer as it is: one replica whose
    # counters climbed far does not make the key unreadable.
    far = sibling("far", {7: 3 * step})
    merged, rejected = kinds.newest(Kind.SHARED, [far, core.store.get(KEY).value], KEY, 1.0)
    assert rejected == 0 and {s.value for s in kinds.siblings_from_wire(merged)} == {"far", "v0"}


def test_a_context_of_the_most_writers_without_ours_still_writes():
    core = node()
    core.put_shared(KEY, "mine", None, 1.0)  # our own earlier version, held here
    others = vclock.VectorClock.of({0x100 + i: 1 for i in range(MAX_CONTEXT_ENTRIES)})
    core.put_shared(KEY, "again", vclock.to_wire(others), 2.0)
    [version] = [s for s in held_siblings(core) if s.value == "again"]
    assert version.clock.get(core.id) == 2 and len(version.clock.entries) == MAX_CLOCK_ENTRIES
