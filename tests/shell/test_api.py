"""The control API over real HTTP on 127.0.0.1.

What each operation does, against a real daemon among real nodes (tests/loopback.py);
the HTTP layer itself (framing, bad requests, error mapping, OpenAPI and docs) against a
fake service with canned answers (tests/fakes.py).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fakes import (
    NODE_ID,
    PEER,
    PEER_RECORD,
    QUORUM_ERROR,
    SELF_RECORD,
    FakeService,
    message_of,
)
from hypothesis import given
from hypothesis import strategies as st
from loopback import (
    NODES,
    STOP_S,
    Network,
    by_distance,
    clockwise,
    contact,
    fields,
    fingers,
    landed,
    network,
    token_of,
    written,
    xor_closest,
)
from prometheus_client.parser import text_string_to_metric_families

import kadnode
from kadnode.config import BETA, Config
from kadnode.core import kinds, records, vclock
from kadnode.core.events import PutResult, ReadResult
from kadnode.core.identity import Identity
from kadnode.core.ids import key_id, parse_hex, to_hex
from kadnode.core.messages import Kind
from kadnode.core.ring import brute_successor
from kadnode.errors import ApiError, LocalProtocolError, QuorumError
from kadnode.inputs import parse_hostport
from kadnode.shell import schemas, service
from kadnode.shell.api import build_routes
from kadnode.shell.httpserver import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    HttpError,
    Param,
    Payload,
    Request,
    Response,
    Route,
    check_schema,
    json_response,
    parse_head,
    serve,
)
from kadnode.shell.library import storage_key
from kadnode.shell.metrics import COUNTERS, OPERATIONS


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        assert self.headers["Content-Type"] == "application/json"
        return json.loads(self.body)


def _http(port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body, headers)
        reply = conn.getresponse()
        return Reply(reply.status, reply.headers, reply.read())
    finally:
        conn.close()


async def call(port: int, method: str, path: str, data: Any = None, **kw: Any) -> Reply:
    """One request through http.client; ``data`` is sent as a JSON body. To a daemon
    a test started, with its API token, as the CLI sends it."""
    body = kw.pop("raw", None if data is None else json.dumps(data).encode())
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if (token := token_of(f"127.0.0.1:{port}")) is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await asyncio.to_thread(_http, port, method, path, body, {**headers, **kw})


async def raw(port: int, data: bytes, *, half_close: bool = False) -> bytes:
    """Send bytes as they are and read the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    if half_close:
        writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


