"""Requests in flight: sending, retransmission, soft timeouts, RTO, reply matching. Pure.

The shape of aioquic's ``recovery.py`` for a request/response protocol over
UDP. Each request gets an unpredictable message id (with kadnode's native
prefix) and a deadline from an RFC 6298 retransmission timeout: per contact
when we have measured it, else over all contacts, else the initial 1 s,
bounded by a floor and a ceiling. At a deadline a request is either
retransmitted with the same id and a doubled timeout (RFC 6298 5.5), or
given a soft timeout (lookups: the caller moves on, a late reply still
counts), or failed. A reply is matched on message id *and* the address it
was sent to; RTT samples follow Karn's rule (none from retransmissions).

Bounded: at most ``max_pending_requests`` outstanding; beyond that a request
is refused at once (its failure callback runs).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields

from kadnode.config import (
    LOOKUP_ATTEMPTS_MAX,
    LOOKUP_MISS,
    LOSS_WINDOW,
    PROOF_PAD_TO,
    RTO_ALPHA,
    RTO_BETA,
    RTO_K,
    TOKEN_BYTES,
    Config,
)
from kadnode.core import codec
from kadnode.core.codec import NATIVE_MAGIC, Response
from kadnode.core.messages import (
    Addr,
    Contact,
    Dial,
    Digest,
    FindNode,
    FindSuccessor,
    FindValue,
    Has,
    KeyList,
    Ping,
    Reach,
    ReplyMessage,
    RequestMessage,
    RingQuery,
)
from kadnode.core.routing import RoutingTable, rtt_update
from kadnode.core.tokens import proving
from kadnode.errors import DecodeError

OnReply = Callable[[ReplyMessage, float], None]
OnTime = Callable[[float], None]
# Native requests that carry a proof of our address; those whose reply may be
# large are padded when we have no token to prove us.
PROVABLE = (Ping, FindNode, FindValue, Has, RingQuery, FindSuccessor, Digest, KeyList, Reach, Dial)
PADDED = (FindNode, FindValue, Has, RingQuery)
# Every field but the last, the proof, of each provable kind, found once
# (dataclasses.replace would look them up for every request sent).
_BEFORE_PROOF = {kind: tuple(f.name for f in fields(kind))[:-1] for kind in PROVABLE}
# Fields before the proof that may be None (a ring query's digest): the
# padding a request needs depends on which of them are.
_OPTIONAL = {kind: tuple(f.name for f in fields(kind)[:-1] if f.default is None) for kind in PADDED}


def _with(message: RequestMessage, proof: bytes) -> RequestMessage:
    """``message`` with ``proof`` as its last field."""
    kind = type(message)
    return kind(*(getattr(message, name) for name in _BEFORE_PROOF[kind]), proof)


@dataclass(slots=True)
class Pending:
    msg_id: bytes
    addr: Addr
    contact: Contact | None  # None when we only know an address (bootstrap)
    message: RequestMessage
    datagram: bytes
    attempts_left: int
    sent_at: float
    deadline: float
    rto: float
    retransmitted: bool
    on_reply: OnReply
    on_fail: OnTime
    # Lookups: called at the first deadline instead of failing (a soft
    # timeout); the request stays open, sent again once a timeout, for a
    # late reply.
    on_stall: OnTime | None = None
    steady: bool = False  # resent every rto, not backed off (a lookup's, once stalled)


class Requests:
    """Outstanding requests of one node, with their deadlines and RTT estimates.

    ``out`` is the node's list of datagrams to send; ``failed`` is told of
    every contact whose request timed out or got a broken reply.
    """

    def __init__(
        self,
        config: Config,
        rng: random.Random,
        stats: Counter[str],
        table: RoutingTable,
        out: list[tuple[bytes, Addr]],
        failed: Callable[[Contact | None], None],
    ):
        self.config = config
        self.rng = rng
        self.stats = stats
        self.table = table
        self.out = out
        self.failed = failed
        self.pending: dict[bytes, Pending] = {}
        self._deadlines: list[tuple[float, bytes]] = []
        self._srtt: float | None = None  # over all contacts, for unknown ones
        self._rttvar = 0.0
        self._resent = 0.0  # share of answered requests sent more than once
        self._attempts_for = (-1.0, 0)  # (_resent, lookup_attempts() for it)
        self._padding: dict[tuple, bytes] = {}  # what each padded shape needs
        # Our message ids start with it: NATIVE_MAGIC, or CLIENT_MAGIC in client mode.
        self.magic = NATIVE_MAGIC
        # Told the host of every request sent (kadnode.core.reach), when set.
        self.on_sent: Callable[[str, float], None] | None = None

    def __len__(self) -> int:
        return len(self.pending)

    # ---- timeouts (RFC 6298) ----------------------------------------------------

    def smoothed_rtt(self, contact: Contact | None) -> tuple[float, float] | None:
        """(srtt, rttvar): the contact's own, else over all contacts, else None."""
        entry = self.table.get(contact.node_id) if contact is not None else None
        if entry is not None and entry.srtt is not None:
            return entry.srtt, entry.rttvar
        if self._srtt is not None:
            return self._srtt, self._rttvar
        return None

    def rtt_estimate(self, contact: Contact) -> float:
        smoothed = self.smoothed_rtt(contact)
        return smoothed[0] if smoothed else self.config.rto_initial

    def rto(self, contact: Contact | None) -> float:
        cfg = self.config
        smoothed = self.smoothed_rtt(contact)
        rto = smoothed[0] + RTO_K * smoothed[1] if smoothed else cfg.rto_initial
        return min(max(rto, cfg.rto_floor), cfg.rto_ceil)

    def lookup_attempts(self) -> int:
        """Sends for a lookup's request: LOOKUP_ATTEMPTS, or more (up to
        LOOKUP_ATTEMPTS_MAX) when the loss this node has seen would make a
        live contact missed LOOKUP_MISS of the time or more (kadnode.config)."""
        resent = self._resent
        if resent == self._attempts_for[0]:
            return self._attempts_for[1]  # no loss seen since: every lookup's pump asks
        least = self.config.lookup_attempts
        share = min(max(resent, 1e-9), 0.999)
        needed = math.ceil(math.log(LOOKUP_MISS) / math.log(share))
        attempts = min(max(needed, least), max(LOOKUP_ATTEMPTS_MAX, least))
        self._attempts_for = (resent, attempts)
        return attempts

    # ---- out ------------------------------------------------------------------------

    def send(
        self,
        addr: Addr,
        contact: Contact | None,
        message: RequestMessage,
        on_reply: OnReply,
        on_fail: OnTime,
        now: float,
        attempts: int,
        on_stall: OnTime | None = None,
    ) -> int:
        """Send a request; returns the datagram's size (0: refused)."""
        if len(self.pending) >= self.config.max_pending_requests:
            self.stats["requests_refused"] += 1
            on_fail(now)
            return 0
        msg_id = self.magic + self.rng.getrandbits(128).to_bytes(16, "big")
        if self.on_sent is not None:
            self.on_sent(addr[0], now)
        if contact is not None and contact.native and type(message) in PROVABLE:
            message = self._with_proof(msg_id, message, contact, now)
        datagram = codec.encode(msg_id, message)
        rto = self.rto(contact)
        pending = Pending(
            msg_id,
            addr,
            contact,
            message,
            datagram,
            attempts - 1,
            now,
            now + rto,
            rto,
            False,
            on_reply,
            on_fail,
            on_stall,
        )
        self.pending[msg_id] = pending
        heapq.heappush(self._deadlines, (pending.deadline, msg_id))
        self.out.append((datagram, addr))
        self.stats["requests_out"] += 1
        return len(datagram)

    def _with_proof(
        self, msg_id: bytes, message: RequestMessage, contact: Contact, now: float
    ) -> RequestMessage:
        """A native request with what proves us to ``contact``: the token it gave
        us while still valid there, else (for requests whose reply may be
        large) padding, so that its anti-amplification limit allows a full
        reply (kadnode.core.proof)."""
        token = proving(self.table, contact.node_id, now)
        if token is not None:
            return _with(message, token)
        kind = type(message)
        if kind not in PADDED:
            return message
        # A padded kind's arguments are ids, keys and fixed-size optional
        # fields: one size per kind and set of fields left None.
        shape = (kind, *(getattr(message, name) is None for name in _OPTIONAL[kind]))
        pad = self._padding.get(shape)
        if pad is None:
            room = PROOF_PAD_TO - len(codec.encode(msg_id, message))
            header = 2 if room - 2 < 256 else 3  # msgpack bin 8, else bin 16
            pad = bytes(max(TOKEN_BYTES + 1, room - header))
            self._padding[shape] = pad
        return _with(message, pad)

    # ---- deadlines --------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = self._deadlines
        while deadlines:  # drop answered requests' deadlines (lazy deletion)
            deadline, msg_id = deadlines[0]
            pending = self.pending.get(msg_id)
            if pending is not None and pending.deadline == deadline:
                return deadline
            heapq.heappop(deadlines)
        return None

    def expire(self, now: float) -> None:
        """Act on every deadline that has passed."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, msg_id = heapq.heappop(deadlines)
            pending = self.pending.get(msg_id)
            if pending is not None and pending.deadline == deadline:
                self._expire(pending, now)

    def _expire(self, pending: Pending, now: float) -> None:
        if pending.on_stall is not None:
            # Soft timeout: the caller moves on; a late reply still counts
            # until the last send times out (a slow node is not a dead one).
            # The request is sent again at once: a lost datagram then costs
            # one timeout, not one and a backed-off one.
            stalled, pending.on_stall = pending.on_stall, None
            pending.steady = True
            self._retransmit(pending, now)
            self.stats["stalls"] += 1
            stalled(now)
            return
        if pending.attempts_left > 0:
            self._retransmit(pending, now)
            return
        del self.pending[pending.msg_id]
        self.stats["timeouts"] += 1
        self.failed(pending.contact)
        pending.on_fail(now)

    def _retransmit(self, pending: Pending, now: float) -> None:
        """Send again with the same message id, if attempts are left; back off
        (RFC 6298 5.5) either way, but for a lookup's request, which waits
        one timeout per send: a lookup that ends only when its k nearest have
        answered or failed must not wait out a dead node's doubling timeouts."""
        if pending.steady:
            pending.deadline = now + pending.rto
            heapq.heappush(self._deadlines, (pending.deadline, pending.msg_id))
        else:
            self._back_off(pending, now)
        if pending.attempts_left > 0:
            pending.attempts_left -= 1
            pending.retransmitted = True
            self.out.append((pending.datagram, pending.addr))
            self.stats["retransmits"] += 1
            if self.on_sent is not None:
                self.on_sent(pending.addr[0], now)

    def _back_off(self, pending: Pending, now: float) -> None:
        pending.rto = min(pending.rto * 2, self.config.rto_ceil)
        pending.deadline = now + pending.rto
        heapq.heappush(self._deadlines, (pending.deadline, pending.msg_id))

    # ---- in ---------------------------------------------------------------------------

    def match(
        self, response: Response, addr: Addr, now: float
    ) -> tuple[Pending, ReplyMessage] | None:
        """The request ``response`` answers and the reply read from it, or None
        (unexpected, or a broken reply: then the request has failed)."""
        pending = self.pending.get(response.msg_id)
        if pending is None or pending.addr != addr:
            self.stats["unexpected_responses"] += 1
            return None
        del self.pending[response.msg_id]
        self.stats["responses_in"] += 1
        try:
            reply = codec.decode_reply(pending.message, response.body)
        except DecodeError:
            self.stats["bad_replies"] += 1
            self.failed(pending.contact)
            pending.on_fail(now)
            return None
        self._resent += (pending.retransmitted - self._resent) / LOSS_WINDOW
        if not pending.retransmitted:  # Karn's rule: no samples from retransmissions
            sample = now - pending.sent_at
            self._srtt, self._rttvar = rtt_update(
                self._srtt, self._rttvar, sample, RTO_ALPHA, RTO_BETA
            )
            if pending.contact is not None:
                self.table.record_rtt(pending.contact.node_id, sample, RTO_ALPHA, RTO_BETA)
        return pending, reply
