"""What the network sees of this node: its address, whether strangers can
reach it, client mode, its clock against theirs. Pure.

- **Observed address** (BEP 42's ``ip``, libp2p identify): a native ping
  reply names the address the ping came from. The node keeps one vote per
  responder /24 (/48), and adopts an address once OBSERVED_QUORUM subnets
  agree on it. A ping reply is an answer to our own request, so every voter
  has proven its address.
- **Behind NAT**: a proven peer saw us at a host that is none of ours
  (``local_hosts``, which the shell gives; without them none of this runs).
  From that moment the node is a *client*: its requests say so (their
  message ids start with :data:`~kadnode.core.codec.CLIENT_MAGIC`, its
  ping replies carry ``cl``), and no kadnode node puts a client in its
  routing table, so nobody is handed an address strangers cannot reach.
- **Reachability** (go-libp2p's AutoNAT): a client behind NAT asks
  REACH_HELPERS contacts on distinct subnets (``kn_reach``, echoing their
  token) to have one of *their* contacts dial it back (``kn_dial``); the
  dialer sends one ``kn_dialed`` datagram, smaller than the ``kn_reach``
  that caused it, to the address the helper saw. One that arrives from a
  host this node has not sent to (a port-restricted NAT lets those through)
  makes it PUBLIC: a server again, and its observed address is what it
  registers. A dial-back a helper acknowledged never came: PRIVATE, a
  client. No helper could, or only hosts it had sent to dialed back (a NAT
  lets those in): UNKNOWN, still a client, tried again after REACH_RETRY.
- **Relays**: a client keeps RELAYS peers on distinct subnets as relays,
  pinging each every RELAY_KEEPALIVE seconds so that its NAT keeps their way
  in open, and names them in its signed peer record: ``find-peer`` tells who
  can still reach it.
- **Clock**: a ping reply carries the responder's clock; the median offset
  over one sample per subnet is what ``kadnode doctor`` compares.

Work per datagram: a vote is a dict write and at most OBSERVED_VOTES
comparisons; a dial-back request one table scan of at most k x 160 contacts,
throttled to DIALS_PER_MINUTE.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from kadnode.config import (
    CLOCK_SAMPLES,
    DIALS_PER_MINUTE,
    NAT_MAPPING_FOR,
    OBSERVE_FIRST,
    OBSERVE_PINGS,
    OBSERVED_FOR,
    OBSERVED_QUORUM,
    OBSERVED_VOTES,
    REACH_HELPERS,
    REACH_INTERVAL,
    REACH_RETRY,
    REACH_WAIT,
    RELAY_KEEPALIVE,
    RELAYS,
    SENT_HOSTS,
)
from kadnode.core.addresses import subnet_of
from kadnode.core.codec import NONCE_BYTES
from kadnode.core.limits import Bucket
from kadnode.core.messages import Ack, Addr, Contact, Dial, Dialed, PingReply, Reach
from kadnode.core.operations import ignore
from kadnode.core.tokens import proving

if TYPE_CHECKING:
    from kadnode.core.answers import Asker
    from kadnode.core.node import NodeCore

UNKNOWN = "unknown"
PUBLIC = "public"
PRIVATE = "private"


def _latest(kept: dict, key, value, limit: int) -> None:
    """``kept[key] = value`` as its newest entry; the oldest go past ``limit``."""
    kept.pop(key, None)
    kept[key] = value
    while len(kept) > limit:
        del kept[next(iter(kept))]


class Reachability:
    """One node's view of itself from outside (see the module docstring)."""

    def __init__(self, now: float) -> None:
        # This host's own addresses: given by the shell. Empty: not known, and
        # nothing here acts (the simulator, the library on loopback).
        self.local_hosts: frozenset[str] = frozenset()
        self.votes: dict[str, tuple[Addr, float]] = {}  # responder subnet -> (seen, at)
        self.address: Addr | None = None  # adopted: OBSERVED_QUORUM subnets agree
        self.nat = False  # a proven peer saw us at a host that is not ours
        self.status = UNKNOWN
        self.nonce: bytes | None = None  # of the check under way
        self.check_ends: float | None = None
        self.acks = 0  # helpers that said they asked a dialer
        self.tainted = 0  # dial-backs from hosts we had sent to: they prove nothing
        self.dialed_from: str | None = None  # host of the dial-back that proved us
        self.observe_at = now + OBSERVE_FIRST
        self.check_at: float | None = None  # next reachability check, once behind NAT
        self.sent: dict[str, float] = {}  # host -> when we last sent it a request
        self.offsets: dict[str, float] = {}  # responder subnet -> its clock minus ours
        self.serving = Bucket(DIALS_PER_MINUTE, now)  # dial-backs served, a minute's
        # As a client: the peers it keeps a NAT binding with, named in its record.
        self.relays: tuple[Contact, ...] = ()
        self.keepalive_at: float | None = None

    def serve(self, now: float) -> bool:
        """One more dial-back served, within DIALS_PER_MINUTE."""
        return self.serving.take(DIALS_PER_MINUTE / 60.0, DIALS_PER_MINUTE, now)

    @property
    def active(self) -> bool:
        return bool(self.local_hosts)

    @property
    def client(self) -> bool:
        """Behind NAT and not proven reachable: nobody should keep our address."""
        return self.nat and self.status != PUBLIC

    def clock_offset(self) -> float | None:
        """The median of peers' clocks minus ours, in seconds; None: no sample."""
        return statistics.median(self.offsets.values()) if self.offsets else None

    def sent_to(self, host: str, now: float) -> None:
        _latest(self.sent, host, now, SENT_HOSTS)

    def contacted(self, host: str, now: float) -> bool:
        at = self.sent.get(host)
        return at is not None and now - at < NAT_MAPPING_FOR

    def vote(self, responder: str, seen: Addr, now: float) -> bool:
        """A proven peer at ``responder`` saw us at ``seen``; True when the
        adopted address or the NAT verdict changed."""
        _latest(self.votes, subnet_of(responder), (seen, now), OBSERVED_VOTES)
        counts: dict[Addr, int] = {}
        for addr, at in self.votes.values():
            if now - at < OBSERVED_FOR:
                counts[addr] = counts.get(addr, 0) + 1
        best = max(counts, key=counts.__getitem__)
        adopted = best if counts[best] >= OBSERVED_QUORUM else self.address
        nat = self.nat or seen[0] not in self.local_hosts
        changed = adopted != self.address or nat != self.nat
        self.address, self.nat = adopted, nat
        return changed


