"""The control API over real HTTP on 127.0.0.1.

What each operation does, against a real daemon among real nodes (tests/loopback.py);
the HTTP layer itself (framing, bad requests, error mapping, the OpenAPI document and
/docs) against the FastAPI app of kadnode.shell.webapp on a fake service with canned
answers (tests/fakes.py), served by kadnode.shell.httpserver.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    CONTEXT,
    INFO,
    NODE_ID,
    PEER,
    PEER_RECORD,
    QUORUM_ERROR,
    READ,
    SELF_RECORD,
    FakeService,
    message_of,
)
from jsonschema import Draft202012Validator
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
from pydantic import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

import kadnode
from kadnode.config import BETA, Config
from kadnode.core import kinds, records, vclock
from kadnode.core.codec import check_value_size
from kadnode.core.events import PutResult, ReadResult
from kadnode.core.identity import Identity
from kadnode.core.ids import key_id, to_hex, user_key
from kadnode.core.messages import Kind
from kadnode.core.ring import brute_successor
from kadnode.errors import ApiError, LocalProtocolError, QuorumError
from kadnode.inputs import parse_hostport
from kadnode.shell import messages, service, webapp
from kadnode.shell.api import BY_NAME, OPERATIONS
from kadnode.shell.httpserver import MAX_HEAD_BYTES, serve, shutdown
from kadnode.shell.library import storage_key
from kadnode.shell.messages import first_error
from kadnode.shell.metrics import COUNTERS
from kadnode.shell.metrics import OPERATIONS as TIMED_OPERATIONS
from kadnode.shell.operations import NODE_ID as NODE_ID_PARAM
from kadnode.shell.streams import EVENT_STREAM, events
from kadnode.shell.webapp import MAX_BODY_BYTES, build_app


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


@dataclass
class Answer:
    """One response read off a raw connection."""

    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


async def read_answer(reader: asyncio.StreamReader, *, head_only: bool = False) -> Answer | None:
    """The next response on the connection; None if it closed before sending one."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
        partial = getattr(exc, "partial", b"")
        assert partial == b"", f"a response cut off in its head: {partial!r}"
        return None
    status_line, *lines = head.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
    if head_only:
        body = b""
    elif "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    else:  # a reply that ends with the connection (h11's refusals)
        try:
            body = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:  # closed with bytes of ours unread
            body = b""
    return Answer(int(status_line.split(" ")[1]), headers, body)


async def exchange(port: int, data: bytes, *, half_close: bool = False) -> Answer | None:
    """Send bytes as they are on a new connection; read back the first response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        if half_close:
            writer.write_eof()
        return await read_answer(reader)
    finally:
        writer.close()


def request(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    """A well-formed HTTP/1.1 request, its head ending in ``headers``."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return "\r\n".join([*lines, "", ""]).encode() + body


def chunked(*chunks: bytes) -> bytes:
    """A body in Transfer-Encoding: chunked framing."""
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


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
    messages.Info.model_validate(info)
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
    messages.Lookup.model_validate(found)
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
    messages.Written.model_validate(stored)
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
    messages.Peers.model_validate(peers)
    assert peers["count"] == NODES
    assert by_id([fields(p, "id", "host", "port") for p in peers["peers"]]) == by_id(live.contacts)
    assert [p["failures"] for p in peers["peers"]] == [0] * NODES


async def test_ping_a_node_then_ping_it_once_it_stopped(live):
    node = live.nodes[0]
    host, port = node.address
    alive = (await call(live.api_port, "POST", "/ping", {"address": f"{host}:{port}"})).json()
    messages.Ping.model_validate(alive)
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
        messages.Owner.model_validate(owner)
        target = key_id(key)
        assert (owner["key"], owner["key_id"]) == (key, to_hex(target))
        assert owner["successor"] == live.by_id[brute_successor(target, everyone)], key
        assert owner["closest"] == [live.by_id[i] for i in xor_closest(target, everyone)], key
        # Each answer labelled as the documentation labels it.
        assert owner["questions"] == documented["application/json"]["example"]["questions"]


