"""The control API's messages as pydantic models: the request bodies the daemon
validates, the replies it sends and the client checks, and from which the
OpenAPI document is generated (kadnode.shell.api). No I/O.

Every model is strict and closed (``extra="forbid"``): a field the daemon adds
without declaring it fails the reply's validation in the daemon's own tests,
so the document cannot drift from what is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from kadnode.config import EXPIRE_AFTER, MAX_SALT_BYTES
from kadnode.core.codec import check_value_size
from kadnode.core.ids import ID_BITS
from kadnode.errors import KadnodeError, LocalProtocolError
from kadnode.inputs import parse_hostport

HEX_ID_PATTERN = "^[0-9a-f]{40}$"
HexId = Annotated[str, Field(pattern=HEX_ID_PATTERN, description="160-bit id, 40 hex digits")]
Count = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]
Port = Annotated[int, Field(ge=1, le=65535)]
Milliseconds = Annotated[float, Field(ge=0, le=60_000)]


def _checked(check: Callable[[str], object]) -> AfterValidator:
    """A core check (which raises a KadnodeError) as a pydantic validator."""

    def validate(value: str) -> str:
        try:
            check(value)
        except KadnodeError as exc:
            raise ValueError(str(exc)) from None
        return value

    return AfterValidator(validate)


# A value as a client sends it: UTF-8 text within config.MAX_VALUE_BYTES packed.
Value = Annotated[str, _checked(check_value_size), Field(description="the value, any text")]
# A vector clock as a client passes it back: [[writer id, counter], ...].
Context = list[
    Annotated[tuple[HexId, Annotated[int, Field(ge=1, strict=True)]], Field(strict=False)]
]


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def first_error(exc: ValidationError | Any) -> str:
    """A model's refusal (pydantic's, or FastAPI's RequestValidationError) in one
    line: where, and what is wrong there."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "json_invalid":
        return "request body is not valid JSON"
    return f"{where}: {message}" if where else message


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- request bodies ----------------------------------------------------------------------------


class PutBody(Message):
    value: Value
    ttl: float | None = Field(
        None,
        gt=0,
        le=EXPIRE_AFTER,
        description="seconds the value lives, on every node, this one's copy included (at"
        f" most {EXPIRE_AFTER:.0f}). Without it the value lives a day from each daily"
        " republish, for as long as this node holds it",
    )


class SharedPutBody(Message):
    value: Value
    context: Context | None = Field(
        None,
        description="the context a read of this key returned (JSON, as get --shared prints it);"
        " the write supersedes the siblings that read saw. Absent: a blind write",
    )


def salt_fits(salt: str) -> str:
    if len(salt.encode()) > MAX_SALT_BYTES:
        raise LocalProtocolError(f"a salt is at most {MAX_SALT_BYTES} bytes")
    return salt


Salt = Annotated[
    str,
    _checked(salt_fits),
    Field(description=f"names one of its owner's values (at most {MAX_SALT_BYTES} bytes UTF-8)"),
]


class SignedPutBody(Message):
    value: Value
    salt: Salt = ""
    cas: Annotated[int, Field(ge=0)] | None = Field(
        None,
        description="compare-and-swap: write only if the newest version is at this seq,"
        " 0: only if none is held yet (409 otherwise)",
    )


class PingBody(Message):
    address: Annotated[str, _checked(parse_hostport), Field(description="HOST:PORT or [IPv6]:PORT")]


class FaultBody(Message):
    delay_ms: Milliseconds = Field(description="milliseconds each datagram waits; 0 clears it")
    jitter_ms: Milliseconds = Field(0, description="spread the delay by up to this much either way")


# -- replies -----------------------------------------------------------------------------------


class Contact(Message):
    id: HexId
    host: str
    port: Port


class Address(Message):
    host: str
    port: Port