def status_of(answer: bytes) -> tuple[int, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


# -- stories: a real daemon among real nodes, asked over HTTP --------------------------------


@pytest.fixture
async def live(tmp_path) -> AsyncIterator[Network]:
    async with network(tmp_path) as net:
        yield net


def by_id(contacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(contacts, key=lambda c: c["id"])


async def test_info_is_this_node_and_what_it_holds(live, tmp_path):
    host, port = live.server.address
    reply = await call(live.api_port, "GET", "/info")
    assert reply.status == 200
    info = reply.json()
    check_schema(schemas.INFO_SCHEMA, info)
    assert fields(info, "id", "host", "port", "peers", "values", "data_dir") == {
        "id": to_hex(live.server.id),
        "host": host,
        "port": port,
        "peers": NODES,
        "values": 0,
        "data_dir": str(tmp_path),
    }
    assert info["stats"]["requests_in"] > 0  # the nodes joined through it
    await call(live.api_port, "PUT", "/values/k", {"value": "v"})
    assert (await call(live.api_port, "GET", "/info")).json()["values"] == 1


async def test_lookup_finds_a_node_by_id_and_names_the_closest_when_none_has_it(live):
    wanted = live.nodes[0]
    found = (await call(live.api_port, "GET", f"/lookup/0x{to_hex(wanted.id).upper()}")).json()
    check_schema(schemas.LOOKUP_SCHEMA, found)
    answered = [c.pop("answered") for c in found["closest"]]
    assert fields(found, "target", "found", "peer", "closest", "record") == {
        "target": to_hex(wanted.id),
        "found": True,
        "peer": contact(wanted),
        "closest": by_distance(wanted.id, live.contacts),
        "record": None,  # it has not registered
    }
    # It ends once the node itself has answered; the rest may only be named.
    assert answered[0] is True and 1 <= found["queried"] <= NODES
    nobody = (await call(live.api_port, "GET", f"/lookup/{'00' * 20}")).json()
    assert (nobody["found"], nobody["peer"]) == (False, None)
    assert [{k: v for k, v in c.items() if k != "answered"} for c in nobody["closest"]] == (
        by_distance(0, live.contacts)
    )
    # No node has that id: it ends once the beta nearest have answered.
    assert [c["answered"] for c in nobody["closest"][:BETA]] == [True] * BETA


async def test_a_value_put_is_on_every_replica_under_its_decoded_key_and_read_back(live):
    key = "a b/ü?#%"
    path = f"/values/{quote(key, safe='')}"
    put = await call(live.api_port, "PUT", path, {"value": "ünïcode"})
    assert put.status == 200
    stored = put.json()
    check_schema(schemas.PUT_SCHEMA, stored)
    # Every node of this small network is one of the k closest: the daemon's
    # own copy counts beside the NODES others, acknowledged or still being written.
    assert (stored["key"], written(stored), stored["asked"]) == (key, NODES + 1, NODES)
    assert stored["local"] and not stored["only_copy"]
    assert {c["id"] for c in stored["replicas"]} <= {c["id"] for c in live.contacts}
    await landed(live.nodes, key)
    for node in live.nodes:
        assert node.core.store.get(storage_key(key)).value == "ünïcode"
    got = await call(live.api_port, "GET", path)
    assert got.status == 200
    assert fields(got.json(), "key", "found", "value", "source") == {
        "key": key,
        "found": True,
        "value": "ünïcode",
        "source": "local",
    }
    # This node loses its copy: the read goes to the replicas.
    live.daemon.store.delete(storage_key(key))
    again = (await call(live.api_port, "GET", path)).json()
    assert (again["value"], again["source"] in live.contacts) == ("ünïcode", True)


async def test_a_key_nobody_holds_is_404_and_found_false(live):
    reply = await call(live.api_port, "GET", "/values/nothing")
    assert reply.status == 404
    assert fields(reply.json(), "key", "found", "value") == {
        "key": "nothing",
        "found": False,
        "value": None,
    }


async def test_peers_are_the_nodes_that_joined(live):
    peers = (await call(live.api_port, "GET", "/peers")).json()
    check_schema(schemas.PEERS_SCHEMA, peers)
    assert peers["count"] == NODES
    assert by_id([fields(p, "id", "host", "port") for p in peers["peers"]]) == by_id(live.contacts)
    assert [p["failures"] for p in peers["peers"]] == [0] * NODES


async def test_ping_a_node_then_ping_it_once_it_stopped(live):
    node = live.nodes[0]
    host, port = node.address
    alive = (await call(live.api_port, "POST", "/ping", {"address": f"{host}:{port}"})).json()
    check_schema(schemas.PING_SCHEMA, alive)
    assert (alive["alive"], alive["id"]) == (True, to_hex(node.id))
    assert alive["rtt_ms"] is not None
    node.close()
    gone = (await call(live.api_port, "POST", "/ping", {"address": f"{host}:{port}"})).json()
    assert gone == {"host": host, "port": port, "alive": False, "id": None, "rtt_ms": None}


async def test_owner_answers_both_questions_as_brute_force_does(live):
    everyone = set(live.by_id)
    doc = (await call(live.api_port, "GET", "/openapi.json")).json()
    documented = doc["paths"]["/owner/{key}"]["get"]["responses"]["200"]["content"]
    for key in ("greeting", "a b/c", *(f"service/{i}" for i in range(8))):
        reply = await call(live.api_port, "GET", f"/owner/{quote(key, safe='')}")
        assert reply.status == 200
        owner = reply.json()
        check_schema(schemas.OWNER_SCHEMA, owner)
        target = key_id(key)
        assert (owner["key"], owner["key_id"]) == (key, to_hex(target))
        assert owner["successor"] == live.by_id[brute_successor(target, everyone)], key
        assert owner["closest"] == [live.by_id[i] for i in xor_closest(target, everyone)], key
        # Each answer labelled as the documentation labels it.
        assert owner["questions"] == documented["application/json"]["example"]["questions"]


async def test_ring_is_brute_force_over_the_network(live):
    me, everyone = live.server.id, set(live.by_id)
    ring = (await call(live.api_port, "GET", "/ring")).json()
    check_schema(schemas.RING_SCHEMA, ring)
    assert ring == {
        "self": live.by_id[me],
        "predecessor": live.by_id[clockwise(me, everyone)[-1]],
        "successors": [live.by_id[i] for i in clockwise(me, everyone)[: Config().successors]],
        "fingers": [{"index": i, **live.by_id[f]} for i, f in fingers(me, everyone)],
    }


async def test_register_then_find_peer_finds_the_signed_record(live):
    me = to_hex(live.server.id)
    path = f"/peers/{me}/record"
    before = await call(live.api_port, "GET", path)
    assert (before.status, before.json()["found"], before.json()["record"]) == (404, False, None)
    registered = await call(live.api_port, "POST", "/register")
    assert registered.status == 200
    reply = registered.json()
    check_schema(schemas.REGISTER_SCHEMA, reply)
    host, port = live.server.address
    record = reply["record"]
    assert (reply["key"], written(reply), reply["local"]) == (me, NODES + 1, True)
    assert (record["id"], record["addresses"]) == (me, [{"host": host, "port": port}])
    assert record["public_key"] == live.daemon.server.core.identity.public_key.hex()
    after = await call(live.api_port, "GET", path)
    assert after.status == 200
    assert fields(after.json(), "found", "record", "answered", "agreeing") == {
        "found": True,
        "record": record,
        "answered": NODES + 1,  # the reader's own store is one of the replicas
        "agreeing": NODES + 1,  # every replica holds it
    }


async def test_find_peer_and_lookup_give_the_address_another_node_registered(live):
    node = live.nodes[0]
    # It registers the address it is reached at from outside (a NAT's, say), not its socket's.
    advertised = {"host": "127.0.0.1", "port": node.address[1] + 1}
    await node.register([(advertised["host"], advertised["port"])])
    reply = await call(live.api_port, "GET", f"/peers/0x{to_hex(node.id).upper()}/record")
    assert reply.status == 200
    found = reply.json()
    check_schema(schemas.PEER_RECORD_SCHEMA, found)
    assert (found["id"], found["record"]["addresses"]) == (to_hex(node.id), [advertised])
    # A lookup finds the node, and gives the signed address rather than the socket's.
    looked_up = (await call(live.api_port, "GET", f"/lookup/{to_hex(node.id)}")).json()
    assert looked_up["record"] == found["record"]
    assert looked_up["peer"] == {"id": to_hex(node.id), **advertised}


async def test_a_write_naming_the_read_context_resolves_the_siblings(live):
    key = "a b/ü"
    path = f"/shared/{quote(key, safe='')}"
    me, other = to_hex(live.server.id), live.nodes[0]
    assert (await call(live.api_port, "PUT", path, {"value": "one"})).status == 200
    first = (await call(live.api_port, "GET", path)).json()
    check_schema(schemas.SHARED_SCHEMA, first)
    assert first["siblings"] == [{"value": "one", "clock": {me: 1}}]
    assert first["context"] == [[me, 1]]
    # A blind write by another node: concurrent, so both are kept.
    await other.put_shared(key, "two")
    both = (await call(live.api_port, "GET", path)).json()
    assert sorted(s["value"] for s in both["siblings"]) == ["one", "two"]
    assert both["context"] == sorted([[me, 1], [to_hex(other.id), 1]])
    put = await call(live.api_port, "PUT", path, {"value": "three", "context": both["context"]})
    assert put.status == 200
    after = (await call(live.api_port, "GET", path)).json()
    assert after["siblings"] == [{"value": "three", "clock": {me: 2, to_hex(other.id): 1}}]
    assert after["context"] == sorted([[me, 2], [to_hex(other.id), 1]])
    # The other writer reads the same single value.
    read = await other.get_shared(key)
    assert [s.value for s in kinds.siblings_from_wire(read.payload)] == ["three"]


@pytest.mark.parametrize(
    "context",
    [
        [["ab" * 20]],  # not a pair
        [["cd" * 20, 1], ["ab" * 20, 1]],  # writers out of order
    ],
)
async def test_a_context_the_daemon_cannot_read_is_refused_and_nothing_is_written(live, context):
    # Shapes the schema's loose item check lets through; the daemon's own check refuses.
    reply = await call(live.api_port, "PUT", "/shared/k", {"value": "v", "context": context})
    assert (reply.status, reply.json()) == (
        400,
        {"error": "context is not [[40-hex writer id, counter], ...]"},
    )
    assert (await call(live.api_port, "GET", "/shared/k")).status == 404


async def test_a_plain_read_of_a_shared_key_says_how_to_read_it(live):
    assert (await call(live.api_port, "PUT", "/shared/greeting", {"value": "hi"})).status == 200
    plain = await call(live.api_port, "GET", "/values/greeting")
    hint = "key 'greeting' holds a shared value; read it with `kadnode get greeting --shared`"
    assert (plain.status, plain.json()) == (400, {"error": hint})
    assert (await call(live.api_port, "PUT", "/values/plain", {"value": "v"})).status == 200
    shared = await call(live.api_port, "GET", "/shared/plain")
    hint = "key 'plain' holds a plain value; read it with `kadnode get plain`"
    assert (shared.status, shared.json()) == (400, {"error": hint})


def families(text: str) -> dict[str, Any]:
    """/metrics as prometheus_client's own parser reads it, by family name."""
    return {f.name: f for f in text_string_to_metric_families(text)}


def value_of(family: Any, sample: str, **labels: str) -> float:
    (found,) = [s.value for s in family.samples if s.name == sample and s.labels == labels]
    return found


async def test_metrics_count_what_the_node_holds(live):
    before = families((await call(live.api_port, "GET", "/metrics")).body.decode())
    # Every family says what it is, and every counter is there before its first count.
    assert all(f.documentation and f.type != "unknown" for f in before.values())
    for name, text in COUNTERS.items():
        assert before[f"kadnode_{name}"].type == "counter"
        assert before[f"kadnode_{name}"].documentation == text
    assert value_of(before["kadnode_corrupt_records"], "kadnode_corrupt_records_total") == 0
    for operation in OPERATIONS:
        assert value_of(
            before["kadnode_operation_seconds"], "kadnode_operation_seconds_count",
            operation=operation,
        ) == 0  # fmt: skip
    assert "kadnode_process_open_fds" in before

    await call(live.api_port, "PUT", "/values/k", {"value": "v"})
    await call(live.api_port, "GET", f"/lookup/{to_hex(live.nodes[0].id)}")
    reply = await call(live.api_port, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    after = families(reply.body.decode())
    assert value_of(after["kadnode_peers"], "kadnode_peers") == NODES
    assert value_of(after["kadnode_values"], "kadnode_values") == 1
    assert value_of(after["kadnode_stored_bytes"], "kadnode_stored_bytes") > 0
    requests_in = value_of(after["kadnode_requests_in"], "kadnode_requests_in_total")
    assert requests_in >= value_of(before["kadnode_requests_in"], "kadnode_requests_in_total")
    latency = after["kadnode_operation_seconds"]
    assert value_of(latency, "kadnode_operation_seconds_count", operation="put") == 1
    assert value_of(latency, "kadnode_operation_seconds_count", operation="lookup") == 1
    assert value_of(latency, "kadnode_operation_seconds_bucket", operation="put", le="+Inf") == 1


def test_the_info_example_shows_counters_the_daemon_keeps():
    (info,) = [r for r in build_routes(FakeService()) if r.path == "/info"]
    assert set(info.responses[200].example["stats"]) <= set(COUNTERS)


def test_every_counter_the_code_keeps_is_declared_for_metrics():
    """A counter added to the code without a HELP text fails here."""
    root = Path(kadnode.__file__).parent
    kept = {
        name
        for path in root.rglob("*.py")
        if "sim" not in path.relative_to(root).parts
        for name in re.findall(r'stats\["(\w+)"\]', path.read_text())
    }
    assert kept == set(COUNTERS)


async def test_leave_hands_every_value_on_once_and_stops_the_daemon(live, caplog):
    caplog.set_level(logging.INFO, logger="kadnode")
    keys = ["colour", "shape"]
    for key in keys:
        await call(live.api_port, "PUT", f"/values/{key}", {"value": key.upper()})
    # Wipe every other copy: after this, only the leave can save a value.
    for node in live.nodes:
        for key in keys:
            node.core.store.delete(storage_key(key))

    def stores_received() -> int:
        return sum(node.core.stats["stores_in"] for node in live.nodes)

    before = stores_received()
    reply = await call(live.api_port, "POST", "/leave")
    assert reply.status == 200
    left = reply.json()
    check_schema(schemas.LEAVE_SCHEMA, left)
    assert (left["keys"], left["stores"], left["acks"]) == (2, 2 * NODES, 2 * NODES)
    said = [r.getMessage() for r in caplog.records if "left the network" in r.getMessage()]
    assert said[0].startswith(
        f"left the network: 2 keys handed on in {2 * NODES} stores ({2 * NODES} acknowledged)"
    )
    await asyncio.wait_for(live.stopped, STOP_S)  # the daemon stops by itself
    with pytest.raises(ConnectionRefusedError):
        await call(live.api_port, "GET", "/health")
    for node in live.nodes:
        assert [node.core.store.get(storage_key(k)).value for k in keys] == ["COLOUR", "SHAPE"]
    # Asked over HTTP, and again by the daemon itself as it stopped: handed on once.
    assert stores_received() - before == 2 * NODES


# -- reply helpers and schemas ----------------------------------------------------------------


def test_the_daemons_reply_helpers_match_the_declared_schemas():
    """record_json, context_json, clock_json, put_json and read_json, on real values."""
    me = Identity.from_seed(bytes(range(32)))
    record = records.sign_record(me, [("192.0.2.7", 8467), ("2001:db8::7", 8467)], 7, 1e9)
    put = PutResult(me.node_id.to_bytes(20, "big"), 2, [], 3, 5, needed=2, replica_set=3)
    written = service.put_json(to_hex(me.node_id), put, 0.0)
    check_schema(schemas.REGISTER_SCHEMA, {**written, "record": service.record_json(record)})
    check_schema(schemas.PUT_SCHEMA, written)
    read = ReadResult(b"k" * 20, Kind.SHARED, [], 20, 19, 18, 17, 2, 1, 11)
    clock = vclock.VectorClock.of({me.node_id: 3, 1: 2**63 - 1})
    shared = {
        "key": "k",
        "found": True,
        "siblings": [{"value": "v", "clock": service.clock_json(clock)}],
        "context": service.context_json(clock),
        **service.read_json(read, 0.0),
    }
    check_schema(schemas.SHARED_SCHEMA, shared)
    found = {"id": to_hex(me.node_id), "found": True, "record": service.record_json(record)}
    check_schema(schemas.PEER_RECORD_SCHEMA, {**found, **service.read_json(read, 0.0)})
    # What a reader passes back is what the daemon takes as a context.
    assert vclock.from_wire(service.context_wire(shared["context"])) == clock


def test_a_write_below_its_quorum_is_one_line_and_logged(caplog):
    put = PutResult(b"k" * 20, 1, [], 4, 6, needed=3, replica_set=4, refused=("store full",))
    with caplog.at_level(logging.WARNING, logger="kadnode"), pytest.raises(QuorumError) as caught:
        service.put_json("k", put, 0.0)
    assert str(caught.value) == (
        "only 1 of the 4 closest nodes (this one not among them) hold it; the write quorum is 3"
        " (refused: store full); the value stays where it was acknowledged, and republishing"
        " retries"
    )
    [record] = caplog.records
    assert record.getMessage() == f"write of 'k' failed: {caught.value}"


@pytest.mark.parametrize(
    ("schema", "good", "change", "error"),
    [
        (
            schemas.OWNER_SCHEMA,
            lambda f: f.owner("greeting"),
            {"successor": {"id": "ab"}},
            "reply.successor: missing 'host'",
        ),
        (
            schemas.OWNER_SCHEMA,
            lambda f: f.owner("greeting"),
            {"questions": {"closest": "?"}},
            "reply.questions: missing 'successor'",
        ),
        (
            schemas.RING_SCHEMA,
            lambda f: f.ring(),
            {"fingers": [{**PEER, "index": 160}]},
            "reply.fingers[0].index: 160 is out of range",
        ),
        (schemas.RING_SCHEMA, lambda f: f.ring(), {"self": None}, "reply.self: expected object"),
        (schemas.LEAVE_SCHEMA, lambda f: f.leave(), {"keys": -1}, "reply.keys: -1 is out of range"),
        (
            schemas.LOOKUP_SCHEMA,
            lambda f: f.lookup(int(PEER["id"], 16)),
            {"record": {**PEER_RECORD, "seq": -1}},
            "reply.record.seq: -1 is out of range",
        ),
        (
            schemas.PEER_RECORD_SCHEMA,
            lambda f: f.find_peer(int(PEER["id"], 16)),
            {"record": {**PEER_RECORD, "public_key": "ab"}},
            "reply.record.public_key: does not match ^[0-9a-f]{64}$",
        ),
        (
            schemas.PEER_RECORD_SCHEMA,
            lambda f: f.find_peer(0),
            {"quorum": None},
            "reply.quorum: expected boolean",
        ),
        (
            schemas.REGISTER_SCHEMA,
            lambda f: f.register(),
            {"record": {**SELF_RECORD, "addresses": [{"host": "h", "port": 0}]}},
            "reply.record.addresses[0].port: 0 is out of range",
        ),
        (
            schemas.SHARED_SCHEMA,
            lambda f: f.get_shared("greeting"),
            {"siblings": [{"value": "v", "clock": {NODE_ID: "1"}}]},
            f"reply.siblings[0].clock.{NODE_ID}: expected integer",
        ),
        (
            schemas.SHARED_SCHEMA,
            lambda f: f.get_shared("greeting"),
            {"context": [[NODE_ID, 0]]},
            "reply.context[0][1]: 0 is out of range",
        ),
        (
            schemas.LEAVE_SCHEMA,
            lambda f: f.leave(),
            {"timed_out": 1},
            "reply.timed_out: expected boolean",
        ),
    ],
)
async def test_new_schemas_refuse_malformed_replies(schema, good, change, error):
    reply = {**await good(FakeService()), **change}
    with pytest.raises(LocalProtocolError) as caught:
        check_schema(schema, reply, "reply")
    assert str(caught.value) == error


def test_leave_schema_takes_a_timed_out_hand_off():
    timed_out = {"keys": None, "stores": None, "acks": None, "elapsed_ms": 10000.2}
    check_schema(schemas.LEAVE_SCHEMA, {**timed_out, "timed_out": True})


# -- the HTTP layer, against a fake service: client errors ------------------------------------


@dataclass
class Node:
    fake: FakeService
    port: int
    routes: list[Route]


@pytest.fixture
async def node():
    fake = FakeService()
    routes = build_routes(fake)
    server = await serve(routes, "127.0.0.1", 0)
    async with server:
        yield Node(fake, server.sockets[0].getsockname()[1], routes)


@pytest.mark.parametrize(
    ("method", "path", "kw", "status", "error"),
    [
        ("GET", "/lookup/xyz", {}, 400, message_of(parse_hex, "xyz")),
        ("PUT", "/values/k", {"raw": b"{not json"}, 400, "request body is not valid JSON"),
        ("PUT", "/values/k", {"raw": b'{"value": NaN}'}, 400, "request body is not valid JSON"),
        ("PUT", "/values/k", {"raw": b'{"value": "\xff"}'}, 400, "request body is not valid JSON"),
        ("PUT", "/values/k", {"data": {"value": 5}}, 400, "body.value: expected string"),
        ("PUT", "/values/k", {"data": {}}, 400, "body: missing 'value'"),
        ("PUT", "/values/k", {"data": {"value": "v", "ttl": 1}}, 400, "body: unexpected 'ttl'"),
        ("PUT", "/values/k", {"data": ["v"]}, 400, "body: expected object"),
        (
            "PUT",
            "/values/k",
            {"raw": b'{"value": "v"}', "Content-Type": "text/plain"},
            415,
            "send the body as application/json",
        ),
        ("GET", "/info", {"data": {}}, 400, "GET /info takes no body"),
        ("GET", "/info?verbose=1", {}, 400, "unknown or repeated query parameter 'verbose'"),
        (
            "POST",
            "/ping",
            {"data": {"address": "nocolon"}},
            400,
            message_of(parse_hostport, "nocolon"),
        ),
        (
            "POST",
            "/ping",
            {"data": {"address": "h:0"}},
            400,
            message_of(parse_hostport, "h:0"),
        ),
        ("GET", "/nope", {}, 404, "no such endpoint: /nope"),
        ("GET", "/info/", {}, 404, "no such endpoint: /info/"),
        ("GET", "/values/", {}, 404, "no such endpoint: /values/"),
        ("GET", "/values/%ff", {}, 400, "path is not percent-encoded UTF-8"),
        ("GET", "/owner/", {}, 404, "no such endpoint: /owner/"),
        ("GET", "/owner/%ff", {}, 400, "path is not percent-encoded UTF-8"),
        ("GET", "/ring?verbose=1", {}, 400, "unknown or repeated query parameter 'verbose'"),
        ("POST", "/leave", {"data": {}}, 400, "POST /leave takes no body"),
        ("POST", "/register", {"data": {}}, 400, "POST /register takes no body"),
        ("GET", "/peers/xyz/record", {}, 400, message_of(parse_hex, "xyz")),
        ("GET", "/peers//record", {}, 404, "no such endpoint: /peers//record"),
        ("GET", "/peers/ab/record/x", {}, 404, "no such endpoint: /peers/ab/record/x"),
        ("PUT", "/shared/k", {"data": {"value": 5}}, 400, "body.value: expected string"),
        ("PUT", "/shared/k", {"data": {"context": []}}, 400, "body: missing 'value'"),
        (
            "PUT",
            "/shared/k",
            {"data": {"value": "v", "ttl": 1}},
            400,
            "body: unexpected 'ttl'",
        ),
        (
            "PUT",
            "/shared/k",
            {"data": {"value": "v", "context": {"ab": 1}}},
            400,
            "body.context: expected array or null",
        ),
        (
            "PUT",
            "/shared/k",
            {"data": {"value": "v", "context": [["zz", 1]]}},
            400,
            "body.context[0][0]: does not match ^[0-9a-f]{40}$",
        ),
        (
            "PUT",
            "/shared/k",
            {"data": {"value": "v", "context": [[NODE_ID, 0]]}},
            400,
            "body.context[0][1]: 0 is out of range",
        ),
        (
            "PUT",
            "/shared/k",
            {"data": {"value": "v", "context": [[NODE_ID, True]]}},
            400,
            "body.context[0][1]: expected string or integer",
        ),
        ("GET", "/shared/%ff", {}, 400, "path is not percent-encoded UTF-8"),
    ],
)
async def test_bad_requests_get_one_line_errors(node, method, path, kw, status, error):
    reply = await call(node.port, method, path, **kw)
    assert (reply.status, reply.json()) == (status, {"error": error})
    assert node.fake.answered == []  # refused before the service was asked


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/values/k", "GET, HEAD, PUT"),
        ("POST", "/info", "GET, HEAD"),
        ("GET", "/leave", "POST"),
        ("HEAD", "/leave", "POST"),
        ("POST", "/ring", "GET, HEAD"),
        ("PUT", "/owner/k", "GET, HEAD"),
        ("GET", "/register", "POST"),
        ("POST", "/peers/ab/record", "GET, HEAD"),
        ("DELETE", "/shared/k", "GET, HEAD, PUT"),
    ],
)
async def test_wrong_method_is_405_with_allow(node, method, path, allow):
    reply = await call(node.port, method, path)
    assert reply.status == 405
    assert reply.headers["Allow"] == allow
    if method != "HEAD":
        assert reply.json() == {"error": f"{method} not allowed on {path}; use {allow}"}


@pytest.mark.parametrize("path", ["/info", "/health", "/metrics", "/docs", "/ring"])
async def test_head_is_the_gets_headers_without_a_body(node, path):
    got = await call(node.port, "GET", path)
    answer = await raw(node.port, f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert body == b""  # read to the end of the connection: nothing after the headers
    lines = head.decode().split("\r\n")
    assert lines[0] == f"HTTP/1.1 {got.status} OK"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Content-Type"] == got.headers["Content-Type"]
    assert int(headers["Content-Length"]) == len(got.body) > 0


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (ApiError("node is shutting down\nsecond line"), 503, "node is shutting down"),
        (LocalProtocolError("value over 1000 bytes"), 400, "value over 1000 bytes"),
    ],
)
async def test_kadnode_errors_map_to_status_and_one_line(node, error, status, message):
    node.fake.error = error
    reply = await call(node.port, "GET", "/info")
    assert (reply.status, reply.json()) == (status, {"error": message})


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [("POST", "/register", None), ("PUT", "/shared/k", {"value": "v"})],
)
async def test_a_write_below_its_quorum_is_503_and_one_line(node, method, path, data):
    node.fake.error = QuorumError(QUORUM_ERROR)
    reply = await call(node.port, method, path, data)
    assert (reply.status, reply.json()) == (503, {"error": QUORUM_ERROR})


