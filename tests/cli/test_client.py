"""ApiClient and the CLI commands against a real API server on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fakes import (
    GREETING_CONTEXT,
    GREETING_SIBLINGS,
    INFO,
    LEFT,
    LOOKUP_MISS,
    NODE_ID,
    PEER,
    PEER_RECORD,
    PREDECESSOR,
    QUORUM_ERROR,
    READ,
    READ_NOTHING,
    REGISTERED,
    RING,
    SELF,
    SELF_RECORD,
    WRITTEN,
    FakeService,
    message_of,
)

from kadnode.cli.client import ApiClient, add_client_commands, run_client_command
from kadnode.core.ids import parse_hex
from kadnode.errors import ApiError, LocalProtocolError
from kadnode.inputs import parse_hostport
from kadnode.shell.api import QUESTIONS, build_routes
from kadnode.shell.daemon import QuorumError
from kadnode.shell.httpserver import Route, serve


@contextmanager
def running(routes: list[Route]) -> Iterator[str]:
    """Serve ``routes`` from an event loop in a thread; yield HOST:PORT."""
    started: queue.Queue[tuple[asyncio.AbstractEventLoop, asyncio.Event, int]] = queue.Queue()

    async def main() -> None:
        stop = asyncio.Event()
        async with await serve(routes, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            started.put((asyncio.get_running_loop(), stop, port))
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    loop, stop, port = started.get(timeout=5)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


@pytest.fixture
def address(fake: FakeService) -> Iterator[str]:
    with running(build_routes(fake)) as address:
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


def test_client_returns_the_api_dicts(address, fake):
    client = ApiClient(address)
    assert client.info() == INFO
    assert client.lookup(PEER["id"])["peer"] == PEER
    assert client.lookup("00" * 20)["found"] is False
    assert client.put("k/ü", "v") == {
        "key": "k/ü",
        "stored": 2,
        "replicas": [PEER],
        "elapsed_ms": 3.0,
    }
    assert fake.values["k/ü"] == "v"
    assert client.get("k/ü") == {"key": "k/ü", "found": True, "value": "v", "elapsed_ms": 1.5}
    assert client.peers()["peers"] == [{**PEER, "failures": 1, "last_seen_s": 2.5}]
    assert client.ping("127.0.0.1:4001")["alive"] is True
    assert client.owner("a b/c")["successor"] == PREDECESSOR
    assert client.ring() == RING
    assert client.register() == REGISTERED
    assert client.find_peer(PEER["id"]) == {
        "id": PEER["id"],
        "found": True,
        "record": PEER_RECORD,
        **READ,
    }
    assert client.find_peer(SELF["id"])["record"] == SELF_RECORD
    assert client.put_shared("k/ü", "v") == {"key": "k/ü", **WRITTEN, "elapsed_ms": 3.5}
    assert client.get_shared("k/ü")["siblings"] == [{"value": "v", "clock": {NODE_ID: 1}}]
    resolved = client.put_shared("greeting", "hi", GREETING_CONTEXT)
    assert resolved == {"key": "greeting", **WRITTEN, "elapsed_ms": 3.5}
    assert client.get_shared("greeting")["siblings"] == [
        {"value": "hi", "clock": {NODE_ID: 1, PEER["id"]: 1, PREDECESSOR["id"]: 1}}
    ]
    assert not fake.left
    assert client.leave() == LEFT
    assert fake.left


def test_records_and_shared_values_not_found_are_results_not_errors(address):
    client = ApiClient(address)
    missing = {"found": False, "record": None, **READ_NOTHING}
    assert client.find_peer("00" * 20) == {"id": "00" * 20, **missing}
    assert client.get_shared("missing") == {
        "key": "missing",
        "found": False,
        "siblings": [],
        "context": None,
        **READ_NOTHING,
    }


def test_get_of_unknown_key_is_a_result_not_an_error(address):
    assert ApiClient(address).get("missing") == {
        "key": "missing",
        "found": False,
        "value": None,
        "elapsed_ms": 1.5,
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


def test_reply_not_matching_the_schema_is_an_api_error(address, fake):
    async def broken_info():
        return {**INFO, "id": "not hex"}

    fake.info = broken_info
    with pytest.raises(ApiError) as caught:
        ApiClient(address).info()
    assert str(caught.value) == (
        f"unexpected reply from {address} (HTTP 200): reply.id: does not match ^[0-9a-f]{{40}}$"
    )


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
    code = run_client_command(parser.parse_args(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_json_and_human(capsys, address):
    code, out, err = run(capsys, "info", "--json", "--api", address)
    assert (code, json.loads(out), err) == (0, INFO, "")
    code, out, _ = run(capsys, "info", "--api", address)
    assert code == 0
    assert out.splitlines() == [
        f"id            {INFO['id']}",
        "address       127.0.0.1:8468",
        "peers         1",
        "values        1",
        "uptime        12 s",
        "rpc_sent      5",
        "rpc_timeouts  0",
    ]


def test_lookup_found_and_not_found(capsys, address):
    code, out, _ = run(capsys, "lookup", PEER["id"], "--api", address)
    assert (code, out) == (
        0,
        f"found {PEER['id']} at 127.0.0.1:4001 "
        f"(signed record seq {PEER_RECORD['seq']}; 4 queried, 12.5 ms)\n",
    )
    code, out, _ = run(capsys, "lookup", PEER["id"], "--json", "--api", address)
    assert (code, json.loads(out)["record"]) == (0, PEER_RECORD)
    code, out, _ = run(capsys, "lookup", "00" * 20, "--json", "--api", address)
    assert code == 1
    assert json.loads(out) == {"target": "00" * 20, **LOOKUP_MISS}
    code, out, _ = run(capsys, "lookup", "00" * 20, "--api", address)
    assert (code, out.splitlines()) == (
        1,
        [
            f"not found: {'00' * 20} (4 queried, 12.5 ms); closest:",
            f"  {PEER['id']}  127.0.0.1:4001",
        ],
    )


def test_put_then_get(capsys, address):
    code, out, _ = run(capsys, "put", "colour", "blue", "--api", address)
    assert (code, out.splitlines()) == (
        0,
        ["stored 'colour' on 2 nodes (3.0 ms); replicas:", f"  {PEER['id']}  127.0.0.1:4001"],
    )
    assert run(capsys, "get", "colour", "--api", address) == (0, "blue\n", "")
    code, out, _ = run(capsys, "get", "colour", "--json", "--api", address)
    assert (code, json.loads(out)["value"]) == (0, "blue")


def test_get_unknown_key_exits_1(capsys, address):
    code, out, err = run(capsys, "get", "missing", "--json", "--api", address)
    assert (code, err) == (1, "")
    assert json.loads(out) == {"key": "missing", "found": False, "value": None, "elapsed_ms": 1.5}
    assert run(capsys, "get", "missing", "--api", address) == (1, "not found: 'missing'\n", "")


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


def test_register_json_and_human(capsys, address, fake):
    code, out, err = run(capsys, "register", "--json", "--api", address)
    assert (code, json.loads(out), err) == (0, REGISTERED, "")
    assert fake.records[NODE_ID] == SELF_RECORD
    assert run(capsys, "register", "--api", address) == (
        0,
        f"registered {NODE_ID} at 127.0.0.1:8468 (seq {SELF_RECORD['seq']}): "
        "2 of 2 replicas acknowledged\n",
        "",
    )


def test_find_peer_found(capsys, address):
    code, out, err = run(capsys, "find-peer", PEER["id"], "--json", "--api", address)
    assert (code, err) == (0, "")
    assert json.loads(out) == {"id": PEER["id"], "found": True, "record": PEER_RECORD, **READ}
    code, out, err = run(capsys, "find-peer", f"0x{PEER['id'].upper()}", "--api", address)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"{PEER['id']} seq {PEER_RECORD['seq']}, signed by its key; verified addresses:",
        "  127.0.0.1:4001",
        "2 of 2 replicas answered, 1 repaired (6.5 ms)",
    ]


def test_find_peer_says_what_the_read_saw(capsys, address, fake):
    async def contested(target):
        two = {**PEER_RECORD, "addresses": [*PEER_RECORD["addresses"], {"host": "::1", "port": 9}]}
        return {
            "id": PEER["id"],
            "found": True,
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


def test_find_peer_not_found_exits_1(capsys, address):
    code, out, err = run(capsys, "find-peer", "00" * 20, "--json", "--api", address)
    assert (code, err) == (1, "")
    assert json.loads(out) == {"id": "00" * 20, "found": False, "record": None, **READ_NOTHING}
    assert run(capsys, "find-peer", "00" * 20, "--api", address) == (
        1,
        f"not found: no valid record for {'00' * 20}; "
        "2 of 2 replicas answered, 0 repaired (6.5 ms)\n",
        "",
    )


def test_shared_siblings_then_a_put_with_their_context_resolves_them(capsys, address, fake):
    code, out, err = run(capsys, "get", "greeting", "--shared", "--json", "--api", address)
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "key": "greeting",
        "found": True,
        "siblings": GREETING_SIBLINGS,
        "context": GREETING_CONTEXT,
        **READ,
    }
    code, out, err = run(capsys, "get", "greeting", "--shared", "--api", address)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines == [
        "2 concurrent values (siblings); to resolve them, put --shared with --context:",
        "  hello",
        "  bonjour",
        f"context: {json.dumps(GREETING_CONTEXT, separators=(',', ':'))}",
    ]
    context = lines[-1].removeprefix("context: ")
    code, out, err = run(
        capsys, "put", "greeting", "hi", "--shared", "--context", context, "--api", address
    )
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "stored 'greeting' on 2 nodes (3.5 ms); replicas:",
        f"  {PEER['id']}  127.0.0.1:4001",
        f"  {PREDECESSOR['id']}  127.0.0.1:4002",
    ]
    assert run(capsys, "get", "greeting", "--shared", "--api", address) == (0, "hi\n", "")
    # The plain value under the same key is another thing, untouched.
    assert run(capsys, "get", "greeting", "--api", address) == (0, "hello\n", "")


def test_put_shared_blind_json(capsys, address, fake):
    code, out, err = run(capsys, "put", "new", "v", "--shared", "--json", "--api", address)
    assert (code, json.loads(out), err) == (0, {"key": "new", **WRITTEN, "elapsed_ms": 3.5}, "")
    assert "new" not in fake.values
    assert run(capsys, "get", "new", "--shared", "--api", address) == (0, "v\n", "")


def test_get_shared_unknown_key_exits_1(capsys, address):
    code, out, err = run(capsys, "get", "missing", "--shared", "--json", "--api", address)
    assert (code, err) == (1, "")
    assert json.loads(out)["found"] is False
    assert run(capsys, "get", "missing", "--shared", "--api", address) == (
        1,
        "not found: 'missing'\n",
        "",
    )


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (("--context", "[]"), "--context is for shared values: add --shared"),
        (
            ("--shared", "--context", "[[1,"),
            "--context is not JSON: '[[1,' (pass the context get --shared printed)",
        ),
        (
            ("--shared", "--context", '{"a": 1}'),
            "--context: expected array (want [[40-hex writer id, counter], ...])",
        ),
        (
            ("--shared", "--context", '[["zz", 1]]'),
            "--context[0][0]: does not match ^[0-9a-f]{40}$ "
            "(want [[40-hex writer id, counter], ...])",
        ),
        # Past the local check, refused by the daemon (400): one line still.
        (
            ("--shared", "--context", f'[["{NODE_ID}"]]'),
            "context is not [[40-hex writer id, counter], ...]",
        ),
    ],
)
def test_bad_context_is_one_line_and_exit_2(capsys, address, fake, argv, error):
    assert run(capsys, "put", "greeting", "v", *argv, "--api", address) == (
        2,
        "",
        f"kadnode: error: {error}\n",
    )
    assert fake.values["greeting"] == "hello"
    assert len(fake.shared["greeting"]) == 2


@pytest.mark.parametrize("argv", [("register",), ("put", "k", "v", "--shared")])
def test_a_write_below_its_quorum_is_one_line_and_exit_2(capsys, address, fake, argv):
    fake.error = QuorumError(QUORUM_ERROR)
    for extra in ((), ("--json",)):
        assert run(capsys, *argv, *extra, "--api", address) == (
            2,
            "",
            f"kadnode: error: {QUORUM_ERROR}\n",
        )


def test_peers_and_ping(capsys, address):
    code, out, _ = run(capsys, "peers", "--api", address)
    assert (code, out.splitlines()) == (
        0,
        ["1 peers", f"  {PEER['id']}  127.0.0.1:4001  failures 1  seen 2 s ago"],
    )
    code, out, _ = run(capsys, "ping", "127.0.0.1:4001", "--api", address)
    assert (code, out) == (0, f"reply from 127.0.0.1:4001: id {PEER['id']}, 0.75 ms\n")
    assert run(capsys, "ping", "[::1]:9", "--api", address) == (1, "no reply from [::1]:9\n", "")


def owner_lines(key: str, key_id: str, successor: str, closest: list[str]) -> list[str]:
    return [
        f"key {key!r} is SHA-1 {key_id} (2.5 ms)",
        f"ring owner: {QUESTIONS['successor']}",
        successor,
        f"k closest: {QUESTIONS['closest']}",
        *closest,
    ]


def test_owner_json_and_human(capsys, address):
    code, out, err = run(capsys, "owner", "greeting", "--json", "--api", address)
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "key": "greeting",
        "key_id": "a0f7e779f9247566c84036f07f7bdf4a40a869bd",
        "successor": SELF,
        "successor_hops": 0,
        "closest": [SELF, PEER, PREDECESSOR],
        "questions": QUESTIONS,
        "elapsed_ms": 2.5,
    }
    code, out, err = run(capsys, "owner", "a b/c", "--api", address)
    assert (code, err) == (0, "")
    assert out.splitlines() == owner_lines(
        "a b/c",
        "fa4fb713ddea8a2de316eebb6c7c7a2470987319",
        f"  {PREDECESSOR['id']}  127.0.0.1:4002  (1 hops)",
        [
            f"  {PEER['id']}  127.0.0.1:4001",
            f"  {SELF['id']}  127.0.0.1:8468",
            f"  {PREDECESSOR['id']}  127.0.0.1:4002",
        ],
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
    assert out.splitlines() == owner_lines(
        "x",
        "11f6ad8ec52a2984abaafd7c3b516503785c2072",
        "  unknown: Chord routing failed after 3 hops",
        ["  none known"],
    )
    code, out, _ = run(capsys, "owner", "x", "--json", "--api", address)
    assert (code, json.loads(out)["successor"]) == (1, None)


def test_ring_json_and_human(capsys, address, fake):
    code, out, err = run(capsys, "ring", "--json", "--api", address)
    assert (code, json.loads(out), err) == (0, RING, "")
    code, out, err = run(capsys, "ring", "--api", address)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"predecessor  {PREDECESSOR['id']}  127.0.0.1:4002",
        f"self         {SELF['id']}  127.0.0.1:8468",
        "successors   2, nearest clockwise first",
        f"  {PEER['id']}  127.0.0.1:4001",
        f"  {PREDECESSOR['id']}  127.0.0.1:4002",
        "fingers      2; finger i: the first node at or after self + 2^i",
        f"    0  {PEER['id']}  127.0.0.1:4001",
        f"  158  {PREDECESSOR['id']}  127.0.0.1:4002",
    ]

    async def alone():
        return {"self": SELF, "predecessor": None, "successors": [], "fingers": []}

    fake.ring = alone
    assert run(capsys, "ring", "--api", address) == (
        0,
        "\n".join(
            [
                "predecessor  none known",
                f"self         {SELF['id']}  127.0.0.1:8468",
                "successors   0, nearest clockwise first",
                "  none known",
                "fingers      0; finger i: the first node at or after self + 2^i",
                "",
            ]
        ),
        "",
    )


def test_leave_json_and_human(capsys, address, fake):
    code, out, err = run(capsys, "leave", "--json", "--api", address)
    assert (code, json.loads(out), err) == (0, LEFT, "")
    assert fake.left
    assert run(capsys, "leave", "--api", address) == (
        0,
        "handed 1 keys to the nodes now responsible (2 stores, 2 acknowledged); "
        "the daemon is stopping\n",
        "",
    )


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


@pytest.mark.parametrize("argv", NEW_COMMANDS)
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
    assert not fake.left


@pytest.mark.parametrize("argv", NEW_COMMANDS)
def test_new_commands_without_daemon_exit_2(capsys, dead_address, argv):
    code, out, err = run(capsys, *argv, "--json", "--api", dead_address)
    assert (code, out, err) == (2, "", f"kadnode: error: {down(dead_address)}\n")


def test_a_reply_from_an_older_daemon_is_one_line_and_exit_2(capsys, address, fake):
    async def no_questions(key):
        return {"key": key, "successor": None}

    fake.owner = no_questions
    code, out, err = run(capsys, "owner", "k", "--api", address)
    assert (code, out) == (2, "")
    assert err == (
        f"kadnode: error: unexpected reply from {address} (HTTP 200): reply: missing 'key_id'\n"
    )


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (("lookup", "xyz"), message_of(parse_hex, "xyz")),
        (("ping", "nocolon"), message_of(parse_hostport, "nocolon")),
        (("get", ""), "the key cannot be empty"),
        (("owner", ""), "the key cannot be empty"),
        (("find-peer", "xyz"), message_of(parse_hex, "xyz")),
        (("find-peer", ""), "the id cannot be empty"),
        (("get", "", "--shared"), "the key cannot be empty"),
        (("put", "", "v", "--shared"), "the key cannot be empty"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, address, argv, error):
    assert run(capsys, *argv, "--json", "--api", address) == (2, "", f"kadnode: error: {error}\n")


def test_no_daemon_is_one_line_and_exit_2(capsys, dead_address, monkeypatch):
    monkeypatch.setenv("KADNODE_API", dead_address)  # --api defaults to $KADNODE_API
    code, out, err = run(capsys, "info")
    assert (code, out, err) == (2, "", f"kadnode: error: {down(dead_address)}\n")