def observed(node: NodeCore, reply: PingReply, addr: Addr, now: float) -> None:
    """A native ping reply from ``addr``, a proven peer: its vote and its clock."""
    reach = node.reach
    if not reach.active:
        return
    if reply.clock is not None:
        # Its clock is whole seconds, cut down: on average half a second behind.
        offset = reply.clock + 0.5 - now
        _latest(reach.offsets, subnet_of(addr[0]), offset, CLOCK_SAMPLES)
    if reply.seen is None:
        return
    was_nat, was = reach.nat, reach.address
    if not reach.vote(addr[0], reply.seen, now):
        return
    if reach.nat and not was_nat:
        node.stats["nat_detected"] += 1
        reach.check_at = now + OBSERVE_FIRST  # once the join has found helpers
    elif reach.address != was and was is not None and reach.nat:
        reach.check_at = now  # the mapping moved: reachable there?
    node.client_mode(reach.client)
    node.readdress(now)


def due(node: NodeCore) -> float | None:
    reach = node.reach
    if not reach.active:
        return None
    times = [reach.observe_at]
    if reach.client or reach.relays:
        times.append(reach.keepalive_at or 0.0)
    if reach.check_ends is not None:
        times.append(reach.check_ends)
    elif reach.check_at is not None:
        times.append(reach.check_at)
    return min(times)


def tick(node: NodeCore, now: float) -> None:
    """Observe pings, a reachability check, or its verdict, when due."""
    reach = node.reach
    if not reach.active:
        return
    if now >= reach.observe_at:
        reach.observe_at = now + REACH_INTERVAL
        observe(node, now)
        if reach.nat and reach.check_at is None:
            reach.check_at = now + OBSERVE_FIRST
    if reach.check_ends is not None:
        if now >= reach.check_ends:
            # Some dial-back we asked for never came (a known host's is let in)
            settled = PRIVATE if reach.acks > reach.tainted else UNKNOWN
            settle(node, settled, now)
    elif reach.check_at is not None and now >= reach.check_at:
        check(node, now)
    keeping = reach.client or reach.relays
    if keeping and (reach.keepalive_at is None or now >= reach.keepalive_at):
        keep_relays(node, now)


def keep_relays(node: NodeCore, now: float) -> None:
    """As a client, keep RELAYS peers on distinct subnets as relays, each pinged
    every RELAY_KEEPALIVE seconds so that its way through our NAT stays open
    (a dead one fails out of the table and is replaced); our record names
    them, and is signed again when they change. No longer a client: none."""
    reach, table = node.reach, node.table
    kept: list[Contact] = []
    if reach.client:
        kept = [c for c in reach.relays if table.holds(c.node_id, c.addr)]
        avoid = {subnet_of(c.host) for c in kept}
        more = [c for c in table.contacts() if c not in kept]
        kept += _spread(more, RELAYS - len(kept), avoid)
        for relay in kept:
            node.send_ping(relay.addr, relay, ignore, ignore, now)
    changed = set(kept) != set(reach.relays)
    reach.relays = tuple(kept)
    # Short of relays (a client still joining): look again soon.
    again = RELAY_KEEPALIVE if len(kept) == RELAYS else OBSERVE_FIRST
    reach.keepalive_at = now + again if reach.client else None
    if changed:
        node.stats["relays_changed"] += 1
        node.reregister(now)


