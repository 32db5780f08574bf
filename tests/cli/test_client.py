"""ApiClient and the CLI commands over real HTTP on 127.0.0.1.

What a user does and sees, against a real daemon among real nodes (tests/loopback.py,
hosted on a loop in a thread: the client blocks); how the CLI renders replies a small
network cannot produce, and what it does with errors, against a fake service
(tests/fakes.py).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes import (
    CONTEXT,
    INFO,
    METRICS_TEXT,
    PEER,
    PEER_RECORD,
    QUORUM_ERROR,
    READ,
    FakeService,
    message_of,
)
from loopback import (
    NODES,
    STOP_S,
    Network,
    by_distance,
    contact,
    daemon,
    fields,
    in_thread,
    network,
    with_data_dir,
    written,
)

from kadnode.cli.client import ApiClient, add_client_commands, commands, run_client_command
from kadnode.cli.main import build_parser, main
from kadnode.cli.show import SHOW
from kadnode.config import BETA, MAX_KEY_BYTES, MAX_VALUE_BYTES, Config
from kadnode.core import wire
from kadnode.core.ids import key_id, parse_hex, to_hex
from kadnode.core.ring import brute_successor
from kadnode.errors import ApiError, LocalProtocolError, QuorumError
from kadnode.inputs import parse_hostport
from kadnode.shell.api import BY_NAME, OPERATIONS
from kadnode.shell.apiguard import TOKEN_ENV, Guard
from kadnode.shell.datadir import TOKEN_FILE
from kadnode.shell.httpserver import serve, shutdown
from kadnode.shell.messages import QUESTIONS
from kadnode.shell.operations import NodeService, Operation
from kadnode.shell.service import NodeService as DaemonService
from kadnode.shell.webapp import Guard as RequestGuard
from kadnode.shell.webapp import build_app


@asynccontextmanager
async def api_of(
    service: NodeService,
    operations: Sequence[Operation] = OPERATIONS,
    guard: RequestGuard | None = None,
) -> AsyncIterator[str]:
    """The control API over ``service`` on 127.0.0.1 port 0; yields HOST:PORT."""
    listener = await serve(build_app(service, operations, guard), "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{listener.port}"
    finally:
        await shutdown(listener)


def verbatim(name: str) -> list[Operation]:
    """The operations, the one named sending the text its service method returns
    as it is: a daemon (an older one, another implementation) whose reply the
    client's models do not describe. Ours checks its replies before sending."""
    return [replace(o, reply=None) if o.name == name else o for o in OPERATIONS]


@pytest.fixture
def live(tmp_path) -> Iterator[Network]:
    with in_thread(network(tmp_path)) as net:
        yield net


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


@pytest.fixture
def address(fake: FakeService) -> Iterator[str]:
    """The fake's API."""
    with in_thread(api_of(fake)) as address:
        yield address


