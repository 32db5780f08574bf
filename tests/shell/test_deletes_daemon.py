"""Deletes stay deleted, with real daemons (issue 16): a signed value deleted by its
owner and a shared value deleted by another node, while one replica, R, is away.

``kadnode run`` subprocesses on 127.0.0.1 (tests/daemons.py: free ports, bounded
waits, SIGKILL at teardown), driven by the CLI; what a node holds is read with a
raw ``find_value`` and old versions are replayed with a raw ``kn_put``. Four
nodes: every one is among the k = 20 closest of every key, so every one is a
replica. ``pytest -s`` shows the measured numbers.

Which path gives a replica that missed the deletes the tombstones:

* R stopped with SIGTERM (it leaves: a goodbye to every contact): when it
  rejoins it is a newcomer to the others, and the join hand-off gives it the
  tombstones before it has finished joining, no read needed; a node that joins
  after the deletes is handed them the same way.
* R crashed (SIGKILL: no goodbye), back on its port: the others still hold it
  as a contact they welcomed within the replicate interval (an hour), so
  nobody hands it anything and it serves its old versions. Reads from every
  node, R's own included, still say deleted; a read, from another node or
  from R itself, repairs R.
* Anti-entropy is not tested here: ``kadnode run`` syncs with one neighbour
  every ANTI_ENTROPY_INTERVAL = 60 s and has no setting to shorten it
  (tests/core/test_antientropy.py tests that it sends a replica the newer
  version of a key it holds; the simulator's delete scenario runs it).
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from typing import Any

from daemons import (
    HOST,
    STOP_TIMEOUT,
    Daemon,
    Daemons,
    RawNode,
    cli_json,
    kadnode,
    network,
    wait_for,
)

from kadnode.core import signed
from kadnode.core.messages import Kind
from kadnode.shell.library import storage_key

SALT = "profile"
KEY = "colour"
HELD_TIMEOUT = 5.0  # a write's last replicas, a hand-off, a read's repairs: sent, not awaited


@dataclass
class Written:
    """The two values the writer wrote, and the wire form each replica held of them."""

    public_key: str
    signed_key: bytes
    shared_key: bytes
    old_signed: list
    old_shared: list


def signed_tombstone(held: tuple[Kind, Any] | None, seq: int = 2) -> bool:
    """``[public_key, salt, None, seq, signature]``: the owner's delete."""
    return held is not None and held[0] == Kind.SIGNED and held[1][2:4] == [None, seq]


def shared_tombstone(held: tuple[Kind, Any] | None) -> bool:
    """Siblings that are all ``[None, clock]``: a delete superseded every value."""
    return held is not None and held[0] == Kind.SHARED and all(v is None for v, _ in held[1])


def holds_tombstones(raw: RawNode, node: Daemon, w: Written) -> bool:
    return signed_tombstone(raw.held(node, w.signed_key)) and shared_tombstone(
        raw.held(node, w.shared_key)
    )


def holds_old(raw: RawNode, node: Daemon, w: Written) -> bool:
    return raw.held(node, w.signed_key) == (Kind.SIGNED, w.old_signed) and raw.held(
        node, w.shared_key
    ) == (Kind.SHARED, w.old_shared)


def write_both(raw: RawNode, writer: Daemon, nodes: list[Daemon]) -> Written:
    """A signed value and a shared value from ``writer``, once every node holds both."""
    put = cli_json("put", "--signed", "v1", "--salt", SALT, api=writer.api)
    assert put["seq"] == 1
    cli_json("put", KEY, "blue", "--shared", api=writer.api)
    signed_key, shared_key = bytes.fromhex(put["key"]), storage_key(KEY)
    assert signed_key == signed.target(bytes.fromhex(put["public_key"]), SALT.encode())
    old_signed, old_shared = raw.held(writer, signed_key), raw.held(writer, shared_key)
    assert old_signed is not None and old_signed[1][2:4] == ["v1", 1], old_signed
    assert old_shared is not None and [v for v, _ in old_shared[1]] == ["blue"], old_shared
    w = Written(put["public_key"], signed_key, shared_key, old_signed[1], old_shared[1])
    for node in nodes:
        wait_for(lambda n=node: holds_old(raw, n, w), HELD_TIMEOUT, f"{node.name} to hold both")
    return w