def _spread(contacts: list[Contact], count: int, avoid: set[str]) -> list[Contact]:
    """Up to ``count`` native contacts on distinct subnets, none in ``avoid``."""
    out: list[Contact] = []
    for contact in contacts:
        if len(out) >= count:
            break
        subnet = subnet_of(contact.host)
        if contact.native and subnet not in avoid:
            avoid.add(subnet)
            out.append(contact)
    return out


def observe(node: NodeCore, now: float) -> None:
    """Ping native contacts on distinct subnets: their replies vote. Sent to
    their addresses, not as to contacts: a lost one counts toward no drop,
    so these pings change nothing in the routing table."""
    contacts = node.table.contacts()
    node.rng.shuffle(contacts)
    for contact in _spread(contacts, OBSERVE_PINGS, set()):
        node.send_ping(contact.addr, None, ignore, ignore, now)
    node.stats["observe_rounds"] += 1


def check(node: NodeCore, now: float) -> None:
    """Ask helpers for a dial-back (see the module docstring)."""
    reach = node.reach
    contacts = [c for c in node.table.contacts() if proving(node.table, c.node_id, now)]
    node.rng.shuffle(contacts)
    helpers = _spread(contacts, REACH_HELPERS, set())
    if not helpers:
        reach.check_at = now + REACH_RETRY  # no contact has given us a token yet
        return
    reach.nonce = node.rng.getrandbits(8 * NONCE_BYTES).to_bytes(NONCE_BYTES, "big")
    reach.acks = reach.tainted = 0
    reach.check_ends = now + REACH_WAIT
    nonce = reach.nonce

    def acked(reply: Ack, _at: float) -> None:
        if reply.ok and reach.nonce == nonce:
            reach.acks += 1

    for helper in helpers:
        message = Reach(node.id, nonce)
        node.requests.send(helper.addr, helper, message, acked, ignore, now, 2)
    node.stats["reach_checks"] += 1


def settle(node: NodeCore, status: str, now: float) -> None:
    reach = node.reach
    reach.status = status
    reach.nonce = reach.check_ends = None
    reach.check_at = now + (REACH_RETRY if status == UNKNOWN else REACH_INTERVAL)
    node.client_mode(reach.client)
    node.readdress(now)


# ---- answering (kadnode.core.answers) -------------------------------------------


def answer_reach(node: NodeCore, message: Reach, asker: Asker, now: float) -> Ack:
    """As a helper: have one of our contacts, on another subnet than the
    asker's and not the asker, dial the address we see the asker at."""
    if not asker.vouched or not node.reach.serve(now):
        node.stats["reach_refused"] += 1
        return Ack(False)
    avoid = {subnet_of(asker.addr[0])}
    table = node.table
    candidates = [
        c
        for c in table.contacts()
        if c.node_id != message.sender_id and proving(table, c.node_id, now)
    ]
    node.rng.shuffle(candidates)
    dialers = _spread(candidates, 1, avoid)
    if not dialers:
        node.stats["reach_refused"] += 1
        return Ack(False)
    dialer = dialers[0]
    dial = Dial(node.id, asker.addr, message.nonce)
    node.requests.send(dialer.addr, dialer, dial, ignore, ignore, now, 1)
    node.stats["reach_served"] += 1
    return Ack(True)


def answer_dial(node: NodeCore, message: Dial, asker: Asker, now: float) -> Ack:
    """As the dialer: one kn_dialed datagram, smaller than the kn_dial (and
    the kn_reach before it), to the address named; only for a vouched asker."""
    if not asker.vouched or not node.reach.serve(now):
        node.stats["dials_refused"] += 1
        return Ack(False)
    node.requests.send(message.addr, None, Dialed(node.id, message.nonce), ignore, ignore, now, 1)
    node.stats["dials_sent"] += 1
    return Ack(True)


def answer_dialed(node: NodeCore, message: Dialed, asker: Asker, now: float) -> None:
    """A dial-back: proof of reachability when it is for the check under way
    and comes from a host we have not sent to. Never answered: a reply would
    open our NAT to the dialer, and the next check's dial from it would prove
    nothing."""
    reach = node.reach
    host = asker.addr[0]
    if reach.nonce is None or message.nonce != reach.nonce:
        node.stats["dialed_ignored"] += 1
    elif reach.contacted(host, now):
        reach.tainted += 1
        node.stats["dialed_ignored"] += 1
    else:
        reach.dialed_from = host
        settle(node, PUBLIC, now)
        node.stats["dialed_in"] += 1
