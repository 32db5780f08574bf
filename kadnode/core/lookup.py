"""The iterative lookup (FIND_NODE / FIND_VALUE) as a state machine. Pure.

Kademlia paper, section 2.3, with requests kept in flight continuously rather
than in lock-step rounds: whenever a reply or failure frees a slot, the
nearest not-yet-asked candidate is asked, so up to ``alpha`` requests are
always outstanding. Once a reply brings no candidate nearer than the nearest
already known, the lookup has converged and keeps :data:`CONVERGED_WIDTH`
times ``alpha`` requests in flight to the ``k`` nearest it has not asked yet
(``wide``: all of them at once, as the paper does: "If a round of FIND_NODEs
fails to return a node any closer than the closest already seen, the
initiator resends the FIND_NODE to all of the k closest nodes it has not
already queried"; a write someone waits on runs wide, background lookups
and republishing do not). A nearer candidate arriving later puts it back to ``alpha``.
The lookup ends when the ``enough`` nearest candidates that have not failed
have all answered (or, for FIND_VALUE, when a value arrives): ``k`` (the
paper's rule) when every one of the k nearest must be heard from (a write
needs each replica's token), ``beta`` (go-libp2p-kad-dht's) when only the
nearest must be sure; the rest of its k nearest are then those that the
nearest named, not yet heard from themselves, and the outcome says which.
A lookup for a node by its id (``until_found``) also ends once that node
itself has answered (go-libp2p-kad-dht's FindPeer stops once it reaches the
peer): nothing is nearer, and it is what the asker wanted.
With ``per_subnet``, at most that many candidates come from one /24 (/48):
ids from one subnet placed next to the target cannot fill the k closest.
The caller does the sending and the timing; this class only decides.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from kadnode.core.addresses import Exempt, subnet_of
from kadnode.core.messages import Contact, Kind, Value

# Requests in flight, as a multiple of alpha, once a lookup has converged.
# All k at once (the paper) is fastest on a wide-area network, but a node
# running many lookups at once (a join refreshes ~11 buckets) then sends ~200
# requests in one burst: with 200 nodes in one process (bench/workload.py)
# the replies queued past the timeout and joining took 18 s instead of 4
# (docs/sim/before/join-burst.txt). Twice alpha keeps most of the gain
# (docs/decisions.md, issue 14).
CONVERGED_WIDTH = 2


class State(Enum):
    FRESH = 0
    WAITING = 1
    ANSWERED = 2
    FAILED = 3
    STALLED = 4  # past its soft timeout: no longer holds a slot, may still answer


# As module names: the loops below run for every reply, and a global is read
# faster than a class attribute.
FRESH, WAITING, ANSWERED, FAILED, STALLED = (
    State.FRESH,
    State.WAITING,
    State.ANSWERED,
    State.FAILED,
    State.STALLED,
)


@dataclass(slots=True)
class Candidate:
    contact: Contact
    # Hops from us: 1 for contacts we knew, n + 1 for those learned from a
    # node n hops away. The lookup's hop count is its nearest answer's.
    hops: int = 1
    state: State = State.FRESH
    token: bytes | None = None  # its write token, from its reply


@dataclass(frozen=True, slots=True)
class LookupOutcome:
    target: int
    # The k nearest that have not failed, nearest first: all answered when the
    # lookup ran to the k rule, else some only named by others (``unheard``).
    closest: list[Contact]
    queried: int  # requests sent
    answered: int
    failed: int
    # of the nearest node that answered, or of the first value holder when a
    # value was found (0: nobody answered)
    hops: int
    tokens: dict[int, bytes]  # write tokens the answering nodes gave us
    # The replica set (a quorum's N): the ids of the k nearest that answered
    # or failed, the asker itself among them when it is that near, nearest
    # first. ``self_replica``: the asker is in it (its own copy counts).
    replica_ids: tuple[int, ...] = ()
    self_replica: bool = False
    value: Value | None = None
    value_from: Contact | None = None
    ttl: float | None = None
    # the nearest answered contact that did not have the value (paper 2.3 caching)
    nearest_without_value: Contact | None = None
    values_seen: list[tuple[Contact, Value]] = field(default_factory=list)
    # A replica held a value of another kind under this key (a shared value
    # where a plain one was asked for, ...): the first such kind seen.
    other_kind: Kind | None = None
    unheard: frozenset[int] = frozenset()  # ids in ``closest`` that never answered

    @property
    def replica_set(self) -> int:
        return len(self.replica_ids)


class Lookup:
    def __init__(
        self,
        target: int,
        seeds: Iterable[Contact],
        *,
        k: int,
        alpha: int,
        self_id: int,
        want_value: bool = False,
        enough: int | None = None,
        wide: bool = False,
        until_found: bool = False,
        per_subnet: int | None = None,
        exempt: Exempt | None = None,
        replica_self: bool = True,
    ):
        self.target = target
        # Whether the asker counts among the replicas when it is that near.
        self.replica_self = replica_self
        self.until_found = until_found
        # At most this many candidates from one /24 (/48), outside the exempt
        # ranges: a subnet full of ids placed next to the target cannot crowd
        # out everyone else (None: no limit).
        self.per_subnet = per_subnet
        self.exempt = exempt or Exempt()
        self._subnets: dict[str, int] = {}
        self.k = k
        self.enough = k if enough is None else min(enough, k)
        self.alpha = alpha
        # requests in flight once converged: all k for a lookup someone waits
        # on (``wide``), else CONVERGED_WIDTH x alpha
        self.width = k if wide else min(k, CONVERGED_WIDTH * alpha)
        self.self_id = self_id
        self.want_value = want_value
        self._order: list[tuple[int, int]] = []  # (distance, node_id), sorted
        self._candidates: dict[int, Candidate] = {}
        self.in_flight = 0
        self.converged = False  # see the module docstring
        self.queried = 0
        self.answered = 0
        self.failed = 0
        self.value: Value | None = None
        self.value_from: Contact | None = None
        self.ttl: float | None = None
        self.values: list[tuple[Contact, Value]] = []
        self.value_hops = 0
        self.other_kind: Kind | None = None
        self.add(seeds)

    def add(self, contacts: Iterable[Contact], hops: int = 1) -> None:
        for contact in contacts:
            node_id = contact.node_id
            if node_id == self.self_id:
                continue
            known = self._candidates.get(node_id)
            if known is not None:
                if contact.native and not known.contact.native and known.contact == contact:
                    known.contact = contact
                continue
            if self.per_subnet is not None and contact.host not in self.exempt:
                subnet = subnet_of(contact.host)
                seen = self._subnets.get(subnet, 0)
                if seen >= self.per_subnet:
                    continue
                self._subnets[subnet] = seen + 1
            self._candidates[node_id] = Candidate(contact, hops)
            bisect.insort(self._order, (node_id ^ self.target, node_id))

    def next_requests(self) -> list[Contact]:
        """Contacts to ask now; each is marked WAITING."""
        return [] if self.finished else self.asks()

    def asks(self) -> list[Contact]:
        """:meth:`next_requests` for a caller that knows the lookup has not finished."""
        out: list[Contact] = []
        candidates = self._candidates
        left = self.k  # alive candidates still to look at
        room = (self.width if self.converged else self.alpha) - self.in_flight
        for _, node_id in self._order:
            if room <= 0 or left <= 0:
                break
            cand = candidates[node_id]
            state = cand.state
            if state is FAILED or state is STALLED:
                continue  # a stalled one may answer yet: ask past it meanwhile
            left -= 1
            if state is FRESH:
                cand.state = WAITING
                room -= 1
                out.append(cand.contact)
        self.in_flight += len(out)
        self.queried += len(out)
        return out

    def _settle(self, node_id: int, state: State) -> Candidate | None:
        cand = self._candidates.get(node_id)
        if cand is None:
            return None
        if cand.state is WAITING:
            self.in_flight -= 1
        elif cand.state is not STALLED:
            return None
        cand.state = state
        return cand

    def stalled(self, node_id: int) -> None:
        """A request passed its soft timeout: free its slot, keep hoping.

        The lookup asks the next candidate meanwhile, but does not end while a
        stalled one might still be among the k closest (Kademlia paper 2.3:
        "nodes that fail to respond quickly are removed from consideration
        until and unless they do respond").
        """
        cand = self._candidates.get(node_id)
        if cand is not None and cand.state is WAITING:
            cand.state = STALLED
            self.in_flight -= 1

    def answered_nodes(
        self, responder: Contact, contacts: Iterable[Contact], token: bytes | None = None
    ) -> None:
        cand = self._settle(responder.node_id, ANSWERED)
        if cand is None:
            return
        cand.token = token
        if responder.native:
            cand.contact = responder
        self.answered += 1
        order = self._order
        nearest = order[0][0]  # the responder itself is a candidate: never empty
        self.add(contacts, cand.hops + 1)
        self.converged = order[0][0] == nearest

    def answered_value(
        self,
        responder: Contact,
        value: Value,
        ttl: float | None,
        token: bytes | None = None,
        contacts: Iterable[Contact] = (),
    ) -> None:
        """A value; with the ``contacts`` a native reply names beside it (a
        quorum read goes on to every replica)."""
        cand = self._settle(responder.node_id, ANSWERED)
        if cand is None:
            return
        cand.token = token
        if responder.native:
            cand.contact = responder
        self.answered += 1
        self.values.append((responder, value))
        if contacts:
            nearest = self._order[0][0]
            self.add(contacts, cand.hops + 1)
            self.converged = self._order[0][0] == nearest
        if self.value is None:
            self.value, self.value_from, self.ttl = value, responder, ttl
            self.value_hops = cand.hops

    def answered_other_kind(
        self,
        responder: Contact,
        kind: Kind,
        token: bytes | None,
        contacts: Iterable[Contact] = (),
    ) -> None:
        """A value of another kind than asked for: this node holds nothing for
        us, but the ``contacts`` its reply names are as good as a nodes reply's."""
        if self.other_kind is None:
            self.other_kind = kind
        self.answered_nodes(responder, contacts, token)

    def failed_request(self, node_id: int) -> None:
        if self._settle(node_id, FAILED) is not None:
            self.failed += 1

    def answered_nearest(self) -> list[Candidate]:
        """Those among the k nearest that have not failed that answered."""
        out: list[Candidate] = []
        candidates = self._candidates
        left = self.k
        for _, node_id in self._order:
            cand = candidates[node_id]
            state = cand.state
            if state is FAILED:
                continue
            if state is ANSWERED:
                out.append(cand)
            left -= 1
            if left <= 0:
                break
        return out

    @property
    def finished(self) -> bool:
        if self.want_value and self.value is not None:
            return True
        candidates = self._candidates
        left = self.enough  # answers still needed
        until_found = self.until_found
        for distance, node_id in self._order:
            state = candidates[node_id].state
            if distance == 0 and until_found and state is ANSWERED:
                return True
            if state is FAILED:
                continue
            if state is not ANSWERED:
                return False
            left -= 1
            if left <= 0:
                return True
        return True  # everyone known answered or failed

    def outcome(self) -> LookupOutcome:
        closest: list[Contact] = []
        unheard: list[int] = []
        replicas: list[int] = []
        mine = self.self_id ^ self.target
        placed = not self.replica_self  # the asker itself, in distance order
        nearest_without = None
        hops = 0
        holders = {c.node_id for c, _ in self.values}
        for distance, node_id in self._order:
            cand = self._candidates[node_id]
            if cand.state is ANSWERED or cand.state is FAILED:
                if not placed and mine < distance and len(replicas) < self.k:
                    replicas.append(self.self_id)
                    placed = True
                if len(replicas) < self.k:
                    replicas.append(node_id)
            if cand.state is not FAILED and len(closest) < self.k:
                closest.append(cand.contact)
                if cand.state is not ANSWERED:
                    unheard.append(node_id)
            if cand.state is not ANSWERED:
                continue
            hops = hops or cand.hops
            if node_id not in holders and nearest_without is None:
                nearest_without = cand.contact
        if not placed and len(replicas) < self.k:
            replicas.append(self.self_id)
            placed = True
        return LookupOutcome(
            target=self.target,
            closest=closest,
            queried=self.queried,
            answered=self.answered,
            failed=self.failed,
            hops=self.value_hops if self.value is not None else hops,
            tokens={
                c.contact.node_id: c.token for c in self._candidates.values() if c.token is not None
            },
            replica_ids=tuple(replicas),
            self_replica=placed and self.replica_self,
            value=self.value,
            value_from=self.value_from,
            ttl=self.ttl,
            nearest_without_value=nearest_without,
            values_seen=list(self.values),
            other_kind=self.other_kind,
            unheard=frozenset(unheard),
        )