class Record(Message):
    """A signed peer record (kadnode.core.records), verified by the node that returns it."""

    id: HexId
    addresses: list[Address]
    seq: Count = Field(description="the signer's version: the highest valid one wins")
    expires: Seconds = Field(description="unix seconds")
    public_key: str = Field(pattern="^[0-9a-f]{64}$", description="ed25519; id = SHA-1 of it")
    relays: list[Contact] | None = Field(
        None,
        description="a node behind NAT: peers it keeps a binding with, through whom it is"
        " still reached (kadnode doctor says whether it is)",
    )


class Reach(Message):
    """What the network sees of the node (kadnode.core.reach)."""

    observed: Address | None = Field(
        description="the address proven peers on 3 or more distinct /24s (/48s) see this"
        " node at; null until they agree"
    )
    observers: Count = Field(description="subnets whose peers see it at the observed address")
    votes: Count = Field(description="subnets whose peers have said where they see it")
    seen: list[Address] = Field(description="every address those peers see it at")
    local: list[str] = Field(description="this host's own addresses; empty: not known")
    nat: bool = Field(description="a peer sees it at an address that is none of its own")
    reachability: Literal["unknown", "public", "private"] = Field(
        description="public: a node it never contacted reached it; private: helpers asked"
        " for such a dial-back and none arrived"
    )
    mode: Literal["server", "client"] = Field(
        description="client: behind NAT and not reachable; no node keeps its address"
    )
    dialed_from: str | None = Field(description="the host whose dial-back proved it reachable")
    advertised: list[Address] = Field(description="the addresses its peer record names")
    clock_offset_s: float | None = Field(
        description="the median of peers' clocks minus this node's, one sample per subnet"
    )
    clock_samples: Count


class Check(Message):
    check: str
    verdict: Literal["ok", "warn", "fail"]
    finding: str
    advice: str = Field(description="what to do about it; empty when all is well")


class SeedAnswer(Message):
    address: str
    answered: bool
    rtt_ms: float | None = None
    error: str | None = None


class Doctor(Message):
    seeds: list[SeedAnswer] = Field(description="each configured seed, pinged just now")
    seed_errors: list[str] = Field(description="seeds that did not resolve, a line each")
    peers: Count
    port: Port
    uptime_s: Seconds
    unsolicited_in: Count = Field(description="requests from hosts it had not sent to")
    reach: Reach
    checks: list[Check]


class Info(Message):
    id: HexId
    host: str
    port: Port
    peers: Count
    values: Count
    uptime_s: Seconds
    stats: dict[str, Count]
    clock_step_s: float | None = Field(
        None,
        description="how far the wall clock has moved from this node's clock since it"
        " started (a step, NTP putting a wrong clock right): it reaches the node at its"
        " next start",
    )
    version: str | None = None
    data_dir: str | None = None
    network_id: str | None = Field(
        None, description='the private network this node is in; "" for the default network'
    )
    reach: Reach | None = None


class LookupContact(Contact):
    answered: bool | None = Field(
        None, description="false for a node the lookup knows only from others' replies"
    )


class Lookup(Message):
    target: HexId
    found: bool
    peer: Contact | None
    closest: list[LookupContact]
    queried: Count
    elapsed_ms: Seconds
    record: Record | None = Field(
        None, description="the target's verified peer record, when one was found"
    )


class Written(Message):
    key: str
    stored: Count
    replicas: list[Contact]
    elapsed_ms: Seconds
    asked: Count | None = Field(None, description="how many of the k closest were asked to store")
    pending: Count | None = Field(
        None, description="of those, still unanswered when W had acknowledged (the write goes on)"
    )
    needed: Count | None = Field(None, description="the write quorum W")
    local: bool | None = Field(
        None, description="this node is one of the k closest: its own copy is counted in stored"
    )
    only_copy: bool | None = Field(
        None, description="this node knows no other node: it holds the only copy"
    )
    refused: list[str] | None = Field(
        None, description="why each of the closest that refused the write did, in its words"
    )


class SignedWritten(Written):
    public_key: str = Field(pattern="^[0-9a-f]{64}$", description="the owner's ed25519 key")
    salt: str = Field(description="the value's name among its owner's values")
    seq: Count = Field(description="the version written: one past the newest read before")