async def test_unexpected_exception_is_a_bare_500_logged_once(node, caplog):
    node.fake.error = RuntimeError("secret detail")
    with caplog.at_level(logging.ERROR, logger="kadnode.shell.httpserver"):
        reply = await call(node.port, "GET", "/peers")
    assert (reply.status, reply.json()) == (500, {"error": "internal error"})
    assert b"secret" not in reply.body
    [record] = caplog.records
    assert record.getMessage() == "GET /peers failed"
    assert isinstance(record.exc_info[1], RuntimeError)


# -- framing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "error"),
    [
        (b"GARBAGE\r\n\r\n", 400, "malformed request line"),
        (b"GET /info HTTP/2.0\r\n\r\n", 400, "malformed request line"),
        (b"GET info HTTP/1.1\r\n\r\n", 400, "malformed request line"),
        (b"get /info HTTP/1.1\r\n\r\n", 400, "malformed request line"),
        (b"GET /info  HTTP/1.1\r\n\r\n", 400, "malformed request line"),
        (b"GET /info HTTP/1.1\r\nNo Colon\r\n\r\n", 400, "malformed header line"),
        (b"GET /info HTTP/1.1\r\nHost : x\r\n\r\n", 400, "malformed header line"),
        (b"GET /\xff HTTP/1.1\r\n\r\n", 400, "request head is not ASCII"),
        (b"GET /info HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "bad Content-Length"),
        (
            b"PUT /values/k HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
            400,
            "repeated content-length header",
        ),
        (
            b"PUT /values/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            411,
            "chunked bodies are not supported; send Content-Length",
        ),
        (
            b"PUT /values/k HTTP/1.1\r\nContent-Type: application/json\r\n\r\n",
            411,
            "send the JSON body with a Content-Length header",
        ),
        (
            f"PUT /values/k HTTP/1.1\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode(),
            413,
            f"request body over {MAX_BODY_BYTES} bytes",
        ),
        (
            b"GET /info HTTP/1.1\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n",
            431,
            f"request head over {MAX_HEAD_BYTES} bytes",
        ),
    ],
)
async def test_malformed_requests_are_refused_and_the_server_lives_on(
    node, request_bytes, status, error
):
    assert status_of(await raw(node.port, request_bytes)) == (status, {"error": error})
    assert (await call(node.port, "GET", "/health")).json() == {"ok": True}