@pytest.fixture
def dead_address() -> str:
    """An address nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def down(address: str) -> str:
    return f"no kadnode daemon answering at {address} (start one with 'kadnode run')"


# -- ApiClient ---------------------------------------------------------------------------------


def test_not_found_is_a_result_not_an_error(live):
    client = live.client()
    assert fields(client.get("missing"), "key", "found", "value") == {
        "key": "missing",
        "found": False,
        "value": None,
    }
    nobody = client.find_peer("00" * 20)
    assert fields(nobody, "id", "found", "record", "answered") == {
        "id": "00" * 20,
        "found": False,
        "record": None,
        "answered": NODES + 1,  # every replica answered (this node too): none holds one
    }
    assert fields(client.get_shared("missing"), "key", "found", "siblings", "context") == {
        "key": "missing",
        "found": False,
        "siblings": [],
        "context": None,
    }


def test_no_daemon_is_one_clear_api_error(dead_address):
    with pytest.raises(ApiError) as caught:
        ApiClient(dead_address).info()
    assert str(caught.value) == down(dead_address)


def test_default_address_is_the_documented_one():
    assert ApiClient().base == "127.0.0.1:8468"


def test_silent_daemon_times_out():
    with socket.socket() as s:  # listening, never accepting: the kernel completes the connect
        s.bind(("127.0.0.1", 0))
        s.listen()
        base = f"127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(ApiError) as caught:
            ApiClient(base, timeout=0.2).info()
    assert str(caught.value) == f"the daemon at {base} did not answer within 0.2 s"


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (LocalProtocolError("value over 1000 bytes"), LocalProtocolError, "value over 1000 bytes"),
        (ApiError("node is shutting down"), ApiError, "node is shutting down"),
        (RuntimeError("secret"), ApiError, "internal error"),
    ],
)
def test_server_errors_become_their_one_line(address, fake, error, kind, message):
    fake.error = error
    with pytest.raises(kind) as caught:
        ApiClient(address).put("k", "v")
    assert type(caught.value) is kind
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (json.dumps({**INFO, "id": "not hex"}), "id: String should match pattern '^[0-9a-f]{40}$'"),
        (json.dumps({**INFO, "colour": "blue"}), "colour: Extra inputs are not permitted"),
        ("<html>", "not JSON"),
    ],
)
def test_reply_not_matching_the_schema_is_an_api_error(fake, reply, why):
    async def broken_info():
        return reply

    fake.info = broken_info
    with in_thread(api_of(fake, verbatim("info"))) as address, pytest.raises(ApiError) as caught:
        ApiClient(address).info()
    assert str(caught.value) == f"unexpected reply from {address} (HTTP 200): {why}"


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("nocolon", message_of(parse_hostport, "nocolon")),
        ("127.0.0.1:99999", message_of(parse_hostport, "127.0.0.1:99999")),
    ],
)
def test_bad_api_address_is_a_local_error(base, message):
    with pytest.raises(LocalProtocolError) as caught:
        ApiClient(base)
    assert str(caught.value) == message


# -- CLI commands ------------------------------------------------------------------------------


def run(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="kadnode")
    add_client_commands(parser.add_subparsers(dest="command", required=True))
    code = run_client_command(parser.parse_args(with_data_dir(argv)))
    out, err = capsys.readouterr()
    return code, out, err


def json_error(message: str) -> str:
    """What an API command prints on stdout under --json when it fails."""
    return json.dumps({"error": message}, indent=2) + "\n"


def untimed(out: str) -> str:
    """The output with its timings (which vary from run to run) as "N ms"."""
    return re.sub(r"\d+\.\d ms", "N ms", out)


HELD_BY = re.compile(r"on (\d+) nodes, this one among them(?:, (\d+) more being written)?")


def held_by(line: str) -> tuple[str, int]:
    """A put's line with its count as "on N nodes", and that count: those
    that acknowledged and those still being written when W had."""
    found = HELD_BY.search(line)
    assert found is not None, line
    return HELD_BY.sub("on N nodes, this one among them", line), int(found[1]) + int(found[2] or 0)


def listed(contacts: list[dict[str, Any]]) -> list[str]:
    """Contacts as the CLI lists them, one a line."""
    return [f"  {c['id']}  {c['host']}:{c['port']}" for c in contacts]


def test_info_json_and_human(capsys, live):
    me, (host, port) = to_hex(live.server.id), live.server.address
    code, out, err = run(capsys, "info", "--json", "--api", live.api)
    assert (code, err) == (0, "")
    assert fields(json.loads(out), "id", "host", "port", "peers", "values") == {
        "id": me,
        "host": host,
        "port": port,
        "peers": NODES,
        "values": 0,
    }
    code, out, _ = run(capsys, "info", "--api", live.api)
    assert code == 0
    lines = out.splitlines()
    rows = [line.split(None, 1) for line in lines]
    assert rows[:5] == [
        ["id", me],
        ["address", f"{host}:{port}"],
        ["network", "default"],
        ["peers", "4"],
        ["values", "0"],
    ]
    assert rows[5][0] == "uptime"
    # What peers see of it: on loopback, where it listens; no NAT.
    assert rows[6][0] == "observed" and rows[7] == ["mode", "server (not behind NAT)"]
    stats = [name for name, _ in rows[8:]]
    assert stats == sorted(stats) and "requests_in" in stats
    # One column of values.
    assert len({len(line) - len(value) for line, (_, value) in zip(lines, rows, strict=True)}) == 1


def test_lookup_found_and_not_found(capsys, live):
    def unqueried(out: str) -> str:  # it ends once the node or the beta nearest answered
        return re.sub(r"\d+ queried", "Q queried", untimed(out))

    node = live.nodes[0]
    live.run(node.register())
    code, out, _ = run(capsys, "lookup", to_hex(node.id), "--json", "--api", live.api)
    record = json.loads(out)["record"]
    assert (code, record["addresses"]) == (0, [{"host": "127.0.0.1", "port": node.address[1]}])
    assert 1 <= json.loads(out)["queried"] <= NODES  # it ends once the node itself answered
    code, out, _ = run(capsys, "lookup", to_hex(node.id), "--api", live.api)
    assert (code, unqueried(out)) == (
        0,
        f"found {to_hex(node.id)} at 127.0.0.1:{node.address[1]} "
        f"(signed record seq {record['seq']}; Q queried, N ms)\n",
    )
    code, out, _ = run(capsys, "lookup", "00" * 20, "--json", "--api", live.api)
    assert (code, json.loads(out)["found"]) == (1, False)
    code, out, _ = run(capsys, "lookup", "00" * 20, "--api", live.api)
    head, *lines = unqueried(out).splitlines()
    unheard = "  (known only from others' replies)"
    assert (code, head) == (1, f"not found: {'00' * 20} (Q queried, N ms); closest:")
    assert [line.removesuffix(unheard) for line in lines] == listed(by_distance(0, live.contacts))
    assert not any(line.endswith(unheard) for line in lines[:BETA])


def test_put_then_get(capsys, live):
    code, out, _ = run(capsys, "put", "colour", "blue", "--api", live.api)
    head, *replicas = untimed(out).splitlines()
    assert (code, held_by(head)) == (
        0,
        ("stored 'colour' on N nodes, this one among them (N ms); other replicas:", NODES + 1),
    )
    assert set(replicas) <= set(listed(live.contacts))
    assert run(capsys, "get", "colour", "--api", live.api) == (0, "blue\n", "")
    code, out, _ = run(capsys, "get", "colour", "--json", "--api", live.api)
    assert (code, json.loads(out)["value"]) == (0, "blue")
    # Every other node reads it too: it is on the network, not only on this node.
    assert [live.run(n.get("colour")).value for n in live.nodes] == ["blue"] * NODES


def test_get_unknown_key_exits_1(capsys, live):
    code, out, err = run(capsys, "get", "missing", "--json", "--api", live.api)
    assert (code, err) == (1, "")
    assert fields(json.loads(out), "key", "found", "value") == {
        "key": "missing",
        "found": False,
        "value": None,
    }
    assert run(capsys, "get", "missing", "--api", live.api) == (1, "not found: 'missing'\n", "")


def test_register_json_and_human_and_find_peer_finds_it(capsys, live):
    me, (host, port) = to_hex(live.server.id), live.server.address
    code, out, err = run(capsys, "register", "--json", "--api", live.api)
    registered = json.loads(out)
    assert (code, err) == (0, "")
    assert fields(registered, "key", "asked", "local") == {"key": me, "asked": NODES, "local": True}
    assert written(registered) == NODES + 1  # the NODES others and this node's own copy
    assert registered["record"]["addresses"] == [{"host": host, "port": port}]
    code, out, err = run(capsys, "register", "--api", live.api)
    seq = int(re.search(r"\(seq (\d+)\)", out)[1])
    assert (code, held_by(out), err) == (
        0,
        (
            f"registered {me} at {host}:{port} (seq {seq}): on N nodes, this one among them\n",
            NODES + 1,
        ),
        "",
    )
    assert seq > registered["record"]["seq"]  # signed again: a newer record
    code, out, _ = run(capsys, "find-peer", me, "--json", "--api", live.api)
    assert (code, json.loads(out)["record"]["seq"]) == (0, seq)


def test_find_peer_found(capsys, live):
    node = live.nodes[0]
    live.run(node.register())
    code, out, err = run(capsys, "find-peer", to_hex(node.id), "--json", "--api", live.api)
    found = json.loads(out)
    assert (code, err, found["found"]) == (0, "", True)
    code, out, err = run(capsys, "find-peer", f"0x{to_hex(node.id).upper()}", "--api", live.api)
    assert (code, err) == (0, "")
    assert untimed(out).splitlines() == [
        f"{to_hex(node.id)} seq {found['record']['seq']}, signed by its key; verified addresses:",
        f"  127.0.0.1:{node.address[1]}",
        f"{NODES + 1} of {NODES + 1} replicas answered, 0 repaired (N ms)",
    ]


def test_find_peer_not_found_exits_1(capsys, live):
    code, out, err = run(capsys, "find-peer", "00" * 20, "--json", "--api", live.api)
    assert (code, err) == (1, "")
    assert fields(json.loads(out), "id", "found", "record") == {
        "id": "00" * 20,
        "found": False,
        "record": None,
    }
    code, out, err = run(capsys, "find-peer", "00" * 20, "--api", live.api)
    assert (code, untimed(out), err) == (
        1,
        f"not found: no valid record for {'00' * 20}; "
        f"{NODES + 1} of {NODES + 1} replicas answered, 0 repaired (N ms)\n",
        "",
    )


def test_shared_siblings_then_a_put_with_their_context_resolves_them(capsys, live):
    # Two other nodes write the same shared key, neither having read it: siblings.
    one, two = live.nodes[:2]
    live.run(one.put_shared("greeting", "hello"))
    live.run(two.put_shared("greeting", "bonjour"))
    code, out, err = run(capsys, "get", "greeting", "--shared", "--json", "--api", live.api)
    assert (code, err) == (0, "")
    read = json.loads(out)
    assert sorted(s["value"] for s in read["siblings"]) == ["bonjour", "hello"]
    assert read["context"] == sorted([[to_hex(one.id), 1], [to_hex(two.id), 1]])
    code, out, err = run(capsys, "get", "greeting", "--shared", "--api", live.api)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == (
        "2 concurrent values (siblings); to resolve them, put --shared with --context:"
    )
    assert sorted(lines[1:3]) == ["  bonjour", "  hello"]
    assert lines[3] == f"context: {json.dumps(read['context'], separators=(',', ':'))}"
    context = lines[-1].removeprefix("context: ")
    code, out, err = run(
        capsys, "put", "greeting", "hi", "--shared", "--context", context, "--api", live.api
    )
    head, *replicas = untimed(out).splitlines()
    assert (code, err, held_by(head)) == (
        0,
        "",
        ("stored 'greeting' on N nodes, this one among them (N ms); other replicas:", NODES + 1),
    )
    assert set(replicas) <= set(listed(live.contacts))
    assert run(capsys, "get", "greeting", "--shared", "--api", live.api) == (0, "hi\n", "")


def test_delete_shared_leaves_what_it_did_not_see_and_then_everything_reads_deleted(capsys, live):
    one, two = live.nodes[:2]
    live.run(one.put_shared("room", "hello"))
    code, out, _ = run(capsys, "get", "room", "--shared", "--json", "--api", live.api)
    seen = json.dumps(json.loads(out)["context"])
    live.run(two.put_shared("room", "bonjour"))  # after the read: the delete never saw it
    code, out, err = run(capsys, "delete", "room", "--shared", "--context", seen, "--api", live.api)
    assert (code, err) == (0, "")
    assert untimed(out).startswith("deleted 'room': a tombstone superseding what the read saw")
    assert run(capsys, "get", "room", "--shared", "--api", live.api) == (0, "bonjour\n", "")
    # Without --context: what a read just before finds.
    code, out, err = run(capsys, "delete", "room", "--shared", "--api", live.api)
    assert (code, err) == (0, "")
    assert run(capsys, "get", "room", "--shared", "--api", live.api) == (
        1,
        "deleted: every version of 'room' the replicas hold is a delete\n",
        "",
    )
    code, out, err = run(capsys, "delete", "room", "--shared", "--api", live.api)
    assert (code, out, err) == (
        2,
        "",
        "kadnode: error: nothing to delete: no shared value under 'room'\n",
    )


def test_exists_answers_0_or_1_for_held_missing_and_deleted_keys(capsys, live):
    live.run(live.nodes[0].put("here", "v"))
    live.run(live.nodes[1].put_shared("room", "v"))
    code, out, err = run(capsys, "exists", "here", "--api", live.api)
    assert (code, err) == (0, "") and untimed(out).startswith(
        "exists: 'here' holds a plain value ("
    )
    code, out, err = run(capsys, "exists", "absent", "--api", live.api)
    assert (code, err) == (1, "") and out.startswith("not found: 'absent' (0 nodes held a version")
    run(capsys, "delete", "room", "--shared", "--api", live.api)
    code, out, err = run(capsys, "exists", "room", "--json", "--api", live.api)
    gone = json.loads(out)
    assert (code, gone["exists"], gone["deleted"], gone["kind"]) == (1, False, True, "shared")
    code, out, err = run(capsys, "exists", "room", "--api", live.api)
    assert out.startswith("not found: 'room' was deleted (its newest shared version) (")


def test_put_shared_blind_json(capsys, live):
    code, out, err = run(capsys, "put", "new", "v", "--shared", "--json", "--api", live.api)
    assert (code, err) == (0, "")
    reply = json.loads(out)
    assert fields(reply, "key", "asked") == {"key": "new", "asked": NODES}
    assert written(reply) == NODES + 1
    assert run(capsys, "get", "new", "--shared", "--api", live.api) == (0, "v\n", "")


def test_get_shared_unknown_key_exits_1(capsys, live):
    code, out, err = run(capsys, "get", "missing", "--shared", "--json", "--api", live.api)
    assert (code, err) == (1, "")
    assert json.loads(out)["found"] is False
    assert run(capsys, "get", "missing", "--shared", "--api", live.api) == (
        1,
        "not found: 'missing'\n",
        "",
    )


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (("--context", "[]"), "--context is only for put --shared"),
        (("--shared", "--context", "[[1,"), "--context is not JSON: '[[1,'"),
        (("--shared", "--context", '{"a": 1}'), "--context: Input should be a valid list"),
        (
            ("--shared", "--context", '[["zz", 1]]'),
            "--context[0][0]: String should match pattern '^[0-9a-f]{40}$'",
        ),
        # Refused by the client too, with the model the daemon checks the body with
        # (the hand-written check let it through, to the daemon's 400).
        (("--shared", "--context", f'[["{"ab" * 20}"]]'), "--context[0][1]: Field required"),
        (
            ("--shared", "--context", f'[["{"ab" * 20}", 0]]'),
            "--context[0][1]: Input should be greater than or equal to 1",
        ),
    ],
)
def test_bad_context_is_one_line_and_exit_2_and_nothing_is_written(capsys, live, argv, error):
    assert run(capsys, "put", "greeting", "v", *argv, "--api", live.api) == (
        2,
        "",
        f"kadnode: error: {error}\n",
    )
    assert run(capsys, "get", "greeting", "--api", live.api)[0] == 1
    assert run(capsys, "get", "greeting", "--shared", "--api", live.api)[0] == 1


def test_peers_and_ping(capsys, live):
    code, out, _ = run(capsys, "peers", "--api", live.api)
    head, *peers = out.splitlines()
    assert (code, head) == (0, f"{NODES} peers")
    assert sorted(line.split("  failures ")[0] for line in peers) == sorted(listed(live.contacts))
    assert all(re.search(r"  failures 0  seen \d+ s ago$", line) for line in peers)
    node = live.nodes[0]
    address = f"127.0.0.1:{node.address[1]}"
    code, out, _ = run(capsys, "ping", address, "--api", live.api)
    assert (code, re.sub(r"\d+\.\d\d ms", "N ms", out)) == (
        0,
        f"reply from {address}: id {to_hex(node.id)}, N ms\n",
    )
    node.close()
    assert run(capsys, "ping", address, "--api", live.api) == (1, f"no reply from {address}\n", "")


def owner_lines(key: str, key_id: str, successor: str, closest: list[str]) -> list[str]:
    return [
        f"key {key!r} is SHA-1 {key_id} (N ms)",
        f"ring owner: {QUESTIONS['successor']}",
        successor,
        f"k closest: {QUESTIONS['closest']}",
        *closest,
    ]


def test_owner_json_and_human(capsys, live):
    everyone = set(live.by_id)
    target = key_id("greeting")
    owner = live.by_id[brute_successor(target, everyone)]
    closest = by_distance(target, list(live.by_id.values()))
    code, out, err = run(capsys, "owner", "greeting", "--json", "--api", live.api)
    assert (code, err) == (0, "")
    reply = json.loads(out)
    assert fields(reply, "key", "key_id", "successor", "closest", "questions") == {
        "key": "greeting",
        "key_id": "a0f7e779f9247566c84036f07f7bdf4a40a869bd",
        "successor": owner,
        "closest": closest,
        "questions": QUESTIONS,
    }
    code, out, err = run(capsys, "owner", "greeting", "--api", live.api)
    assert (code, err) == (0, "")
    assert untimed(out).splitlines() == owner_lines(
        "greeting",
        "a0f7e779f9247566c84036f07f7bdf4a40a869bd",
        f"{listed([owner])[0]}  ({reply['successor_hops']} hops)",
        listed(closest),
    )


def test_ring_json_and_human(capsys, live):
    code, out, err = run(capsys, "ring", "--json", "--api", live.api)
    assert (code, err) == (0, "")
    ring = json.loads(out)
    assert ring["self"] == live.by_id[live.server.id]
    assert len(ring["successors"]) == min(NODES, Config().successors)
    code, out, err = run(capsys, "ring", "--api", live.api)
    assert (code, err) == (0, "")
    width = len(str(ring["fingers"][-1]["index"]))
    assert out.splitlines() == [
        f"predecessor{listed([ring['predecessor']])[0]}",
        f"self       {listed([ring['self']])[0]}",
        f"successors   {len(ring['successors'])}, nearest clockwise first",
        *listed(ring["successors"]),
        f"fingers      {len(ring['fingers'])}; finger i: the first node at or after self + 2^i",
        *(f"  {f['index']:>{width}}{listed([f])[0]}" for f in ring["fingers"]),
    ]


def test_ring_of_a_daemon_alone(capsys, tmp_path):
    with in_thread(daemon(tmp_path)) as alone:
        me = listed([contact(alone.server)])[0]
        assert run(capsys, "ring", "--api", alone.api) == (
            0,
            "\n".join(
                [
                    "predecessor  none known",
                    f"self       {me}",
                    "successors   0, nearest clockwise first",
                    "  none known",
                    "fingers      0; finger i: the first node at or after self + 2^i",
                    "",
                ]
            ),
            "",
        )


def test_a_put_on_a_daemon_alone_says_it_holds_the_only_copy(capsys, tmp_path):
    with in_thread(daemon(tmp_path)) as alone:
        code, out, err = run(capsys, "put", "colour", "blue", "--api", alone.api)
    assert (code, untimed(out), err) == (
        0,
        "stored 'colour' on this node only: it knows no other node, so it holds the only copy"
        " (N ms)\n",
        "",
    )


def test_leave_hands_the_values_on_and_the_daemon_stops(capsys, live):
    assert run(capsys, "put", "colour", "blue", "--api", live.api)[0] == 0
    assert run(capsys, "leave", "--api", live.api) == (
        0,
        f"handed 1 keys to the nodes now responsible ({NODES} stores, {NODES} acknowledged); "
        f"{NODES} nodes took its goodbye; the daemon is stopping\n",
        "",
    )
    live.run(asyncio.wait_for(live.stopped, STOP_S))
    assert run(capsys, "info", "--api", live.api) == (2, "", f"kadnode: error: {down(live.api)}\n")


# -- what the CLI shows for replies a small network does not give, against the fake ----------


def test_lookup_of_an_older_daemon_without_records(capsys, address, fake):
    async def no_record(target):
        return {
            "target": PEER["id"],
            "found": True,
            "peer": PEER,
            "closest": [PEER],
            "queried": 4,
            "elapsed_ms": 12.5,
        }

    fake.lookup = no_record
    code, out, _ = run(capsys, "lookup", PEER["id"], "--api", address)
    assert (code, out) == (0, f"found {PEER['id']} at 127.0.0.1:4001 (4 queried, 12.5 ms)\n")


def test_find_peer_of_a_node_that_left_says_so_and_misses(capsys, address, fake):
    async def left(target):
        gone = {**PEER_RECORD, "addresses": [], "seq": PEER_RECORD["seq"] + 1}
        return {"id": PEER["id"], "found": False, "left": True, "record": gone, **READ}

    fake.find_peer = left
    code, out, _ = run(capsys, "find-peer", PEER["id"], "--api", address)
    assert code == 1
    assert out.startswith(
        f"not found: {PEER['id']} left the network (seq {PEER_RECORD['seq'] + 1}); "
    )


def test_find_peer_says_what_the_read_saw(capsys, address, fake):
    async def contested(target):
        two = {**PEER_RECORD, "addresses": [*PEER_RECORD["addresses"], {"host": "::1", "port": 9}]}
        return {
            "id": PEER["id"],
            "found": True,
            "left": False,
            "record": two,
            **READ,
            "answered": 1,
            "rejected": 2,
            "quorum": False,
        }

    fake.find_peer = contested
    code, out, _ = run(capsys, "find-peer", PEER["id"], "--api", address)
    assert (code, out.splitlines()) == (
        0,
        [
            f"{PEER['id']} seq {PEER_RECORD['seq']}, signed by its key; verified addresses:",
            "  127.0.0.1:4001",
            "  [::1]:9",
            "1 of 2 replicas answered, 1 repaired, 2 invalid versions rejected; "
            "below the read quorum of 2 (6.5 ms)",
        ],
    )


@pytest.mark.parametrize("argv", [("register",), ("put", "k", "v", "--shared")])
def test_a_write_below_its_quorum_is_one_line_and_exit_2(capsys, address, fake, argv):
    fake.error = QuorumError(QUORUM_ERROR)
    for extra, out in (((), ""), (("--json",), json_error(QUORUM_ERROR))):
        assert run(capsys, *argv, *extra, "--api", address) == (
            2,
            out,
            f"kadnode: error: {QUORUM_ERROR}\n",
        )


def test_owner_without_a_ring_answer_exits_1(capsys, address, fake):
    async def lost(key):
        return {
            "key": key,
            "key_id": "11f6ad8ec52a2984abaafd7c3b516503785c2072",
            "successor": None,
            "successor_hops": 3,
            "closest": [],
            "questions": QUESTIONS,
            "elapsed_ms": 2.5,
        }

    fake.owner = lost
    code, out, err = run(capsys, "owner", "x", "--api", address)
    assert (code, err) == (1, "")
    assert untimed(out).splitlines() == owner_lines(
        "x",
        "11f6ad8ec52a2984abaafd7c3b516503785c2072",
        "  unknown: Chord routing failed after 3 hops",
        ["  none known"],
    )
    code, out, _ = run(capsys, "owner", "x", "--json", "--api", address)
    assert (code, json.loads(out)["successor"]) == (1, None)


def test_leave_that_timed_out_exits_1(capsys, address, fake):
    async def timed_out():
        return {
            "keys": None,
            "stores": None,
            "acks": None,
            "elapsed_ms": 10000.4,
            "timed_out": True,
        }

    fake.leave = timed_out
    assert run(capsys, "leave", "--api", address) == (
        1,
        "the hand-off did not finish within 10.0 s: some values may not have been handed on; "
        "the daemon is stopping\n",
        "",
    )
    code, out, _ = run(capsys, "leave", "--json", "--api", address)
    assert (code, json.loads(out)["timed_out"]) == (1, True)


NEW_COMMANDS = [
    ("owner", "k"),
    ("ring",),
    ("leave",),
    ("register",),
    ("find-peer", PEER["id"]),
    ("put", "k", "v", "--shared"),
    ("get", "greeting", "--shared"),
]


WATCH_COMMANDS = [
    ("watch", "k"),
    ("watch", "k", "--shared"),
    ("watch", "--signed", "ab" * 32, "--salt", "s"),
]


@pytest.mark.parametrize("argv", NEW_COMMANDS + WATCH_COMMANDS)
@pytest.mark.parametrize(
    ("error", "message"),
    [
        (LocalProtocolError("too many operations"), "too many operations"),
        (ApiError("node is shutting down"), "node is shutting down"),
        (RuntimeError("secret"), "internal error"),
    ],
)
def test_new_commands_exit_2_on_errors(capsys, address, fake, argv, error, message):
    fake.error = error
    assert run(capsys, *argv, "--api", address) == (2, "", f"kadnode: error: {message}\n")


@pytest.mark.parametrize("argv", NEW_COMMANDS)
def test_new_commands_without_daemon_exit_2(capsys, dead_address, argv):
    code, out, err = run(capsys, *argv, "--json", "--api", dead_address)
    assert (code, out, err) == (
        2,
        json_error(down(dead_address)),
        f"kadnode: error: {down(dead_address)}\n",
    )


@pytest.mark.parametrize("argv", WATCH_COMMANDS)
def test_watch_without_daemon_is_one_line_and_exit_2(capsys, dead_address, argv):
    code, out, err = run(capsys, *argv, "--json", "--api", dead_address)
    # Under --json a watch prints JSON lines: its error too is one line.
    assert (code, out, err) == (
        2,
        json.dumps({"error": down(dead_address)}) + "\n",
        f"kadnode: error: {down(dead_address)}\n",
    )


TIME = r"\d\d:\d\d:\d\d  "


def test_watch_prints_a_line_a_version_and_the_streams_end_in_one_line(capsys, address, fake):
    # The fake's stream: one version, a read with nothing new, then the daemon stops.
    code, out, err = run(capsys, "watch", "greeting", "--api", address)
    assert (code, err) == (2, "kadnode: error: the daemon is stopping\n")
    assert re.fullmatch(f"{TIME}hello\n", out), out
    code, out, err = run(capsys, "watch", "greeting", "--shared", "--count", "1", "--api", address)
    assert (code, err) == (0, "")
    assert re.fullmatch(f'{TIME}2 concurrent values: \\["hello", "bonjour"\\]\n', out), out
    argv = ("watch", "--signed", "ab" * 32, "--count", "1", "--json", "--api", address)
    code, out, err = run(capsys, *argv)
    assert (code, err, out.count("\n")) == (0, "", 1)
    assert fields(json.loads(out), "public_key", "seq", "value") == {
        "public_key": "ab" * 32,
        "seq": 3,
        "value": "hello",
    }
    assert fake.answered == ["watch", "watch_shared", "watch_signed"]


@pytest.mark.parametrize(
    ("operation", "reply", "line"),
    [
        ("watch", {"key": "k", "found": False, "value": None}, "not found: 'k'"),
        ("watch", {"key": "k", "found": True, "value": "two\nlines"}, '"two\\nlines"'),
        ("watch", {"key": "k", "found": True, "value": 7}, "7"),
        ("watch_shared", {"key": "k", "found": False, "deleted": False, "siblings": []},
         "not found: 'k'"),
        ("watch_shared", {"key": "k", "found": False, "deleted": True, "siblings": []},
         "deleted: 'k'"),
        (
            "watch_signed",
            {"public_key": "ab" * 32, "salt": "s", "found": False, "deleted": True, "seq": 5},
            "version 5: deleted by its owner",
        ),
        (
            "watch_signed",
            {"public_key": "ab" * 32, "salt": "", "found": False, "deleted": False, "seq": None},
            f"not found: no valid version of {'ab' * 32}",
        ),
        (
            "watch_signed",
            {"public_key": "ab" * 32, "salt": "", "found": True, "deleted": False, "seq": 2,
             "value": "v"},
            "version 2: v",
        ),
    ],
)  # fmt: skip
def test_each_version_a_watch_prints_is_one_line(operation, reply, line):
    assert SHOW[operation](reply) == line


def test_a_reply_from_an_older_daemon_is_one_line_and_exit_2(capsys, fake):
    async def no_questions(key):
        return json.dumps({"key": key, "successor": None})

    fake.owner = no_questions
    with in_thread(api_of(fake, verbatim("owner"))) as address:
        code, out, err = run(capsys, "owner", "k", "--api", address)
    assert (code, out) == (2, "")
    assert err == (
        f"kadnode: error: unexpected reply from {address} (HTTP 200): key_id: Field required\n"
    )


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (("lookup", "xyz"), message_of(parse_hex, "xyz")),
        (("ping", "nocolon"), f"address: {message_of(parse_hostport, 'nocolon')}"),
        (("get", ""), "the key cannot be empty"),
        (("owner", ""), "the key cannot be empty"),
        (("find-peer", "xyz"), message_of(parse_hex, "xyz")),
        (("find-peer", ""), "the id cannot be empty"),
        (("get", "", "--shared"), "the key cannot be empty"),
        (("put", "", "v", "--shared"), "the key cannot be empty"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, address, argv, error):
    line = f"kadnode: error: {error}\n"
    assert run(capsys, *argv, "--api", address) == (2, "", line)
    assert run(capsys, *argv, "--json", "--api", address) == (2, json_error(error), line)


# Over the daemon's limits: a key of MAX_KEY_BYTES + 1 UTF-8 bytes ("é" is two), and a
# value whose msgpack encoding (3-byte str16 header) is MAX_VALUE_BYTES + 1 bytes.
LONG_KEY = "é" * (MAX_KEY_BYTES // 2) + "k"
LONG_VALUE = "v" * (MAX_VALUE_BYTES - 2)
KEY_OVER = f"key of {MAX_KEY_BYTES + 1} bytes is over the {MAX_KEY_BYTES}-byte limit"
VALUE_OVER = (
    f"value: value of {MAX_VALUE_BYTES + 1} bytes (msgpack-encoded) is over the "
    f"{MAX_VALUE_BYTES}-byte limit"
)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (("put", LONG_KEY, "v"), KEY_OVER),
        (("put", LONG_KEY, "v", "--shared"), KEY_OVER),
        (("get", LONG_KEY), KEY_OVER),
        (("get", LONG_KEY, "--shared"), KEY_OVER),
        (("owner", LONG_KEY), KEY_OVER),
        (("put", "k", LONG_VALUE), VALUE_OVER),
        (("put", "k", LONG_VALUE, "--shared"), VALUE_OVER),
        # Far over: the HTTP server's own head and body bounds would answer first.
        (("put", "k" * 10_000, "v"), "key of 10000 bytes is over the 512-byte limit"),
        (
            ("put", "k", "v" * 100_000),
            "value: value of 100005 bytes (msgpack-encoded) is over the 1000-byte limit",
        ),
    ],
)
def test_sizes_over_the_limits_are_refused_before_sending(capsys, dead_address, argv, error):
    # No daemon answers there: the one line is the limit, so nothing was sent.
    assert run(capsys, *argv, "--api", dead_address) == (2, "", f"kadnode: error: {error}\n")


def test_a_key_and_a_value_at_the_limits_are_stored(capsys, live):
    key, value = LONG_KEY[:-1], LONG_VALUE[:-1]
    assert len(key.encode()) == MAX_KEY_BYTES and len(wire.pack(value)) == MAX_VALUE_BYTES
    assert run(capsys, "put", key, value, "--api", live.api)[0] == 0
    assert run(capsys, "get", key, "--api", live.api) == (0, f"{value}\n", "")


def test_the_readme_states_both_limits_where_it_shows_put_and_get():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Talk to a node from a shell", 1)[1].split("\n## ", 1)[0]
    words = " ".join(section.split())  # however the paragraph is wrapped
    assert f"a key is at most {MAX_KEY_BYTES} bytes" in words
    assert f"a value at most {MAX_VALUE_BYTES} bytes once msgpack-encoded" in words


def test_no_daemon_is_one_line_and_exit_2(capsys, dead_address, monkeypatch):
    monkeypatch.setenv("KADNODE_API", dead_address)  # --api defaults to $KADNODE_API
    code, out, err = run(capsys, "info")
    assert (code, out, err) == (2, "", f"kadnode: error: {down(dead_address)}\n")


def test_api_options_may_come_before_the_command(capsys, address):
    assert main(["--api", address, "--json", "info"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert main(["info", f"--api={address}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == before
    assert main(["--api", address, "ping", "127.0.0.1:9"]) in (0, 1)  # parsed, and asked
    assert "error" not in capsys.readouterr().err


TOKEN = "t" * 32


@pytest.fixture
def guarded(fake: FakeService, tmp_path, monkeypatch) -> Iterator[tuple[str, Path]]:
    """The fake's API behind the daemon's guard (a write needs the token), and a
    data directory holding that token; none is found without --data-dir."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv("KADNODE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./kadnode-data, the default
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    (data_dir / TOKEN_FILE).write_text(TOKEN + "\n")
    with in_thread(api_of(fake, guard=Guard(TOKEN, local=True).refusal)) as address:
        yield address, data_dir