async def test_ring_is_brute_force_over_the_network(live):
    me, everyone = live.server.id, set(live.by_id)
    ring = (await call(live.api_port, "GET", "/ring")).json()
    messages.Ring.model_validate(ring)
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
    messages.Registered.model_validate(reply)
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
    messages.PeerRecord.model_validate(found)
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
    messages.Shared.model_validate(first)
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
    ("context", "error"),
    [
        # Not a pair: the request model refuses it.
        ([["ab" * 20]], "body.context.0.1: Field required"),
        # Writers out of order: well-formed for the model, refused by the daemon's own check.
        ([["cd" * 20, 1], ["ab" * 20, 1]], "context is not [[40-hex writer id, counter], ...]"),
    ],
)
async def test_a_context_the_daemon_cannot_read_is_refused_and_nothing_is_written(
    live, context, error
):
    reply = await call(live.api_port, "PUT", "/shared/k", {"value": "v", "context": context})
    assert (reply.status, reply.json()) == (400, {"error": error})
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
    for operation in TIMED_OPERATIONS:
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
    (documented,) = BY_NAME["info"].replies
    assert set(documented.example["stats"]) <= set(COUNTERS)


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
    messages.Left.model_validate(left)
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


# -- reply helpers and reply models --------------------------------------------------------------


def test_the_daemons_reply_helpers_match_the_reply_models():
    """record_json, context_json, clock_json, put_json and read_json, on real values."""
    me = Identity.from_seed(bytes(range(32)))
    record = records.sign_record(me, [("192.0.2.7", 8467), ("2001:db8::7", 8467)], 7, 1e9)
    put = PutResult(me.node_id.to_bytes(20, "big"), 2, [], 3, 5, needed=2, replica_set=3)
    stored = service.put_json(to_hex(me.node_id), put, 0.0)
    messages.Registered.model_validate({**stored, "record": service.record_json(record)})
    messages.Written.model_validate(stored)
    read = ReadResult(b"k" * 20, Kind.SHARED, [], 20, 19, 18, 17, 2, 1, 11)
    clock = vclock.VectorClock.of({me.node_id: 3, 1: 2**63 - 1})
    shared = {
        "key": "k",
        "found": True,
        "deleted": False,
        "siblings": [{"value": "v", "clock": service.clock_json(clock)}],
        "context": service.context_json(clock),
        **service.read_json(read, 0.0),
    }
    messages.Shared.model_validate(shared)
    found = {
        "id": to_hex(me.node_id),
        "found": True,
        "left": False,
        "record": service.record_json(record),
    }
    messages.PeerRecord.model_validate({**found, **service.read_json(read, 0.0)})
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
    ("model", "good", "change", "error"),
    [
        (
            messages.Owner,
            lambda f: f.owner("greeting"),
            {"successor": {"id": NODE_ID}},
            "successor.host: Field required",
        ),
        (
            messages.Owner,
            lambda f: f.owner("greeting"),
            {"questions": {"closest": "?"}},
            "questions.successor: Field required",
        ),
        (
            messages.Ring,
            lambda f: f.ring(),
            {"fingers": [{**PEER, "index": 160}]},
            "fingers.0.index: Input should be less than or equal to 159",
        ),
        (
            messages.Ring,
            lambda f: f.ring(),
            {"self": None},
            "self: Input should be a valid dictionary or instance of Contact",
        ),
        (
            messages.Left,
            lambda f: f.leave(),
            {"keys": -1},
            "keys: Input should be greater than or equal to 0",
        ),
        (
            messages.Lookup,
            lambda f: f.lookup(int(PEER["id"], 16)),
            {"record": {**PEER_RECORD, "seq": -1}},
            "record.seq: Input should be greater than or equal to 0",
        ),
        (
            messages.PeerRecord,
            lambda f: f.find_peer(int(PEER["id"], 16)),
            {"record": {**PEER_RECORD, "public_key": "ab"}},
            "record.public_key: String should match pattern '^[0-9a-f]{64}$'",
        ),
        (
            messages.PeerRecord,
            lambda f: f.find_peer(0),
            {"quorum": None},
            "quorum: Input should be a valid boolean",
        ),
        (
            messages.Registered,
            lambda f: f.register(),
            {"record": {**SELF_RECORD, "addresses": [{"host": "h", "port": 0}]}},
            "record.addresses.0.port: Input should be greater than or equal to 1",
        ),
        (
            messages.Shared,
            lambda f: f.get_shared("greeting"),
            {"siblings": [{"value": "v", "clock": {NODE_ID: "1"}}]},
            f"siblings.0.clock.{NODE_ID}: Input should be a valid integer",
        ),
        (
            messages.Shared,
            lambda f: f.get_shared("greeting"),
            {"context": [[NODE_ID, 0]]},
            "context.0.1: Input should be greater than or equal to 1",
        ),
        (
            messages.Left,
            lambda f: f.leave(),
            {"timed_out": 1},
            "timed_out: Input should be a valid boolean",
        ),
        (
            messages.Info,
            lambda f: f.info(),
            {"debug": "x"},  # a field the daemon sends without declaring it
            "debug: Extra inputs are not permitted",
        ),
    ],
)
async def test_reply_models_refuse_malformed_replies_in_one_line(model, good, change, error):
    reply = {**await good(FakeService()), **change}
    with pytest.raises(ValidationError) as caught:
        model.model_validate(reply)
    assert first_error(caught.value) == error