async def test_truncated_requests_are_400(node):
    head_only = await raw(node.port, b"GET /info HTTP/1.1\r\n", half_close=True)
    assert status_of(head_only) == (400, {"error": "incomplete request head"})
    short_body = b"PUT /values/k HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}"
    assert status_of(await raw(node.port, short_body, half_close=True)) == (
        400,
        {"error": "request body shorter than Content-Length"},
    )


async def test_oversized_body_sent_in_full_still_gets_its_413(node):
    reply = await call(node.port, "PUT", "/values/k", {"value": "x" * (16 * MAX_BODY_BYTES)})
    assert (reply.status, reply.json()) == (
        413,
        {"error": f"request body over {MAX_BODY_BYTES} bytes"},
    )


async def test_silent_and_closing_clients(node):
    _, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.close()  # connect and leave: nothing to answer
    assert (await call(node.port, "GET", "/health")).status == 200
    server = await serve(node.routes, "127.0.0.1", 0, read_timeout=0.1)
    async with server:
        answer = await raw(server.sockets[0].getsockname()[1], b"GET /info HTTP/1.1\r\n")
    assert status_of(answer) == (408, {"error": "request not received in time"})


@given(st.binary(max_size=300))
def test_parse_head_raises_only_http_error(data):
    try:
        head = parse_head(data)
    except HttpError as exc:
        assert 400 <= exc.status < 500
    else:
        assert re.fullmatch(r"[A-Z]+", head.method)
        assert head.target.startswith("/")