@pytest.mark.parametrize(
    "argv",
    [
        ["--api", "{api}", "--data-dir", "{dir}", "--json", "register"],
        ["--json", "--data-dir={dir}", "--api={api}", "register"],
        ["register", "--api", "{api}", "--data-dir", "{dir}", "--json"],
        ["--api", "{api}", "register", "--json", "--data-dir", "{dir}"],
        ["--data-dir", "{dir}", "--json", "register", "--api", "{api}"],
    ],
)
def test_api_json_and_data_dir_before_or_after_the_command(capsys, guarded, fake, argv):
    api, data_dir = guarded
    argv = [a.format(api=api, dir=data_dir) for a in argv]
    assert main(argv) == 0  # --data-dir read: the token went with the write
    out, err = capsys.readouterr()
    assert (json.loads(out)["key"], err, fake.answered) == (INFO["id"], "", ["register"])


def test_a_write_without_the_data_dir_is_refused_in_one_line(capsys, guarded, fake):
    api, _ = guarded
    code = main(["--json", "--api", api, "register"])
    out, err = capsys.readouterr()
    message = json.loads(out)["error"]
    assert (code, err, fake.answered) == (2, f"kadnode: error: {message}\n", [])
    assert message.startswith("this call changes the node and needs the API token;")


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--api", "{api}", "info"],
        ["--api", "{api}", "info", "--json"],
        ["info", "--json", "--api", "{api}"],
        ["--json", "--api", "{api}", "put", "k", "v"],
        ["--json", "--api", "{api}", "get", "k", "--shared"],
    ],
)
def test_json_on_failure_is_an_error_object_on_stdout(capsys, dead_address, argv):
    code = main([a.format(api=dead_address) for a in argv])
    out, err = capsys.readouterr()
    assert (code, json.loads(out), err) == (
        2,
        {"error": down(dead_address)},
        f"kadnode: error: {down(dead_address)}\n",
    )


