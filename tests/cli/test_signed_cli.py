"""Signed mutable values from the shell, across real daemons on 127.0.0.1: one
node writes, updates and compare-and-swaps its value; another reads it by the
owner's public key; what only the owner can change stays its.
"""

from __future__ import annotations

import json

from daemons import Daemons, assert_one_line_error, cli_json, kadnode, wait_for


def test_put_update_and_cas_from_one_node_read_from_another(daemons: Daemons) -> None:
    seed = daemons.start("seed")
    owner = daemons.start("owner", bootstrap=[seed])
    reader = daemons.start("reader", bootstrap=[seed])
    wait_for(lambda: reader.info()["peers"] >= 2, 10, "the reader to know both nodes")

    first = cli_json("put", "--signed", "v1", "--salt", "profile", api=owner.api)
    assert first["seq"] == 1 and first["salt"] == "profile"
    public_key = first["public_key"]
    got = cli_json("get", "--signed", public_key, "--salt", "profile", api=reader.api)
    assert (got["value"], got["seq"], got["key"]) == ("v1", 1, first["key"])

    second = cli_json("put", "--signed", "v2", "--salt", "profile", api=owner.api)
    assert second["seq"] == 2 and second["key"] == first["key"]
    got = cli_json("get", "--signed", public_key, "--salt", "profile", api=reader.api)
    assert (got["value"], got["seq"], got["rejected"]) == ("v2", 2, 0)

    # Compare-and-swap: a write naming a stale version fails, and writes nothing.
    stale = kadnode("put", "--signed", "v3", "--salt", "profile", "--cas", "1", "--api", owner.api)
    assert_one_line_error(stale, "compare-and-swap failed: the value is at seq 2, not 1")
    swapped = cli_json("put", "--signed", "v3", "--salt", "profile", "--cas", "2", api=owner.api)
    assert swapped["seq"] == 3
    done = kadnode("get", "--signed", public_key, "--salt", "profile", "--api", reader.api)
    assert (done.returncode, done.stdout) == (0, "v3\n")

    # --cas 0: only if nothing is held yet (this node's versions start at 1).
    fresh = cli_json("put", "--signed", "first", "--salt", "new", "--cas", "0", api=owner.api)
    assert fresh["seq"] == 1
    taken = kadnode("put", "--signed", "again", "--salt", "new", "--cas", "0", "--api", owner.api)
    assert_one_line_error(taken, "compare-and-swap failed: the value is at seq 1, not 0")

    # With no salt: a key of its own, not the owner's registered peer record's.
    unsalted = cli_json("put", "--signed", "plain and simple", api=owner.api)
    assert unsalted["seq"] == 1 and unsalted["key"] != owner.info()["id"]
    got = cli_json("get", "--signed", public_key, api=reader.api)
    assert got["value"] == "plain and simple"
    # Another salt is another value; an unknown one is a reply, exit 1.
    other = cli_json("get", "--signed", public_key, "--salt", "nothing", api=reader.api, status=1)
    assert other["found"] is False and other["key"] != first["key"]
    # The reader cannot write the owner's value: its own put is its own key.
    mine = cli_json("put", "--signed", "not yours", "--salt", "profile", api=reader.api)
    assert mine["public_key"] != public_key and mine["key"] != first["key"]
    got = cli_json("get", "--signed", public_key, "--salt", "profile", api=reader.api)
    assert got["value"] == "v3"


def test_signed_arguments_are_checked_in_one_line(daemons: Daemons) -> None:
    node = daemons.start("node")
    cases = {
        ("put", "--signed", "k", "v"): "put --signed takes VALUE",
        ("put", "k"): "put takes KEY VALUE",
        ("put", "--signed", "--shared", "v"): "--shared and --signed cannot be combined",
        ("put", "k", "v", "--salt", "s"): "--salt is only for put --signed",
        ("put", "--signed", "v", "--cas", "x"): "--cas is not JSON: 'x'",
        ("put", "--signed", "v", "--cas", "-1"): "--cas: Input should be greater than or equal",
        ("put", "--signed", "v", "--salt", "s" * 65): "--salt: a salt is at most 64 bytes",
        ("get", "--signed", "abc"): "a public key is 64 lower-case hex digits, not 'abc'",
        ("get", "--signed", "ab" * 32, "--salt", "s" * 65): "a salt is at most 64 bytes",
    }
    for argv, message in cases.items():
        done = kadnode(*argv, "--api", node.api)
        if "cannot be combined" in message:
            assert done.returncode == 2 and message in done.stderr, done.stderr
            continue
        assert_one_line_error(done, message)
    # Nothing was written by any of them.
    assert json.loads(kadnode("info", "--json", "--api", node.api).stdout)["values"] == 0


def test_a_signed_delete_is_seen_from_another_node_and_a_new_put_follows_it(
    daemons: Daemons,
) -> None:
    seed = daemons.start("seed")
    owner = daemons.start("owner", bootstrap=[seed])
    reader = daemons.start("reader", bootstrap=[seed])
    wait_for(lambda: reader.info()["peers"] >= 2, 10, "the reader to know both nodes")
    public_key = cli_json("put", "--signed", "v1", "--salt", "s", api=owner.api)["public_key"]

    stale = kadnode("delete", "--signed", "--salt", "s", "--cas", "0", "--api", owner.api)
    assert_one_line_error(stale, "compare-and-swap failed: the value is at seq 1, not 0")
    deleted = cli_json("delete", "--signed", "--salt", "s", "--cas", "1", api=owner.api)
    assert deleted["seq"] == 2
    got = cli_json("get", "--signed", public_key, "--salt", "s", api=reader.api, status=1)
    assert (got["found"], got["deleted"], got["seq"], got["value"]) == (False, True, 2, None)
    human = kadnode("get", "--signed", public_key, "--salt", "s", "--api", reader.api)
    assert human.returncode == 1
    assert (
        human.stdout == f"deleted: version 2 of {public_key}, salt 's' is its owner's delete\n"
    ), human.stderr
    # Writing again is a version after the delete.
    again = cli_json("put", "--signed", "v3", "--salt", "s", api=owner.api)
    assert again["seq"] == 3
    got = cli_json("get", "--signed", public_key, "--salt", "s", api=reader.api)
    assert (got["found"], got["deleted"], got["value"]) == (True, False, "v3")


def test_a_plain_delete_drops_only_the_publishers_copy_and_says_so(daemons: Daemons) -> None:
    seed = daemons.start("seed")
    publisher = daemons.start("publisher", bootstrap=[seed])
    cli_json("put", "k", "v", api=publisher.api)
    done = kadnode("delete", "k", "--api", publisher.api)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "dropped this node's copy of 'k' and stopped republishing it; the other replicas keep"
        " theirs until they expire (at most 24 h)\n"
    )
    # The seed still holds its copy: a plain value has no owner to prove a delete.
    assert cli_json("get", "k", api=seed.api)["value"] == "v"
    for node, why in ((publisher, "did not publish"), (seed, "did not publish")):
        refused = kadnode("delete", "k", "--api", node.api)
        assert_one_line_error(refused, f"this node {why} a plain value under 'k'")