@given(
    st.sampled_from(["GET", "PUT", "POST"]),
    st.from_regex(r"/[!-~]{0,30}", fullmatch=True),
    st.dictionaries(
        st.from_regex(r"x-[a-z0-9-]{1,10}", fullmatch=True),
        st.from_regex(r"[!-~]([ -~]{0,20}[!-~])?", fullmatch=True),
        max_size=5,
    ),
)
def test_parse_head_reads_valid_heads_exactly(method, target, headers):
    lines = [f"{method} {target} HTTP/1.1", *(f"{k.upper()}:  {v} " for k, v in headers.items())]
    head = parse_head("\r\n".join([*lines, "", ""]).encode())
    assert (head.method, head.target, dict(head.headers)) == (method, target, headers)


# -- route table, OpenAPI and docs -----------------------------------------------------------


async def echo(request: Request) -> Response:
    return json_response({"params": dict(request.params), "query": dict(request.query)})


QUERY_ROUTE = Route(
    "GET",
    "/echo/{name}",
    echo,
    "echo",
    {200: Payload({"type": "object"}, {})},
    path_params=(Param("name", "a name", "x"),),
    query_params=(Param("q", "required", "a"), Param("n", "optional", "1", required=False)),
)


@pytest.mark.parametrize(
    ("query", "status", "body"),
    [
        ("?q=a%20b+c", 200, {"params": {"name": "x y"}, "query": {"q": "a b c"}}),
        ("?n=2&q=", 200, {"params": {"name": "x y"}, "query": {"n": "2", "q": ""}}),
        ("", 400, {"error": "missing query parameter 'q'"}),
        ("?q=1&q=2", 400, {"error": "unknown or repeated query parameter 'q'"}),
        ("?q=1&z=2", 400, {"error": "unknown or repeated query parameter 'z'"}),
        ("?q", 400, {"error": "malformed query string"}),
    ],
)
async def test_query_parameters_are_declared_decoded_and_required(query, status, body):
    server = await serve([QUERY_ROUTE], "127.0.0.1", 0)
    async with server:
        reply = await call(server.sockets[0].getsockname()[1], "GET", f"/echo/x%20y{query}")
    assert (reply.status, reply.json()) == (status, body)