# Variables a proxy is taken from (curl's, and httpx's when it trusts the environment).
PROXY_VARIABLES = (
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
)


def test_the_client_never_goes_through_a_proxy(capsys, address, dead_address, monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, f"http://{dead_address}")  # a proxy nobody runs
    for name in ("no_proxy", "NO_PROXY"):  # nothing exempt from it
        monkeypatch.delenv(name, raising=False)
    assert ApiClient(address).info() == INFO
    assert run(capsys, "get", "k", "--api", address)[:2] == (0, "hello\n")


def test_fault_takes_numbers_and_metrics_text(capsys, address, fake):
    client = ApiClient(address)
    assert client.fault(200, jitter_ms=50)["jitter_ms"] == 50
    assert client.fault(0)["delay_ms"] == 0
    assert client.metrics() == METRICS_TEXT
    with pytest.raises(LocalProtocolError) as caught:  # numbers, not their text
        client.fault("200")
    assert str(caught.value) == "delay_ms: Input should be a valid number"
    assert run(capsys, "fault", "200", "--jitter-ms", "12.5", "--api", address) == (
        0,
        "every datagram now waits 200 ms +- 12.5 ms"
        " (kadnode transport send delay (--allow-fault-injection))\n",
        "",
    )
    assert run(capsys, "fault", "0", "--api", address) == (
        0,
        "fault injection cleared: datagrams go out at once\n",
        "",
    )
    assert fake.answered == ["fault", "fault", "metrics", "fault", "fault"]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (("fault", "abc"), "delay_ms is not JSON: 'abc'"),
        (("fault", '"200"'), "delay_ms: Input should be a valid number"),
        (("fault", "60001"), "delay_ms: Input should be less than or equal to 60000"),
        (("fault", "-1"), "delay_ms: Input should be greater than or equal to 0"),
        (("fault", "1", "--jitter-ms", "x"), "--jitter-ms is not JSON: 'x'"),
        (
            ("fault", "1", "--jitter-ms", "60001"),
            "--jitter-ms: Input should be less than or equal to 60000",
        ),
    ],
)
def test_bad_fault_numbers_are_refused_before_sending(capsys, dead_address, argv, error):
    assert run(capsys, *argv, "--api", dead_address) == (2, "", f"kadnode: error: {error}\n")


