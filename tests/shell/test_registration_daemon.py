"""Signed registration, forged records, shared values and quorum, with real daemons.

``kadnode run`` subprocesses on 127.0.0.1, started with tests/test_daemon.py's
helpers (free ports, bounded waits, SIGKILL at teardown) and driven by the CLI;
forged records come from a raw UDP client speaking the native wire. ``pytest
-s`` shows the measured numbers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from typing import Any

from daemons import (
    ENV,
    HOST,
    KADNODE,
    STOP_TIMEOUT,
    Daemons,
    RawNode,
    assert_one_line_error,
    cli_json,
    kadnode,
    network,
    wait_for,
)
from loopback import with_data_dir, written

from kadnode.core import records
from kadnode.core.identity import Identity

REGISTERED = re.compile(r"registered ([0-9a-f]{40}) at .*: (\d+) of (\d+) replicas acknowledged")
MOVE_TIMEOUT = 10.0  # a restarted node re-registers right after joining


def address_of(found: dict[str, Any]) -> list[dict[str, Any]] | None:
    return found["record"]["addresses"] if found["found"] else None


# ---- (a) register, find, move ---------------------------------------------------------------


def test_a_registered_address_is_found_verified_and_a_new_one_wins(daemons: Daemons) -> None:
    seed, a, b = network(daemons, "seed", "a", "b")
    a_id = a.info()["id"]
    # A registered itself after joining (the join logs after registering).
    joined = REGISTERED.search(a.log())
    assert joined is not None and joined.group(1) == a_id, a.log()
    assert int(joined.group(2)) >= 1  # the seed acknowledged

    done = kadnode("register", "--api", a.api)
    assert done.returncode == 0, done.stderr
    registered = cli_json("register", api=a.api)
    seq = registered["record"]["seq"]
    assert registered["key"] == a_id
    assert registered["record"]["addresses"] == [{"host": HOST, "port": a.port}]
    # The seed, B, and A's own copy: all three are among the k closest.
    assert (written(registered), registered["asked"], registered["local"]) == (3, 2, True)
    text = re.fullmatch(
        rf"registered {a_id} at {HOST}:{a.port} \(seq (\d+)\): on (\d) nodes,"
        r" this one among them(?:, (\d) more being written)?\n",
        done.stdout,
    )
    assert text is not None and int(text.group(1)) < seq, done.stdout
    assert int(text.group(2)) + int(text.group(3) or 0) == 3, done.stdout

    found = cli_json("find-peer", a_id, api=b.api)
    assert found["found"] is True and found["quorum"] is True and found["rejected"] == 0
    assert found["record"]["addresses"] == [{"host": HOST, "port": a.port}]
    assert found["record"]["seq"] == seq
    shown = kadnode("find-peer", a_id, "--api", b.api)
    assert shown.returncode == 0
    assert f"  {HOST}:{a.port}\n" in shown.stdout
    assert f"seq {seq}, signed by its key" in shown.stdout
    assert re.search(r"\d of \d replicas answered, \d+ repaired", shown.stdout), shown.stdout

    # A stops and comes back on a new port with the same data directory (same key, same id).
    assert a.stop(signal.SIGTERM) == 0
    moved = daemons.start("a", data_dir=a.data_dir, bootstrap=[seed])
    assert moved.port != a.port and moved.info()["id"] == a_id
    new_address = [{"host": HOST, "port": moved.port}]
    t = time.monotonic()
    seen = wait_for(
        lambda: (r := b.client().find_peer(a_id)) and address_of(r) == new_address and r,
        MOVE_TIMEOUT,
        "B to see A's new address",
    )
    seen_s, waited_s = time.monotonic() - moved.started_at, time.monotonic() - t
    assert seen["record"]["seq"] > seq
    again = cli_json("find-peer", a_id, api=b.api)
    assert again["record"]["addresses"] == new_address
    lookup = cli_json("lookup", a_id, api=b.api)
    assert lookup["found"] is True
    assert lookup["record"]["addresses"] == new_address
    assert lookup["peer"] == {"id": a_id, "host": HOST, "port": moved.port}
    print(
        f"\nregister: seq {seq}, held by {registered['stored']} nodes; "
        f"moved {a.port} -> {moved.port}: B saw seq {seen['record']['seq']} "
        f"{seen_s:.2f} s after the restart's exec ({waited_s:.2f} s after it had joined)"
    )


def test_a_node_that_leaves_is_not_found_by_find_peer(daemons: Daemons) -> None:
    seed, a, b = network(daemons, "seed", "a", "b")
    b_id = b.info()["id"]
    before = cli_json("find-peer", b_id, api=a.api)
    assert before["found"] is True and before["left"] is False
    left = kadnode("leave", "--api", b.api)
    assert left.returncode == 0, left.stderr
    assert b.proc.wait(STOP_TIMEOUT) == 0
    after = kadnode("find-peer", b_id, "--api", a.api)
    assert after.returncode == 1, after.stderr
    assert after.stdout.startswith(f"not found: {b_id} left the network (seq "), after.stdout
    gone = cli_json("find-peer", b_id, api=seed.api, status=1)
    assert (gone["found"], gone["left"], gone["record"]["addresses"]) == (False, True, [])
    assert gone["record"]["seq"] > before["record"]["seq"]


def test_a_node_that_deregisters_is_not_found_until_it_registers_again(daemons: Daemons) -> None:
    _seed, a, b = network(daemons, "seed", "a", "b")
    b_id = b.info()["id"]
    done = kadnode("deregister", "--api", b.api)
    assert done.returncode == 0, done.stderr
    said = rf"deregistered {b_id} \(seq \d+\): a signed tombstone on \d nodes, this one among them"
    assert re.match(said, done.stdout), done.stdout
    gone = cli_json("find-peer", b_id, api=a.api, status=1)
    assert (gone["found"], gone["left"]) == (False, True)
    again = kadnode("deregister", "--api", b.api)
    assert_one_line_error(again, "this node is not registered")
    assert kadnode("register", "--api", b.api).returncode == 0
    back = cli_json("find-peer", b_id, api=a.api)
    assert back["found"] is True and back["record"]["seq"] > gone["record"]["seq"]
    assert back["record"]["addresses"] == [{"host": HOST, "port": b.port}]


# ---- (b) forged records -------------------------------------------------------------------


def test_forged_records_are_refused_and_find_peer_returns_the_genuine_one(
    daemons: Daemons,
) -> None:
    seed, a, b = network(daemons, "seed", "a", "b")
    a_id, b_id = a.info()["id"], b.info()["id"]
    raw = RawNode()
    try:
        older = raw.record(seed, a_id)  # what A registered when it joined
        cli_json("register", api=a.api)  # a higher sequence; the seed is one of its replicas
        genuine = raw.record(seed, a_id)
        held = records.from_wire(genuine)
        assert held.seq > records.from_wire(older).seq
        other = raw.record(seed, b_id)  # B's own, genuine record
        token = raw.token(seed)
        before = seed.info()["stats"]

        mallory = Identity.from_seed(os.urandom(32))
        stolen = records.to_wire(
            records.sign_record(mallory, [(HOST, 6666)], held.seq + 1000, time.time() + 3600)
        )
        stolen[0] = bytes.fromhex(a_id)  # signed by Mallory's key, claiming A's id
        tampered = list(genuine)
        tampered[2], tampered[3] = [[HOST, 6666]], held.seq + 1  # A's signature kept
        forgeries = {
            "signed by another key": (stolen, records.ID_NOT_FROM_KEY),
            "bad signature": (tampered, records.BAD_SIGNATURE),
            "replay of a lower sequence": (older, records.OLDER_SEQ),
            "another node's record under A's id": (other, records.OTHER_ID),
        }
        replies = {
            name: raw.put_record(seed, a_id, wire, token) for name, (wire, _) in forgeries.items()
        }
        # A plain STORE, which anyone may send, never replaces a peer record either.
        plain = raw.request(seed, "store", [bytes.fromhex(a_id), f"{HOST}:6666", 3600.0, token])
        assert raw.record(seed, a_id) == genuine
    finally:
        raw.close()

    for name, (_, reason) in forgeries.items():
        assert replies[name] == {"ok": False, "reason": reason}, name
    assert plain is False
    after = seed.info()["stats"]
    assert after["puts_refused"] - before.get("puts_refused", 0) == len(forgeries)
    assert after["stores_refused_kind"] - before.get("stores_refused_kind", 0) == 1

    found = cli_json("find-peer", a_id, api=b.api)
    assert found["record"]["addresses"] == [{"host": HOST, "port": a.port}]
    assert found["record"]["seq"] == held.seq
    assert found["record"]["public_key"] == held.public_key.hex()
    assert found["rejected"] == 0  # nothing forged was ever stored
    print(
        f"\nforgeries: {len(forgeries)} kn_put refused "
        f"({', '.join(r for _, r in forgeries.values())}), 1 plain store refused; "
        f"find-peer on B: seq {held.seq}, {found['answered']} of {found['replicas']} answered"
    )


# ---- (c) concurrent shared writes ---------------------------------------------------------------


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*KADNODE, *with_data_dir(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def test_concurrent_shared_writes_are_siblings_until_a_write_names_their_context(
    daemons: Daemons,
) -> None:
    seed, x, y = network(daemons, "seed", "x", "y")
    x_id, y_id = x.info()["id"], y.info()["id"]
    # Blind writes of one key from two nodes at once: neither has seen the other.
    writes = [
        start_cli("put", "colour", f"set by {n.name}", "--shared", "--api", n.api) for n in (x, y)
    ]
    for proc in writes:
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, (out, err)

    got = cli_json("get", "colour", "--shared", api=seed.api)
    assert sorted(got["siblings"], key=lambda s: s["value"]) == [
        {"value": "set by x", "clock": {x_id: 1}},
        {"value": "set by y", "clock": {y_id: 1}},
    ]
    assert got["context"] == sorted([[x_id, 1], [y_id, 1]])
    shown = kadnode("get", "colour", "--shared", "--api", seed.api)
    lines = shown.stdout.splitlines()
    assert (shown.returncode, lines[0]) == (
        0,
        "2 concurrent values (siblings); to resolve them, put --shared with --context:",
    )
    assert sorted(lines[1:3]) == ["  set by x", "  set by y"]
    context = lines[3].removeprefix("context: ")
    assert json.loads(context) == got["context"]

    # A write naming that context supersedes both.
    done = kadnode("put", "colour", "resolved", "--shared", "--context", context, "--api", x.api)
    assert done.returncode == 0, done.stderr
    for node in (seed, x, y):
        after = cli_json("get", "colour", "--shared", api=node.api)
        assert after["siblings"] == [{"value": "resolved", "clock": {x_id: 2, y_id: 1}}]
        assert after["context"] == sorted([[x_id, 2], [y_id, 1]])
    shown = kadnode("get", "colour", "--shared", "--api", y.api)
    assert (shown.returncode, shown.stdout) == (0, "resolved\n")
    missing = cli_json("get", "no such key", "--shared", api=y.api, status=1)
    assert (missing["found"], missing["siblings"]) == (False, [])
    print("\nshared: 2 blind writes -> 2 siblings; 1 write with their context -> 1 value")


# ---- (d) write quorum and read repair ---------------------------------------------------------


def test_a_write_below_quorum_fails_in_one_line_and_a_read_repairs(daemons: Daemons) -> None:
    seed, writer, other, down1, down2 = network(daemons, "seed", "w", "o", "d1", "d2")
    first = cli_json("put", "config", "v1", "--shared", api=other.api)
    # All five are among the k closest, the writer's own copy included: W = 3 of 5.
    assert (written(first), first["asked"], first["needed"]) == (5, 4, 3)
    read = cli_json("get", "config", "--shared", api=writer.api)
    assert [s["value"] for s in read["siblings"]] == ["v1"]
    assert (read["answered"], read["agreeing"]) == (5, 5)
    context = json.dumps(read["context"])

    # Three of five down: the writer and the seed are a minority.
    for node in (other, down1, down2):
        node.proc.kill()
        node.proc.wait(STOP_TIMEOUT)
    t = time.monotonic()
    failed = kadnode("put", "config", "v2", "--shared", "--context", context, "--api", writer.api)
    failed_s = time.monotonic() - t
    line = assert_one_line_error(failed, "write quorum")
    assert line == (
        "kadnode: error: only 2 of the 5 closest nodes (this one included) hold it;"
        " the write quorum is 3; the value stays where it was acknowledged, and republishing"
        " retries"
    )

    # Back with the data they had: v1, which v2 (held by the writer and the seed) supersedes.
    for node in (other, down1, down2):
        daemons.start(node.name, port=node.port, data_dir=node.data_dir, bootstrap=[seed])
    repaired = cli_json("get", "config", "--shared", api=writer.api)
    assert [s["value"] for s in repaired["siblings"]] == ["v2"]
    assert repaired["answered"] == 5
    assert repaired["repaired"] == 3, repaired
    assert repaired["agreeing"] == 2
    # The repairs were sent without waiting for acknowledgements: poll, bounded.
    again = wait_for(
        lambda: (r := seed.client().get_shared("config"))["agreeing"] == 5 and r,
        5.0,
        "every replica to hold v2",
    )
    assert again["repaired"] == 0 and again["siblings"] == repaired["siblings"], again
    print(
        f"\nquorum: write failed in {failed_s:.2f} s ({line.removeprefix('kadnode: error: ')}); "
        f"after the restart a read repaired {repaired['repaired']} of {repaired['answered']} "
        f"replicas; the next read found {again['agreeing']} agreeing"
    )
