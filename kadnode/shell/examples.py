"""The examples the control API's document shows, shared by its declarations
(kadnode.shell.api, kadnode.shell.api_owned). No I/O.
"""

from __future__ import annotations

from kadnode.shell.operations import NODE_ID

ID = NODE_ID.example
CONTACT = {"id": ID, "host": "192.0.2.7", "port": 8468}
PREDECESSOR = {"id": "893a227aaca1e12a5fa1c0201c0e38b8f3b1536b", "host": "192.0.2.9", "port": 8467}
SUCCESSORS = [
    {"id": "c2c74789868e8bb8486dc3b6d0138e7fb22162b5", "host": "192.0.2.21", "port": 8467},
    {"id": "c74cad16cc5fcd3b4884624cb9afc82438f0dd8b", "host": "198.51.100.4", "port": 8467},
]
RECORD = {
    "id": ID,
    "addresses": [{"host": "192.0.2.7", "port": 8468}],
    "seq": 1732435200123,
    "expires": 1732456800.123,
    "public_key": "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
}
# The examples' network is small: a replica set of three (CONTACT and SUCCESSORS),
# so the quorum (a majority of it) is 2.
READ = {
    "replicas": 3,
    "answered": 3,
    "agreeing": 2,
    "repaired": 1,
    "rejected": 0,
    "needed": 2,
    "quorum": True,
}
UNREAD = {**READ, "agreeing": 0, "repaired": 0, "elapsed_ms": 80.1}
STORED = {
    "stored": 3,
    "pending": 0,
    "asked": 3,
    "needed": 2,
    "local": False,
    "only_copy": False,
    "replicas": [CONTACT, *SUCCESSORS],
}
WRITER = "c2c74789868e8bb8486dc3b6d0138e7fb22162b5"
TARGET = "5a1f3c07d2b8e6a94c0e1b7f3d2a6c8e9b0f4d1a"
SIBLINGS = [
    {"value": "hello", "clock": {ID: 1}},
    {"value": "bonjour", "clock": {WRITER: 1}},
]
CONTEXT = [[ID, 1], [WRITER, 1]]
BELOW_QUORUM = "Fewer acknowledgements than the write quorum (needed) is an error (503)."

REACH = {
    "observed": {"host": "203.0.113.9", "port": 40122},
    "observers": 4,
    "votes": 5,
    "seen": [{"host": "203.0.113.9", "port": 40122}],
    "local": ["10.0.0.5", "127.0.0.1"],
    "nat": True,
    "reachability": "private",
    "mode": "client",
    "dialed_from": None,
    "advertised": [{"host": "203.0.113.9", "port": 40122}, {"host": "10.0.0.5", "port": 8467}],
    "clock_offset_s": 0.4,
    "clock_samples": 5,
}
DOCTOR = {
    "seeds": [{"address": "192.0.2.7:8467", "answered": True, "rtt_ms": 41.2}],
    "seed_errors": [],
    "peers": 38,
    "port": 8467,
    "uptime_s": 1800.0,
    "unsolicited_in": 0,
    "reach": REACH,
    "checks": [
        {
            "check": "reachability",
            "verdict": "warn",
            "finding": "behind NAT (peers see 203.0.113.9:40122): no dial-back from a node it"
            " never contacted arrived; it runs as a client",
            "advice": "to serve others, forward UDP port 8467 on the router to this host",
        }
    ],
}