# -- one declaration per operation: the CLI, the client and the services agree -------------------

# A value for each path parameter and body field, by name: a name none of these
# knows is a renamed one.
EXAMPLES: dict[str, Any] = {
    "key": "greeting",
    "id": PEER["id"],
    "value": "hello",
    "context": CONTEXT,
    "address": "127.0.0.1:4001",
    "delay_ms": 200,
    "jitter_ms": 50,
    "public_key": "ab" * 32,
    "salt": "profile",
    "cas": 3,
    "ttl": 600.0,
}
# The services take the parsed path parameter "id" (an int) as "target".
SERVICE_NAMES = {"id": "target"}


def requested(operation: Operation) -> list[str]:
    """What a caller gives the operation, in order: its path parameters, its query
    parameters, then its body's fields."""
    body = list(operation.body.model_fields) if operation.body else []
    return [p.name for p in operation.params + operation.query] + body


def test_every_command_takes_its_operations_params_then_required_fields():
    parser = argparse.ArgumentParser(prog="kadnode")
    subparsers = parser.add_subparsers(dest="command")
    add_client_commands(subparsers)
    declared = {o.command for o in OPERATIONS if o.command is not None}
    assert set(subparsers.choices) == declared
    for operation in OPERATIONS:
        if operation.command is None:
            continue
        command = subparsers.choices[operation.command]
        positionals = [a.dest for a in command._actions if not a.option_strings]
        fields = operation.body.model_fields.items() if operation.body else []
        required = [name for name, field in fields if field.is_required()]
        wanted = [p.name for p in operation.params] + required
        if command.get_default("in_order"):  # put KEY VALUE beside put --signed VALUE
            assert len(wanted) <= len(positionals), operation.name
        else:
            assert positionals == wanted, operation.name
        flags = command._option_string_actions
        optional = [name for name, field in fields if not field.is_required()]
        for name in optional + [p.name for p in operation.query]:
            assert "--" + name.replace("_", "-") in flags, (operation.name, name)
        if operation.variant is not None:
            assert flags[f"--{operation.variant}"].const is True, operation.name
    assert [o.name for o in commands()["put"]] == ["put", "put_shared", "put_signed"]