def test_a_timed_out_leave_is_a_valid_reply():
    timed_out = {"keys": None, "stores": None, "acks": None, "elapsed_ms": 10000.2}
    messages.Left.model_validate({**timed_out, "timed_out": True})


# -- the HTTP layer, against a fake service: client errors ------------------------------------


class Recorder(FakeService):
    """The fake service, also keeping what each put was given."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[tuple[str, str]] = []

    async def put(self, key: str, value: str, ttl: float | None = None) -> dict[str, Any]:
        self.puts.append((key, value))
        return await super().put(key, value, ttl)


@contextlib.asynccontextmanager
async def served(fake: FakeService, **options: Any) -> AsyncIterator[int]:
    """The control API on ``fake`` on a free port of 127.0.0.1; yields the port."""
    listener = await serve(build_app(fake), "127.0.0.1", 0, **options)
    try:
        yield listener.port
    finally:
        await shutdown(listener)


@dataclass
class Node:
    fake: Recorder
    port: int


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    fake = Recorder()
    async with served(fake) as port:
        yield Node(fake, port)


ID_PATTERN_ERROR = f"String should match pattern '{NODE_ID_PARAM.pattern}'"
NOT_AN_OBJECT = "body: Input should be a valid dictionary or object to extract fields from"


@pytest.mark.parametrize(
    ("method", "path", "kw", "status", "error"),
    [
        ("GET", "/lookup/xyz", {}, 400, f"path.id: {ID_PATTERN_ERROR}"),
        ("GET", f"/lookup/{'ab' * 21}", {}, 400, f"path.id: {ID_PATTERN_ERROR}"),
        ("PUT", "/values/k", {"raw": b"{not json"}, 400, "request body is not valid JSON"),
        ("PUT", "/values/k", {"raw": b"{}{}"}, 400, "request body is not valid JSON"),
        (
            "PUT",
            "/values/k",
            {"raw": b'{"value": NaN}'},
            400,
            "body.value: Input should be a valid string",
        ),
        ("PUT", "/values/k", {}, 400, "body: Field required"),
        (
            "PUT",
            "/values/k",
            {"data": {"value": 5}},
            400,
            "body.value: Input should be a valid string",
        ),
        ("PUT", "/values/k", {"data": {}}, 400, "body.value: Field required"),
        (
            "PUT",
            "/values/k",
            {"data": {"value": "v", "colour": 1}},
            400,
            "body.colour: Extra inputs are not permitted",
        ),
        (
            "PUT",
            "/values/k",
            {"data": {"value": "v", "ttl": 0}},
            400,
            "body.ttl: Input should be greater than 0",
        ),
        (
            "PUT",
            "/values/k",
            {"data": {"value": "v", "ttl": 86401}},
            400,
            "body.ttl: Input should be less than or equal to 86400",
        ),
        ("PUT", "/values/k", {"data": ["v"]}, 400, NOT_AN_OBJECT),
        (
            "PUT",
            "/values/k",
            {"data": {"value": "x" * 2000}},
            400,
            f"body.value: {message_of(check_value_size, 'x' * 2000)}",
        ),
        (
            "PUT",
            f"/values/{'k' * 600}",
            {"data": {"value": "v"}},
            400,
            message_of(user_key, "k" * 600),
        ),
        # Not sent as JSON: never read as JSON.
        (
            "PUT",
            "/values/k",
            {"raw": b'{"value": "v"}', "Content-Type": "text/plain"},
            400,
            NOT_AN_OBJECT,
        ),
        (
            "POST",
            "/ping",
            {"data": {"address": "nocolon"}},
            400,
            f"body.address: {message_of(parse_hostport, 'nocolon')}",
        ),
        (
            "POST",
            "/ping",
            {"data": {"address": "h:0"}},
            400,
            f"body.address: {message_of(parse_hostport, 'h:0')}",
        ),
        (
            "POST",
            "/ping",
            {"data": {"address": 7}},
            400,
            "body.address: Input should be a valid string",
        ),
        (
            "POST",
            "/fault",
            {"data": {"delay_ms": -1}},
            400,
            "body.delay_ms: Input should be greater than or equal to 0",
        ),
        (
            "POST",
            "/fault",
            {"data": {"delay_ms": "5"}},
            400,
            "body.delay_ms: Input should be a valid number",
        ),
        ("GET", "/nope", {}, 404, "no such endpoint: /nope"),
        ("GET", "/info/", {}, 404, "no such endpoint: /info/"),
        ("GET", "/values/", {}, 400, "the key cannot be empty"),
        ("GET", "/owner/", {}, 400, "the key cannot be empty"),
        (
            "GET",
            "/info?verbose=1",
            {},
            400,
            "unknown or repeated query parameter 'verbose'",
        ),
        ("GET", "/peers/xyz/record", {}, 400, f"path.id: {ID_PATTERN_ERROR}"),
        ("GET", "/peers//record", {}, 404, "no such endpoint: /peers//record"),
        ("GET", "/peers/ab/record/x", {}, 404, "no such endpoint: /peers/ab/record/x"),
        (
            "PUT",
            "/shared/k",
            {"data": {"value": 5}},
            400,
            "body.value: Input should be a valid string",
        ),
        ("PUT", "/shared/k", {"data": {"context": []}}, 400, "body.value: Field required"),
        (
            "PUT",
            "/shared/k",
            {"data": {"value": "v", "ttl": 1}},
            400,
            "body.ttl: Extra inputs are not permitted",
        ),
        (
            "PUT",
            "/shared/k",
            {"data": {"value": "v", "context": {"ab": 1}}},
            400,
            "body.context: Input should be a valid list",
        ),
        (
            "PUT",
            "/shared/k",
            {"data": {"value": "v", "context": [["zz", 1]]}},
            400,
            "body.context.0.0: String should match pattern '^[0-9a-f]{40}$'",
        ),
        (
            "PUT",
            "/shared/k",
            {"data": {"value": "v", "context": [[NODE_ID, 0]]}},
            400,
            "body.context.0.1: Input should be greater than or equal to 1",
        ),
        (
            "PUT",
            "/shared/k",
            {"data": {"value": "v", "context": [[NODE_ID, True]]}},
            400,
            "body.context.0.1: Input should be a valid integer",
        ),
    ],
)
async def test_bad_requests_get_one_line_errors(node, method, path, kw, status, error):
    reply = await call(node.port, method, path, **kw)
    assert (reply.status, reply.json()) == (status, {"error": error})
    assert node.fake.answered == []  # refused before the service was asked


async def test_a_body_that_is_not_utf8_is_refused_in_one_line(node):
    reply = await call(node.port, "PUT", "/values/k", raw=b'{"value": "\xff"}')
    assert reply.status == 400
    assert list(reply.json()) == ["error"] and "\n" not in reply.json()["error"]
    assert node.fake.answered == []


@pytest.mark.parametrize("path", ["/values/%ff", "/owner/%ff", "/shared/%ff", "/values/a%c3"])
async def test_a_key_that_is_not_percent_encoded_utf8_is_refused(node, path):
    """Not decoded with replacement characters: /values/%ff and /values/%fe are not one key."""
    reply = await call(node.port, "GET", path)
    assert reply.status == 400, reply.body
    assert list(reply.json()) == ["error"]
    assert node.fake.answered == []


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/values/k", "DELETE, GET, HEAD, PUT"),
        ("POST", "/signed", "DELETE, PUT"),
        ("POST", "/info", "GET, HEAD"),
        ("GET", "/leave", "POST"),
        ("HEAD", "/leave", "POST"),
        ("POST", "/ring", "GET, HEAD"),
        ("PUT", "/owner/k", "GET, HEAD"),
        ("GET", "/register", "DELETE, POST"),
        ("POST", "/peers/ab/record", "GET, HEAD"),
        ("POST", "/shared/k", "DELETE, GET, HEAD, PUT"),
    ],
)
async def test_wrong_method_is_405_with_allow(node, method, path, allow):
    reply = await call(node.port, method, path)
    assert reply.status == 405
    assert reply.headers["Allow"] == allow
    if method != "HEAD":
        assert reply.json() == {"error": f"{method} not allowed on {path}; use {allow}"}
    assert node.fake.answered == []


@pytest.mark.parametrize("path", ["/info", "/health", "/metrics", "/docs", "/ring", "/dashboard"])
async def test_head_is_the_gets_headers_without_a_body(node, path):
    got = await call(node.port, "GET", path)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(request("HEAD", path, "Connection: close"))
    try:
        head = await read_answer(reader, head_only=True)
        assert await reader.read() == b""  # nothing after the headers, to the end
    finally:
        writer.close()
    assert head is not None and head.status == got.status == 200
    assert head.headers["content-type"] == got.headers["Content-Type"]
    assert int(head.headers["content-length"]) == len(got.body) > 0


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


def logged_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == webapp.logger.name and r.levelno >= logging.ERROR
    ]


async def test_unexpected_exception_is_a_bare_500_logged_once(node, caplog):
    node.fake.error = RuntimeError("secret detail")
    with caplog.at_level(logging.ERROR, logger=webapp.logger.name):
        reply = await call(node.port, "GET", "/peers")
    assert (reply.status, reply.json()) == (500, {"error": "internal error"})
    assert b"secret" not in reply.body
    [record] = logged_errors(caplog)
    assert record.getMessage() == "GET /peers failed"
    assert isinstance(record.exc_info[1], RuntimeError)


class Undeclared(FakeService):
    async def info(self) -> dict[str, Any]:
        return {**INFO, "secret_field": "x"}


async def test_a_reply_its_model_refuses_is_never_sent(caplog):
    """A service reply with a field its model does not declare is a logged 500."""
    async with served(Undeclared()) as port:
        with caplog.at_level(logging.ERROR, logger=webapp.logger.name):
            reply = await call(port, "GET", "/info")
    assert (reply.status, reply.json()) == (500, {"error": "internal error"})
    [record] = logged_errors(caplog)
    assert record.getMessage() == "GET /info failed"
    assert isinstance(record.exc_info[1], ValidationError)


# -- framing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /info HTTP/1.1\r\n\r\n",  # no Host
        b"GET /info  HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\nNo Colon\r\n\r\n",
        b"GET /info HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Nul: a\x00b\r\n\r\n",
        b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n",
        request("PUT", "/values/k", "Content-Length: 2", "Content-Length: 3", body=b"{}"),
        b"PUT /values/k HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n{}",
        b"PUT /values/k HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_malformed_requests_are_refused_and_the_server_lives_on(node, request_bytes):
    """Refused (h11's 400, its body h11's own) or closed, never passed on to the service."""
    answer = await exchange(node.port, request_bytes)
    assert answer is None or 400 <= answer.status < 500
    assert node.fake.answered == []
    assert (await call(node.port, "GET", "/health")).json() == {"ok": True}


async def test_a_request_head_over_the_limit_is_refused(node):
    """MAX_HEAD_BYTES bounds a head even when it arrives whole."""
    too_big = request("GET", "/info", "X-Big: " + "a" * MAX_HEAD_BYTES)
    answer = await exchange(node.port, too_big)
    assert answer is None or 400 <= answer.status < 500, answer
    assert node.fake.answered == []
    assert (await call(node.port, "GET", "/health")).json() == {"ok": True}


async def test_truncated_requests_are_dropped_unserved(node):
    head_only = b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    short_body = request("PUT", "/values/k", "Content-Length: 10", body=b"{}")
    for truncated in (head_only, short_body):
        answer = await exchange(node.port, truncated, half_close=True)
        assert answer is None or 400 <= answer.status < 500
    assert node.fake.answered == []
    assert (await call(node.port, "GET", "/health")).json() == {"ok": True}


async def test_a_body_not_sent_in_time_is_408(node, monkeypatch):
    monkeypatch.setattr(webapp, "BODY_TIMEOUT_S", 0.2)
    trickled = request("PUT", "/values/k", "Content-Length: 10", body=b"{}")
    answer = await exchange(node.port, trickled)
    assert answer is not None
    assert (answer.status, json.loads(answer.body)) == (
        408,
        {"error": "request body not received in time"},
    )
    assert node.fake.answered == []


async def test_oversized_body_sent_in_full_still_gets_its_413(node):
    reply = await call(node.port, "PUT", "/values/k", {"value": "x" * (16 * MAX_BODY_BYTES)})
    assert (reply.status, reply.json()) == (
        413,
        {"error": f"request body over {MAX_BODY_BYTES} bytes"},
    )
    assert node.fake.answered == []


async def test_an_oversized_chunked_body_is_413_without_a_length_to_go_by(node):
    piece = b"x" * 4096
    body = chunked(b'{"value": "', *[piece] * (MAX_BODY_BYTES // len(piece) + 1), b'"}')
    headers = ("Content-Type: application/json", "Transfer-Encoding: chunked")
    answer = await exchange(node.port, request("PUT", "/values/k", *headers, body=body))
    assert answer is not None
    assert (answer.status, json.loads(answer.body)) == (
        413,
        {"error": f"request body over {MAX_BODY_BYTES} bytes"},
    )
    assert node.fake.answered == []


async def test_silent_and_closing_clients(node):
    _, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.close()  # connect and leave: nothing to answer
    assert (await call(node.port, "GET", "/health")).status == 200
    async with served(FakeService(), read_timeout=0.1) as port:
        loop = asyncio.get_running_loop()
        started = loop.time()
        # A head never finished: the connection is closed, unanswered.
        assert await exchange(port, b"GET /info HTTP/1.1\r\n") is None
        assert loop.time() - started < 3
        assert (await call(port, "GET", "/health")).status == 200


async def test_two_requests_on_one_kept_alive_connection_are_both_answered(node):
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    try:
        writer.write(request("GET", "/info"))
        first = await read_answer(reader)
        body = b'{"value": "v2"}'
        headers = ("Content-Type: application/json", f"Content-Length: {len(body)}")
        writer.write(request("PUT", "/values/k", *headers, body=body))
        second = await read_answer(reader)
    finally:
        writer.close()
    assert first is not None and second is not None
    assert (first.status, json.loads(first.body)) == (200, INFO)
    assert first.headers.get("connection") != "close"
    assert (second.status, json.loads(second.body)["key"]) == (200, "k")
    assert node.fake.puts == [("k", "v2")]


async def test_a_chunked_put_body_is_read_whole(node):
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    headers = ("Content-Type: application/json", "Transfer-Encoding: chunked")
    try:
        writer.write(request("PUT", "/values/a%20b", *headers))
        for piece in (b'{"val', b'ue": "sent in ', b'chunks"}'):  # each a chunk, one by one
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        answer = await read_answer(reader)
    finally:
        writer.close()
    assert answer is not None
    assert (answer.status, json.loads(answer.body)["key"]) == (200, "a b")
    assert node.fake.puts == [("a b", "sent in chunks")]


# -- the OpenAPI document and /docs --------------------------------------------------------------

DOC_URI = "urn:kadnode:openapi"
JSON = "application/json"
# A body for each operation that takes one (the document gives a schema, no example).
BODIES: dict[str, Any] = {
    "put": {"value": "hello"},
    "put_shared": {"value": "hello", "context": CONTEXT},
    "put_signed": {"value": "hello", "salt": "profile", "cas": 2},
    "ping": {"address": "192.0.2.7:8468"},
    "fault": {"delay_ms": 200, "jitter_ms": 50},
}


class NothingFound(FakeService):
    """The fake service when nothing is there: every answer that can miss, misses."""

    async def lookup(self, target: int) -> dict[str, Any]:
        missed = {"found": False, "peer": None, "closest": [], "record": None}
        return self._answer(
            "lookup", {"target": to_hex(target), **missed, "queried": 0, "elapsed_ms": 1.0}
        )

    async def get(self, key: str) -> dict[str, Any]:
        return self._answer("get", {"key": key, "found": False, "value": None, "elapsed_ms": 1})

    async def ping(self, host: str, port: int) -> dict[str, Any]:
        silent = {"alive": False, "id": None, "rtt_ms": None}
        return self._answer("ping", {"host": host, "port": port, **silent})

    async def find_peer(self, target: int) -> dict[str, Any]:
        missed = {"id": to_hex(target), "found": False, "left": False, "record": None}
        return self._answer("find_peer", {**missed, **READ, "agreeing": 0, "repaired": 0})

    async def exists(self, key: str) -> dict[str, Any]:
        missed = {"exists": False, "kind": None, "holding": 0}
        return {**await super().exists(key), **missed}

    async def get_shared(self, key: str) -> dict[str, Any]:
        missed = {"key": key, "found": False, "deleted": False, "siblings": [], "context": None}
        return self._answer("get_shared", {**missed, **READ, "agreeing": 0, "repaired": 0})

    async def get_signed(self, public_key: str, salt: str) -> dict[str, Any]:
        found = await super().get_signed(public_key, salt)
        return {**found, "found": False, "value": None, "seq": None, "agreeing": 0}

    async def owner(self, key: str) -> dict[str, Any]:
        owner = await super().owner(key)
        return {**owner, "successor": None}

    async def ring(self) -> dict[str, Any]:
        ring = await super().ring()
        return {**ring, "predecessor": None, "successors": [], "fingers": []}

    async def leave(self) -> dict[str, Any]:
        timed_out = {"keys": None, "stores": None, "acks": None, "elapsed_ms": 10000.0}
        return self._answer("leave", {**timed_out, "timed_out": True})


def validator_at(doc: dict[str, Any], *location: str) -> Draft202012Validator:
    """The schema at ``location`` in the document (its JSON pointer's parts), its
    ``$ref``s into components/schemas resolved in the same document."""
    registry = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(doc))
    pointer = "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in location)
    return Draft202012Validator({"$ref": f"{DOC_URI}#{quote(pointer)}"}, registry=registry)


def problems(validator: Draft202012Validator, instance: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


def path_of(operation: Any) -> str:
    """The operation's path with each parameter's example filled in."""
    path = operation.path
    for param in operation.params:
        path = path.replace("{" + param.name + "}", quote(param.example, safe=""))
    return path


async def openapi(port: int) -> dict[str, Any]:
    reply = await call(port, "GET", "/openapi.json")
    assert reply.status == 200
    return reply.json()


def events_of(text: str) -> list[tuple[str, Any]]:
    """A stream's events, their data decoded, as the client parses them."""
    return [(name, json.loads(data)) for name, data in events(text.splitlines())]


def stream_problems(
    doc: dict[str, Any], response: tuple[str, ...], sent: list[tuple[str, Any]], what: str
) -> list[str]:
    """What in a stream's events the document's item schema for them refuses; each
    event's data must hold to the schema of its content, and nothing undeclared."""
    item = (*response, "content", EVENT_STREAM, "itemSchema")
    event_schema = validator_at(doc, *item)
    data_schema = validator_at(doc, *item, "properties", "data", "contentSchema")
    found = []
    for name, data in sent:
        found += [f"{what} event {p}" for p in problems(event_schema, {"event": name, "data": ""})]
        found += [f"{what} {name} data {p}" for p in problems(data_schema, data)]
        assert not data_schema.is_valid({**data, "undeclared": 1}), what
    return found


async def test_every_live_reply_validates_against_the_openapi_document():
    """Each JSON reply (a found and a missed one of each operation), and each documented
    example, is valid against the schema /openapi.json gives for its status; a key the
    document does not declare makes it invalid."""
    assert set(BODIES) == {o.name for o in OPERATIONS if o.body is not None}
    invalid: list[str] = []
    seen: dict[str, set[str]] = {}
    async with served(FakeService()) as found, served(NothingFound()) as missed:
        doc = await openapi(found)
        for fake_port in (found, missed):
            for operation in OPERATIONS:
                if operation.reply is None:
                    continue
                method = operation.method.lower()
                body = BODIES.get(operation.name)
                if body is not None:
                    schema = ("paths", operation.path, method, "requestBody", "content", JSON)
                    assert validator_at(doc, *schema, "schema").is_valid(body)
                reply = await call(fake_port, operation.method, path_of(operation), body)
                status = str(reply.status)
                seen.setdefault(operation.name, set()).add(status)
                responses = doc["paths"][operation.path][method]["responses"]
                assert status in responses, (operation.name, status, reply.body)
                if operation.stream:
                    assert reply.headers["Content-Type"].startswith(EVENT_STREAM)
                    where = ("paths", operation.path, method, "responses", status)
                    sent = events_of(reply.body.decode())
                    assert [name for name, _ in sent] == ["version", "error"]  # the fake's end
                    invalid += stream_problems(doc, where, sent, f"{operation.name} {status}")
                    continue
                where = ("paths", operation.path, method, "responses", status, "content", JSON)
                validator = validator_at(doc, *where, "schema")
                got = reply.json()
                invalid += [
                    f"{operation.name} {status} reply {p}" for p in problems(validator, got)
                ]
                # What the document does not declare, a reply may not carry.
                assert not validator.is_valid({**got, "undeclared": 1}), operation.name
    for path, methods in doc["paths"].items():
        for method, declared in methods.items():
            for status, response in declared["responses"].items():
                for media, content in response.get("content", {}).items():
                    if "example" not in content:
                        continue
                    where = ("paths", path, method, "responses", status, "content", media)
                    what = f"{declared['operationId']} {status} example"
                    if media == EVENT_STREAM:
                        sent = events_of(content["example"])
                        invalid += stream_problems(doc, where[:-2], sent, what)
                        continue
                    validator = validator_at(doc, *where, "schema")
                    invalid += [f"{what} {p}" for p in problems(validator, content["example"])]
    assert invalid == [], "\n".join(invalid)
    # Every documented status of every JSON reply was produced and checked.
    assert seen == {
        o.name: {str(r.status) for r in o.replies} for o in OPERATIONS if o.reply is not None
    }


async def test_every_reply_model_in_the_document_is_closed(node):
    """additionalProperties false on each object the document defines (extra="forbid")."""
    doc = await openapi(node.port)
    schemas = doc["components"]["schemas"]
    assert {"Error", "Info", "Written", "Shared"} <= set(schemas)
    open_ = [name for name, s in schemas.items() if s.get("additionalProperties") is not False]
    assert open_ == []


async def test_error_replies_validate_against_the_documented_error_schema(node):
    doc = await openapi(node.port)
    refused = await call(node.port, "PUT", "/values/k", {"value": 5})
    assert refused.status == 400
    where = ("paths", "/values/{key}", "put", "responses", "400", "content", JSON, "schema")
    assert problems(validator_at(doc, *where), refused.json()) == []
    node.fake.error = ApiError("node is shutting down")
    unavailable = await call(node.port, "GET", "/info")
    assert unavailable.status == 503
    where = ("paths", "/info", "get", "responses", "default", "content", JSON, "schema")
    assert problems(validator_at(doc, *where), unavailable.json()) == []
    assert not validator_at(doc, *where).is_valid({"error": "x", "detail": "y"})


async def test_openapi_document_is_structurally_valid_openapi_3_1(node):
    doc = await openapi(node.port)
    assert doc["openapi"].startswith("3.1.")
    assert (doc["info"]["title"], doc["info"]["version"]) == (
        "kadnode control API",
        kadnode.__version__,
    )
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
            params = op.get("parameters", [])
            assert [p["name"] for p in params if p["in"] == "path"] == re.findall(r"{(\w+)}", path)
            for p in params:
                # path parameters are required; query parameters optional, with a default
                assert (p["in"], p["required"]) in (("path", True), ("query", False))
                schema = Draft202012Validator(p["schema"])
                assert all(schema.is_valid(example) for example in p["schema"]["examples"])
    assert len(operation_ids) == len(set(operation_ids))


async def test_the_document_has_exactly_the_operations_and_says_which_need_the_token(node):
    doc = await openapi(node.port)
    documented = {
        (method.upper(), path): op
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }
    # Nothing else: not /openapi.json, /docs or its assets.
    assert {key: op["operationId"] for key, op in documented.items()} == {
        (o.method, o.path): o.name for o in OPERATIONS
    }
    assert {path for _, path in documented} == {
        "/info",
        "/doctor",
        "/lookup/{id}",
        "/values/{key}",
        "/peers",
        "/ping",
        "/owner/{key}",
        "/exists/{key}",
        "/ring",
        "/leave",
        "/register",
        "/peers/{id}/record",
        "/shared/{key}",
        "/signed",
        "/signed/{public_key}",
        "/fault",
        "/metrics",
        "/health",
        "/dashboard",
        "/watch/values/{key}",
        "/watch/shared/{key}",
        "/watch/signed/{public_key}",
    }
    token = doc["components"]["securitySchemes"]["token"]
    assert (token["type"], token["scheme"]) == ("http", "bearer")
    for (method, path), op in documented.items():
        changes = method != "GET"
        assert (op.get("security"), "401" in op["responses"]) == (
            [{"token": []}] if changes else None,
            changes,
        ), (method, path)
        if changes:
            assert "Authorization: Bearer TOKEN" in op["responses"]["401"]["description"]


class _Links(HTMLParser):
    """Every src and href on a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


async def test_the_docs_page_is_swagger_ui_served_from_this_node_only(node):
    reply = await call(node.port, "GET", "/docs")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    page = reply.body.decode()
    links = _Links()
    links.feed(page)
    assert links.urls  # its script and style sheet
    assert [url for url in links.urls if not url.startswith("/") or url.startswith("//")] == []
    assert "'/openapi.json'" in page  # what it renders
    served_assets = {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"}
    assert served_assets <= set(links.urls)
    for url in links.urls:
        asset = await call(node.port, "GET", url)
        assert (asset.status, len(asset.body) > 0) == (200, True), url
    js = await call(node.port, "GET", "/docs/assets/swagger-ui-bundle.js")
    assert js.headers["Content-Type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert b"SwaggerUIBundle" in js.body
    css = await call(node.port, "GET", "/docs/assets/swagger-ui.css")
    assert css.headers["Content-Type"].split(";")[0] == "text/css"