def delete_both(owner: Daemon, other: Daemon) -> None:
    """The signed value deleted by its owner, the shared one by another node."""
    deleted = cli_json("delete", "--signed", "--salt", SALT, api=owner.api)
    assert deleted["seq"] == 2
    # Without --context: it supersedes what a read just before finds.
    cli_json("delete", KEY, "--shared", api=other.api)


def assert_reads_deleted(node: Daemon, w: Written) -> tuple[dict, dict]:
    """Both reads from ``node`` say deleted (exit 1); their JSON."""
    got = cli_json("get", "--signed", w.public_key, "--salt", SALT, api=node.api, status=1)
    assert (got["found"], got["deleted"], got["seq"], got["value"]) == (False, True, 2, None), (
        node.name,
        got,
    )
    shared = cli_json("get", KEY, "--shared", api=node.api, status=1)
    assert (shared["found"], shared["deleted"], shared["siblings"]) == (False, True, []), (
        node.name,
        shared,
    )
    return got, shared


def stat(nodes: list[Daemon], name: str) -> int:
    return sum(node.info()["stats"].get(name, 0) for node in nodes)


# ---- a replica that left and rejoins; a node that joins after the deletes -----------------


def test_a_replica_that_left_during_the_deletes_is_handed_the_tombstones_when_it_rejoins(
    daemons: Daemons,
) -> None:
    seed, writer, other, r = network(daemons, "seed", "writer", "other", "r")
    r_id = r.info()["id"]
    raw = RawNode()
    try:
        w = write_both(raw, writer, [seed, writer, other, r])
        assert r.stop(signal.SIGTERM) == 0
        # Away, R is a node that left: find-peer says so.
        gone = kadnode("find-peer", r_id, "--api", seed.api)
        assert gone.returncode == 1, gone.stderr
        assert gone.stdout.startswith(f"not found: {r_id} left the network (seq "), gone.stdout

        delete_both(writer, seed)
        # R's data file still holds the old versions: what it would serve on its return.
        assert r.saved_value(w.signed_key) == (Kind.SIGNED, w.old_signed)
        assert r.saved_value(w.shared_key) == (Kind.SHARED, w.old_shared)

        others = [seed, writer, other]
        handed, repairs = stat(others, "keys_handed_on_join"), stat(others, "read_repairs")
        back = daemons.start("r", data_dir=r.data_dir, bootstrap=[seed])
        assert back.info()["id"] == r_id
        wait_for(lambda: holds_tombstones(raw, back, w), HELD_TIMEOUT, "R to hold the tombstones")
        tombstoned_s = time.monotonic() - back.started_at
        # By the join hand-off: no read has run since, so no read repaired it.
        assert stat(others, "keys_handed_on_join") - handed >= 2
        assert stat(others, "read_repairs") == repairs

        for node in (back, *others):
            assert_reads_deleted(node, w)
        found = cli_json("find-peer", r_id, api=seed.api)
        assert found["found"] is True
        assert found["record"]["addresses"] == [{"host": HOST, "port": back.port}]

        # A node that joins after the deletes is handed the tombstones, not the values.
        newcomer = daemons.start("newcomer", bootstrap=[seed])
        wait_for(
            lambda: holds_tombstones(raw, newcomer, w),
            HELD_TIMEOUT,
            "the newcomer to hold the tombstones",
        )
        newcomer_s = time.monotonic() - newcomer.started_at
        assert_reads_deleted(newcomer, w)
    finally:
        raw.close()
    print(
        f"\nleft and rejoined: R held both tombstones {tombstoned_s:.2f} s after its restart's"
        f" exec (join hand-off); a newcomer {newcomer_s:.2f} s after its exec"
    )