def parameters(method: Callable[..., Any]) -> list[str]:
    return [name for name in inspect.signature(method).parameters if name != "self"]


@pytest.mark.parametrize(
    "implementation",
    [NodeService, DaemonService, FakeService],
    ids=["operations.NodeService", "service.NodeService", "fakes.FakeService"],
)
def test_every_operation_is_a_service_method_taking_its_params_and_fields(implementation):
    for operation in OPERATIONS:
        names = requested(operation)
        if operation.answer is not None:  # health, dashboard: answered without the service
            assert names == [], operation.name
            continue
        method = getattr(implementation, operation.name)
        given = {p.name: p.parse(EXAMPLES[p.name]) for p in operation.params}
        given |= {name: EXAMPLES[name] for name in names[len(operation.params) :]}
        inspect.signature(method).bind(None, *operation.call_arguments(given))
        if operation.arguments is None:
            expected = [SERVICE_NAMES.get(name, name) for name in names]
            assert parameters(method) == expected, (implementation, operation.name)
    # The one whose arguments differ: ping's address reaches the service as host and port.
    ping = BY_NAME["ping"]
    assert ping.call_arguments({"address": "127.0.0.1:4001"}) == ("127.0.0.1", 4001)
    assert parameters(implementation.ping) == ["host", "port"]