class Registered(Written):
    record: Record | None


class Read(Message):
    """How a quorum read went."""

    replicas: Count = Field(description="the k closest found, answering or not")
    answered: Count
    agreeing: Count = Field(description="of those, how many held the newest version already")
    repaired: Count = Field(description="read repairs sent to stale or empty replicas")
    rejected: Count = Field(description="invalid versions seen (forged, expired, malformed)")
    needed: Count = Field(description="the read quorum R")
    quorum: bool = Field(description="answered >= needed")
    elapsed_ms: Seconds


class PeerRecord(Read):
    id: HexId
    found: bool
    left: bool = Field(description="its node left: the newest record is a signed tombstone")
    record: Record | None = Field(description="the newest valid record (a tombstone: no addresses)")


class SignedFound(Read):
    key: HexId = Field(description="where it is stored: SHA-1(tag + public key + salt)")
    public_key: str = Field(pattern="^[0-9a-f]{64}$")
    salt: str
    found: bool
    deleted: bool = Field(description="the newest version is its owner's delete (a tombstone)")
    value: str | int | float | bool | None
    seq: Count | None = Field(description="the newest valid version's sequence")


class Unpublished(Message):
    key: str
    dropped: bool
    replicas_keep_it_h: Seconds = Field(
        description="the other replicas keep their copies until they expire, at most this long"
    )


class Exists(Message):
    key: str
    exists: bool
    kind: Literal["plain", "shared", "signed value", "peer record"] | None = Field(
        description="what the key holds, a delete included; null: nothing"
    )
    deleted: bool = Field(description="the newest version of an owned kind is a delete")
    holding: Count = Field(description="nodes met that held a version, this one included")
    queried: Count
    elapsed_ms: Seconds


class Sibling(Message):
    value: str | int | float | bool
    clock: dict[HexId, Count]


class Shared(Read):
    key: str
    found: bool
    deleted: bool = Field(description="every version the replicas hold is a delete (tombstone)")
    siblings: list[Sibling] = Field(description="the values; tombstones are not listed")
    context: Context | None = Field(
        description="the siblings' merged clock: pass it back to resolve them"
    )


class FoundValue(Message):
    key: str
    found: bool
    value: str | int | float | bool | None
    elapsed_ms: Seconds
    source: dict[str, object] | str | None = Field(
        None, description='where the value came from: a node, "local", or null'
    )


class Peer(Contact):
    failures: Count
    last_seen_s: Seconds


class Peers(Message):
    count: Count
    peers: list[Peer]


class Fault(Message):
    delay_ms: Seconds
    jitter_ms: Seconds
    mechanism: str


class Ping(Message):
    host: str
    port: Port
    alive: bool
    id: HexId | None
    rtt_ms: Seconds | None


# The two questions GET /owner answers; every reply carries them, so a reader
# of the JSON knows which answer is which.
QUESTIONS = {
    "successor": "who owns the key on the Chord ring: the first node clockwise from SHA-1(key)",
    "closest": "the k nodes closest to SHA-1(key) by XOR: where put stores the value (Kademlia)",
}


class Questions(Message):
    successor: str
    closest: str


class Owner(Message):
    key: str
    key_id: HexId
    successor: Contact | None
    successor_hops: Count
    closest: list[Contact]
    questions: Questions
    elapsed_ms: Seconds


class Finger(Contact):
    index: Annotated[int, Field(ge=0, le=ID_BITS - 1)]


class Ring(Message):
    self: Contact
    predecessor: Contact | None
    successors: list[Contact]
    fingers: list[Finger]


class Left(Message):
    keys: Count | None
    stores: Count | None
    acks: Count | None
    elapsed_ms: Seconds
    goodbyes: Count | None = Field(
        None, description="contacts that dropped this node at its goodbye"
    )
    timed_out: bool | None = None


class Health(Message):
    ok: bool


class Error(Message):
    error: str = Field(description="one line")