# ---- a replica that crashed: reads, read repair, replayed old versions --------------------


def crashed_during_the_deletes(daemons: Daemons, raw: RawNode) -> tuple[list[Daemon], Written]:
    """Seed, writer, other and R; R crashes, both values are deleted, R comes back on its
    port with its data file. Returns the nodes, R last, once R serves its old versions."""
    seed, writer, other, r = network(daemons, "seed", "writer", "other", "r")
    w = write_both(raw, writer, [seed, writer, other, r])
    r.proc.kill()
    r.proc.wait(STOP_TIMEOUT)
    delete_both(writer, seed)
    back = daemons.start("r", port=r.port, data_dir=r.data_dir, bootstrap=[seed])
    # A crash says no goodbye: the others still hold R, welcomed within the replicate
    # interval, and hand it nothing. It serves what it held.
    assert holds_old(raw, back, w), "R was handed the deletes: the test would show nothing"
    return [seed, writer, other, back], w


def test_a_replica_that_crashed_during_the_deletes_reads_deleted_and_a_read_repairs_it(
    daemons: Daemons,
) -> None:
    raw = RawNode()
    try:
        (seed, writer, other, r), w = crashed_during_the_deletes(daemons, raw)
        # R's own read returns the newest version the replicas hold: the tombstones
        # (and repairs R's copy: the next test). A read from another node finds R
        # stale, or repaired by then; nothing else can have repaired it: nobody
        # hands R anything, and anti-entropy's first round is a minute away.
        assert_reads_deleted(r, w)
        t = time.monotonic()
        got, shared = assert_reads_deleted(seed, w)
        for read in (got, shared):
            assert read["answered"] == 4
            assert read["agreeing"] + read["repaired"] == 4, read  # held it, or repaired
        wait_for(lambda: holds_tombstones(raw, r, w), HELD_TIMEOUT, "R to hold the tombstones")
        repaired_s = time.monotonic() - t
        for node in (writer, other):
            got_again, shared_again = assert_reads_deleted(node, w)
            assert (got_again["repaired"], shared_again["repaired"]) == (0, 0)
            assert (got_again["agreeing"], shared_again["agreeing"]) == (4, 4)

        # The old versions replayed to every replica, R included, with valid tokens:
        # the signed one is refused; the shared one is taken and superseded at once
        # (the tombstone's clock has seen it). Last: the raw sender, which answers
        # nothing, is now a contact the nodes' lookups would wait for.
        nodes = [seed, writer, other, r]
        replays = {}
        for node in nodes:
            token = raw.token(node)
            refused = raw.put(node, w.signed_key, Kind.SIGNED, w.old_signed, token)
            assert refused == {"ok": False, "reason": signed.OLDER_SEQ}, node.name
            replays[node.name] = raw.put(node, w.shared_key, Kind.SHARED, w.old_shared, token)
            assert holds_tombstones(raw, node, w), node.name
    finally:
        raw.close()
    print(
        f"\ncrashed: R came back serving v1 and 'blue'; the seed's reads repaired"
        f" {got['repaired']} + {shared['repaired']} replicas ({repaired_s:.2f} s from the first"
        " read's start to R holding both tombstones);"
        f" old versions replayed to {len(replays)} nodes: signed refused"
        f" ({signed.OLDER_SEQ!r}), shared {sorted(set(map(str, replays.values())))} and superseded"
    )


def test_a_stale_replicas_own_read_repairs_its_own_copy(daemons: Daemons) -> None:
    raw = RawNode()
    try:
        (*_, r), w = crashed_during_the_deletes(daemons, raw)
        got, shared = assert_reads_deleted(r, w)
        assert (got["agreeing"], shared["agreeing"]) == (3, 3)  # its own copy disagreed
        assert (got["repaired"], shared["repaired"]) == (1, 1)  # and took what it read
        wait_for(lambda: holds_tombstones(raw, r, w), HELD_TIMEOUT, "R to hold the tombstones")
    finally:
        raw.close()