def replies_of(operation: Operation, result: Any) -> Any:
    """A call's reply; a stream's, every reply it gave until it ended (the fake's
    streams end as when the daemon stops: an error, in one line)."""
    if not operation.stream:
        return result
    got = []
    with pytest.raises(ApiError, match=r"^the daemon is stopping$"):
        got.extend(result)
    return got


def test_every_operation_is_a_client_method_taking_its_params_and_fields(address, fake):
    client = ApiClient(address)
    for operation in OPERATIONS:
        names = requested(operation)
        method = getattr(client, operation.name)
        by_position = replies_of(operation, method(*(EXAMPLES[name] for name in names)))
        by_name = replies_of(operation, method(**{name: EXAMPLES[name] for name in names}))
        assert by_position == by_name, operation.name
        if operation.stream:  # the fake's stream: one version, then a read with no news
            assert len(by_name) == 1 and by_name[0]["found"], operation.name
        answered = [] if operation.answer is not None else [operation.name] * 2
        assert fake.answered == answered, operation.name
        fake.answered.clear()
    with pytest.raises(AttributeError):
        client.no_such_operation  # noqa: B018


def test_the_readmes_command_table_lists_every_command_with_its_question():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("| command | question | answered by |\n|---|---|---|\n", 1)[1]
    rows = [line.split(" | ") for line in table.split("\n\n", 1)[0].splitlines()]
    named = {
        re.match(r"`?([a-z-]+)", part).group(1) for row in rows for part in row[0][2:].split(" / ")
    }
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert named == set(sub.choices)
    assert all(len(row) == 3 and row[1].strip() for row in rows)