def test_route_tables_are_checked():
    with pytest.raises(LocalProtocolError, match="declare each"):
        Route("GET", "/values/{key}", echo, "x", {200: Payload({}, {})})
    with pytest.raises(LocalProtocolError, match="declare each"):
        Route("GET", "/a{b}", echo, "x", {200: Payload({}, {})}, path_params=(Param("b", "", ""),))


async def test_duplicate_routes_are_refused():
    with pytest.raises(LocalProtocolError, match=r"duplicate routes: GET /echo/\{name\}"):
        await serve([QUERY_ROUTE, QUERY_ROUTE], "127.0.0.1", 0)


async def test_openapi_document_is_structurally_valid_openapi_3_1(node):
    doc = (await call(node.port, "GET", "/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"] == {"title": "kadnode control API", "version": "0.1.0"}
    operation_ids = []
    for path, operations in doc["paths"].items():
        assert path.startswith("/")
        for method, op in operations.items():
            assert method in {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
            operation_ids.append(op["operationId"])
            assert op["summary"] and op["responses"]
            for status, response in op["responses"].items():
                assert status == "default" or re.fullmatch(r"[1-5]\d\d", status)
                assert isinstance(response["description"], str)
                for media in response["content"].values():
                    check_schema(media["schema"], media["example"])
            params = op.get("parameters", [])
            declared = [p["name"] for p in params if p["in"] == "path"]
            assert declared == re.findall(r"{(\w+)}", path)
            for p in params:
                assert p["in"] in {"path", "query"} and isinstance(p["schema"], dict)
                assert p["required"] or p["in"] == "query"
                check_schema(p["schema"], p["example"])
            if "requestBody" in op:
                [media] = op["requestBody"]["content"].values()
                check_schema(media["schema"], media["example"])
    assert len(operation_ids) == len(set(operation_ids))


async def test_the_document_says_which_calls_need_the_api_token(node):
    doc = (await call(node.port, "GET", "/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    for operations in doc["paths"].values():
        for method, op in operations.items():
            changes = method not in ("get", "head")
            assert ("security" in op, "401" in op["responses"]) == (changes, changes), op
    page = (await call(node.port, "GET", "/docs")).body.decode()
    assert "401: no token, or a wrong one: send &#x27;Authorization: Bearer TOKEN&#x27;" in page


async def test_openapi_document_matches_the_route_table_exactly(node):
    doc = (await call(node.port, "GET", "/openapi.json")).json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {(r.method, r.path) for r in node.routes}
    assert {p for _, p in documented} == {
        "/info",
        "/lookup/{id}",
        "/values/{key}",
        "/peers",
        "/ping",
        "/owner/{key}",
        "/ring",
        "/leave",
        "/register",
        "/peers/{id}/record",
        "/shared/{key}",
        "/fault",
        "/metrics",
        "/health",
        "/dashboard",
        "/openapi.json",
        "/docs",
    }
    assert len(documented) == 19


async def test_every_documented_operation_answers_its_examples(node):
    doc = (await call(node.port, "GET", "/openapi.json")).json()
    for template, operations in doc["paths"].items():
        for method, op in operations.items():
            path = template
            for p in op.get("parameters", []):
                path = path.replace("{" + p["name"] + "}", quote(p["example"], safe=""))
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            reply = await call(node.port, method.upper(), path, body and body["example"])
            assert reply.status == 200, (method, path, reply.body)
            [(media, declared)] = op["responses"]["200"]["content"].items()
            assert reply.headers["Content-Type"] == media
            got = reply.json() if media == "application/json" else reply.body.decode()
            check_schema(declared["schema"], got, f"{method} {path}")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


async def test_docs_page_lists_every_route_with_examples(node):
    reply = await call(node.port, "GET", "/docs")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    page = _Text()
    page.feed(reply.body.decode())
    text = "\n".join(page.text)
    for route in node.routes:
        assert f"{route.method} {route.path}" in text
        assert route.summary in text
    assert '"address": "192.0.2.7:8468"' in text  # a request body example
    assert "kadnode_peers 42" in text  # a text response example
    assert "script" not in page.tags and b"://" not in reply.body  # self-contained
