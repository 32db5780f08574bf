"""The control API: every operation, declared once (kadnode.shell.operations
says how), with the examples its document shows. No I/O.
"""

from __future__ import annotations

from typing import Any

from kadnode.inputs import parse_hostport
from kadnode.shell import dashboard, messages
from kadnode.shell import examples as ex
from kadnode.shell.api_owned import OWNED
from kadnode.shell.messages import QUESTIONS
from kadnode.shell.operations import (
    HTML,
    KEY,
    METRICS,
    NODE_ID,
    NOT_FOUND_IS_404,
    NodeService,
    Operation,
    Reply,
    not_found,
    watching,
)


async def _health(_: NodeService) -> dict[str, Any]:
    return {"ok": True}


async def _dashboard(_: NodeService) -> str:
    return dashboard.page()


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "info",
        "GET",
        "/info",
        "Show this node's id, address and counters",
        (
            Reply(
                "the node",
                {
                    "id": ex.ID,
                    "host": "0.0.0.0",
                    "port": 8468,
                    "peers": 42,
                    "values": 7,
                    "uptime_s": 3600.5,
                    "stats": {"requests_in": 1200, "requests_out": 950, "timeouts": 3},
                },
            ),
        ),
        messages.Info,
        command="info",
    ),
    Operation(
        "doctor",
        "GET",
        "/doctor",
        "Check why this node may be lonely, and what to do",
        (Reply("each check with its verdict and advice", ex.DOCTOR),),
        messages.Doctor,
        "Pings each configured seed now, and judges what the node knows: its routing"
        " table, the address proven peers on 3 or more /24s see it at, whether it is behind"
        " NAT and reachable (a dial-back from a node it never contacted) or runs as a"
        " client, its clock against its peers', and whether any stranger has reached it.",
        command="doctor",
        missed=lambda reply: any(c["verdict"] == "fail" for c in reply["checks"]),
    ),
    Operation(
        "lookup",
        "GET",
        "/lookup/{id}",
        "Find a node by id",
        (
            Reply(
                "the lookup's outcome; found is false when no node has that id",
                {
                    "target": ex.ID,
                    "found": True,
                    "peer": ex.CONTACT,
                    "closest": [{**ex.CONTACT, "answered": True}],
                    "record": ex.RECORD,
                    "queried": 9,
                    "elapsed_ms": 41.5,
                },
            ),
        ),
        messages.Lookup,
        "An iterative FIND_NODE lookup (Kademlia section 2.3): the node with this id if one"
        " answered, and the k closest nodes known either way; it ends once that node or the"
        " beta (3) nearest have answered, so the others may only have been named by them"
        " (answered: false). A verified peer record for the id, when one is found (as GET"
        " /peers/{id}/record), is returned in record and its first address is the peer's.",
        params=(NODE_ID,),
        command="lookup",
        missed=not_found,
    ),
    Operation(
        "put",
        "PUT",
        "/values/{key}",
        "Store a value under a key",
        (
            Reply(
                "how many of the k closest nodes acknowledged the STORE",
                {"key": "greeting", **ex.STORED, "elapsed_ms": 60.2},
            ),
        ),
        messages.Written,
        "Stores on the k nodes closest to SHA-1(key), as bmuller/kademlia's set(). It returns"
        " once the write quorum (needed) has acknowledged; the writes still unanswered then"
        f" (pending) go on. {ex.BELOW_QUORUM}",
        params=(KEY,),
        body=messages.PutBody,
        command="put",
    ),
    Operation(
        "get",
        "GET",
        "/values/{key}",
        "Fetch the value stored under a key",
        (
            Reply(
                "the value",
                {"key": "greeting", "found": True, "value": "hello", "elapsed_ms": 35.0},
            ),
            Reply(
                "no node holds a value for this key",
                {"key": "greeting", "found": False, "value": None, "elapsed_ms": 80.1},
                404,
            ),
        ),
        messages.FoundValue,
        params=(KEY,),
        command="get",
        **NOT_FOUND_IS_404,
    ),
    Operation(
        "register",
        "POST",
        "/register",
        "Sign and store this node's peer record",
        (
            Reply(
                "the record and how many of the k closest acknowledged it",
                {"key": ex.ID, **ex.STORED, "elapsed_ms": 52.4, "record": ex.RECORD},
            ),
        ),
        messages.Registered,
        "Signs a record binding this node's id to its addresses with the node's ed25519 key"
        " (the id is the SHA-1 of the public key), at a higher sequence than any before, and"
        " stores it on the k nodes closest to the id. Replicas verify it and keep only the"
        " highest valid sequence. The daemon also registers after joining and re-signs every"
        f" half lifetime. {ex.BELOW_QUORUM}",
        command="register",
    ),
    Operation(
        "deregister",
        "DELETE",
        "/register",
        "Withdraw this node's peer record: a signed tombstone",
        (
            Reply(
                "the tombstone (a record with no address) and how many of the k closest took it",
                {
                    "key": ex.ID,
                    **ex.STORED,
                    "elapsed_ms": 50.1,
                    "record": {**ex.RECORD, "addresses": [], "seq": 1732435260456},
                },
            ),
        ),
        messages.Registered,
        "Signs a record with no address at a higher sequence than any before and stores it on"
        " the k closest to the id, where it beats every record this node signed: find-peer"
        " then says the node left. The daemon stops re-signing its record and registers again"
        " only when asked (POST /register). kadnode leave deregisters first by itself. 400 when"
        f" this node holds no record of its own. {ex.BELOW_QUORUM}",
        command="deregister",
    ),
    Operation(
        "find_peer",
        "GET",
        "/peers/{id}/record",
        "Find a node's verified peer record",
        (
            Reply(
                "the record with the highest valid sequence the replicas hold",
                {
                    "id": ex.ID,
                    "found": True,
                    "left": False,
                    "record": ex.RECORD,
                    **ex.READ,
                    "elapsed_ms": 38.2,
                },
            ),
            Reply(
                "no replica holds a valid record for this id, or its node left (left: true,"
                " record: its signed tombstone, which lists no address)",
                {"id": ex.ID, "found": False, "left": False, "record": None, **ex.UNREAD},
                404,
            ),
        ),
        messages.PeerRecord,
        "A quorum read of the record stored under the id: every replica among the k closest"
        " is asked, records that fail verification (forged, bad signature, expired) are"
        " counted in rejected and never returned, and replicas holding an older sequence or"
        " none are repaired. quorum is false when fewer than needed answered. A node that"
        " leaves (POST /leave) first replaces its record with a tombstone, a record with no"
        " address and a higher sequence: found is then false and left true.",
        params=(NODE_ID,),
        command="find-peer",
        **NOT_FOUND_IS_404,
    ),
    *OWNED,
    Operation(
        "delete",
        "DELETE",
        "/values/{key}",
        "Stop publishing a plain value and drop this node's copy",
        (
            Reply(
                "dropped here; the other replicas keep their copies until they expire",
                {"key": "greeting", "dropped": True, "replicas_keep_it_h": 24.0},
            ),
        ),
        messages.Unpublished,
        "A plain value has no owner who could prove a delete, so no node can delete it from the"
        " others (bmuller/kademlia has no delete either). Its publisher can stop republishing it"
        " and drop its own copy; the replicas drop theirs when the value expires. 400 when this"
        " node did not publish a plain value under the key.",
        params=(KEY,),
        command="delete",
    ),
    Operation(
        "peers",
        "GET",
        "/peers",
        "List the routing table's contacts",
        (
            Reply(
                "every contact in the k-buckets",
                {"count": 1, "peers": [{**ex.CONTACT, "failures": 0, "last_seen_s": 12.5}]},
            ),
        ),
        messages.Peers,
        command="peers",
    ),
    Operation(
        "ping",
        "POST",
        "/ping",
        "Ping a node at an address",
        (
            Reply(
                "alive is false when the node did not answer",
                {"host": "192.0.2.7", "port": 8468, "alive": True, "id": ex.ID, "rtt_ms": 1.9},
            ),
        ),
        messages.Ping,
        body=messages.PingBody,
        command="ping",
        missed=lambda reply: not reply["alive"],
        arguments=lambda given: parse_hostport(given["address"]),
    ),
    Operation(
        "exists",
        "GET",
        "/exists/{key}",
        "Ask whether a key holds a value, without fetching it",
        (
            Reply(
                "the key holds a live value",
                {
                    "key": "greeting",
                    "exists": True,
                    "kind": "shared",
                    "deleted": False,
                    "holding": 20,
                    "queried": 24,
                    "elapsed_ms": 35.1,
                },
            ),
            Reply(
                "nothing, or its newest version is a delete (deleted)",
                {
                    "key": "greeting",
                    "exists": False,
                    "kind": "shared",
                    "deleted": True,
                    "holding": 20,
                    "queried": 24,
                    "elapsed_ms": 36.0,
                },
                404,
            ),
        ),
        messages.Exists,
        "The BVU seed's Exists. A lookup of SHA-1(key) asks every node it meets kn_has, answered"
        " like find_value but with only what the answer needs: for a plain value that one is"
        " held, for a shared value its siblings' clocks (each value replaced by true, or nil for"
        " a delete), for a signed value or peer record the version itself (only its signature"
        " proves its sequence). A plain value exists if any node holds it; for the other kinds"
        " the newest version decides, and a delete means it does not.",
        params=(KEY,),
        command="exists",
        missed=lambda reply: not reply["exists"],
        missed_status=404,
    ),
    Operation(
        "owner",
        "GET",
        "/owner/{key}",
        "Show which nodes are responsible for a key, asked both ways",
        (
            Reply(
                "both answers; successor is null when Chord routing failed",
                {
                    "key": "greeting",
                    "key_id": "a0f7e779f9247566c84036f07f7bdf4a40a869bd",
                    "successor": ex.CONTACT,
                    "successor_hops": 2,
                    "closest": [ex.CONTACT, *ex.SUCCESSORS],
                    "questions": QUESTIONS,
                    "elapsed_ms": 41.5,
                },
            ),
        ),
        messages.Owner,
        "Two answers, each labelled in questions by the question it answers. successor: the"
        " key's owner on the Chord ring, the first node clockwise from SHA-1(key), found by"
        " Chord routing in successor_hops requests (Stoica et al. 2001, section 4.2). closest:"
        " the k nodes closest to SHA-1(key) by XOR, this node included, found by an iterative"
        " FIND_NODE lookup (Kademlia section 2.3): where PUT /values/{key} stores the value.",
        params=(KEY,),
        command="owner",
        missed=lambda reply: reply["successor"] is None,
    ),
    Operation(
        "ring",
        "GET",
        "/ring",
        "Show this node's place on the Chord ring",
        (
            Reply(
                "the ring view; predecessor is null while none is known",
                {
                    "self": ex.CONTACT,
                    "predecessor": ex.PREDECESSOR,
                    "successors": [*ex.SUCCESSORS, ex.PREDECESSOR],
                    "fingers": [{"index": 0, **ex.SUCCESSORS[0]}, {"index": 158, **ex.PREDECESSOR}],
                },
            ),
        ),
        messages.Ring,
        "The ring view kept beside the k-buckets (Chord, Stoica et al. 2001): the predecessor,"
        " the successor list (nearest clockwise first, kept by stabilize and notify) and the"
        " finger table derived from the known contacts: finger i is the first known node at or"
        " after id + 2^i, listed once, at its lowest index.",
        command="ring",
    ),
    Operation(
        "leave",
        "POST",
        "/leave",
        "Hand this node's values on, then stop the daemon",
        (
            Reply(
                "the hand-off's outcome; the daemon stops after replying",
                {"keys": 7, "stores": 140, "acks": 138, "goodbyes": 31, "elapsed_ms": 85.3},
            ),
        ),
        messages.Left,
        "A graceful leave, as on SIGTERM: every value this node holds is stored on the k"
        " closest remaining nodes it knows, then it says goodbye to every kadnode contact (each"
        " drops it from its table and ring at once), then the daemon stops. keys, stores and"
        " acks count the keys handed on, the STOREs sent and those acknowledged, goodbyes the"
        " contacts that took the goodbye; they are null, and timed_out true, when the hand-off"
        " did not finish in time.",
        tag="ops",
        command="leave",
        missed=lambda reply: bool(reply.get("timed_out")),
    ),
    Operation(
        "fault",
        "POST",
        "/fault",
        "Chaos testing: delay every datagram this node sends",
        (
            Reply(
                "the delay now in force (0 clears it)",
                {
                    "delay_ms": 200,
                    "jitter_ms": 50,
                    "mechanism": "kadnode transport send delay (--allow-fault-injection)",
                },
            ),
        ),
        messages.Fault,
        "Only a daemon started with --allow-fault-injection accepts this (400 otherwise). Every"
        " datagram the node sends waits delay_ms +- jitter_ms first: the delay fault of"
        " chaos/run.py where the kernel has no netem qdisc.",
        body=messages.FaultBody,
        tag="ops",
        command="fault",
    ),
    Operation(
        "metrics",
        "GET",
        "/metrics",
        "Counters, gauges, operation latency histograms and process metrics, in Prometheus"
        " text format",
        (
            Reply(
                "Prometheus text exposition 0.0.4",
                "# HELP kadnode_peers Contacts in the routing table.\n"
                "# TYPE kadnode_peers gauge\nkadnode_peers 42.0\n",
            ),
        ),
        None,
        media_type=METRICS,
        tag="ops",
    ),
    Operation(
        "health",
        "GET",
        "/health",
        "Liveness check",
        (Reply("the daemon is serving", {"ok": True}),),
        messages.Health,
        tag="ops",
        answer=_health,
    ),
    Operation(
        "dashboard",
        "GET",
        "/dashboard",
        "A live page of this node: buckets, ring, traffic, latencies",
        (Reply("an HTML page, self-contained", "<!doctype html>..."),),
        None,
        "Draws the routing table's buckets and how full each is, the ring (predecessor,"
        " successors, fingers on a circle), and datagrams a second and mean operation latency"
        " over time, from /info, /peers, /ring and /metrics every 2 s. No external assets.",
        media_type=HTML,
        tag="ops",
        answer=_dashboard,
    ),
)
# A watch is its read again and again: its declaration is derived from the read's.
_READS = {operation.name: operation for operation in OPERATIONS}
OPERATIONS += (
    watching(_READS["get"], "Stream each new version of a value as it arrives", "the value"),
    watching(
        _READS["get_shared"],
        "Stream each new version of a shared value as it arrives",
        "the siblings and their clocks",
    ),
    watching(
        _READS["get_signed"],
        "Stream each new version of a signed value (KEY: its owner's public key)",
        "the sequence its owner signed; a delete is a version",
    ),
)
BY_NAME = {operation.name: operation for operation in OPERATIONS}
# What the metrics listener (kadnode run --metrics) serves: reads, no token.
SCRAPED = ("metrics", "health")
