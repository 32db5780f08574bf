"""The Chord-compatible ring view beside the k-buckets. Pure, no I/O.

Same 160-bit ids, read as points on a ring (Stoica et al., "Chord", 2001):
a key is owned by its successor, the first node at or clockwise after it.
Each node keeps a successor list of length r and a predecessor, maintained
by stabilize / notify (paper, section 4.6 and figure 7), and fed too by
every contact ordinary Kademlia traffic brings. Fingers are derived from the
contacts we know: finger i is the first known node at or after
``owner + 2**i``. Chord routing forwards a ``find_successor(key)`` to the
closest preceding finger, so each hop at least halves the distance left.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable

from kadnode.config import RING_DIGEST_BYTES
from kadnode.core.ids import ID_BITS, ID_BYTES, ID_SPACE, in_half_open, in_open, ring_distance
from kadnode.core.messages import Contact


class RingView:
    def __init__(self, owner: int, successors: int):
        self.owner = owner
        self.size = successors
        self.successors: list[Contact] = []  # clockwise from owner, nearest first
        self.predecessor: Contact | None = None

    @property
    def successor(self) -> Contact | None:
        return self.successors[0] if self.successors else None

    def digest(self) -> bytes:
        """Of what a ring reply carries: the predecessor and the successors
        (id, address, native flag), RING_DIGEST_BYTES of BLAKE2b."""
        h = hashlib.blake2b(digest_size=RING_DIGEST_BYTES)
        pred = self.predecessor
        h.update(b"-" if pred is None else b"+")  # a predecessor or none, then successors
        for c in self.successors if pred is None else [pred, *self.successors]:
            h.update(c.node_id.to_bytes(ID_BYTES, "big"))
            h.update(f"{c.host}:{c.port}:{int(c.native)};".encode())
        return h.digest()

    def offer(self, contact: Contact) -> bool:
        """Consider a contact for the successor list and predecessor.

        Returns True when the view changed.
        """
        node_id = contact.node_id
        if node_id == self.owner:
            return False
        changed = False
        pred = self.predecessor
        if pred is None or in_open(node_id, pred.node_id, self.owner):
            self.predecessor = contact
            changed = True
        succ = self.successors
        d = ring_distance(self.owner, node_id)
        if len(succ) >= self.size and d >= ring_distance(self.owner, succ[-1].node_id):
            return changed  # farther than every successor we keep: the common case
        if any(c.node_id == node_id for c in succ):
            return changed
        keys = [ring_distance(self.owner, c.node_id) for c in succ]
        succ.insert(bisect.bisect(keys, d), contact)
        del succ[self.size :]
        return True

    def remove(self, node_id: int) -> bool:
        """Forget a node that failed; True when the view changed."""
        before = len(self.successors)
        self.successors = [c for c in self.successors if c.node_id != node_id]
        changed = len(self.successors) != before
        if self.predecessor is not None and self.predecessor.node_id == node_id:
            self.predecessor = None
            changed = True
        return changed

    def owns(self, key: int) -> bool:
        """True when this node is the key's successor: key in (predecessor, owner]."""
        if self.predecessor is None:
            return self.successor is None
        return in_half_open(key, self.predecessor.node_id, self.owner)


class Fingers:
    """Finger table derived from a set of known contacts (rebuilt on demand)."""

    def __init__(self, owner: int, contacts: Iterable[Contact]):
        self.owner = owner
        known = sorted(
            {c.node_id: c for c in contacts if c.node_id != owner}.values(),
            key=lambda c: ring_distance(owner, c.node_id),
        )
        self._known = known
        self._dist = [ring_distance(owner, c.node_id) for c in known]

    def __len__(self) -> int:
        return len(self._known)

    def finger(self, i: int) -> Contact | None:
        """The first known node at or after owner + 2**i."""
        at = bisect.bisect_left(self._dist, 1 << i)
        return self._known[at] if at < len(self._known) else None

    def table(self) -> list[tuple[int, Contact]]:
        """Distinct fingers with their lowest index, as Chord's finger table."""
        out: list[tuple[int, Contact]] = []
        for i in range(ID_BITS):
            f = self.finger(i)
            if f is not None and (not out or out[-1][1].node_id != f.node_id):
                out.append((i, f))
        return out

    def closest_preceding(self, key: int) -> Contact | None:
        """Chord's closest_preceding_finger: the finger nearest before ``key``.

        Only fingers count (not every known contact), so hop counts are
        Chord's: about 1/2 log2 N (paper, section 5, figure 10).
        """
        limit = ring_distance(self.owner, key)
        best: Contact | None = None
        best_d = 0
        for i in range(ID_BITS):
            f = self.finger(i)
            if f is None:
                break
            d = ring_distance(self.owner, f.node_id)
            if d >= limit:
                break
            if d > best_d:
                best, best_d = f, d
        return best

    def successor_of(self, key: int) -> Contact | None:
        """The first known node at or clockwise after ``key`` (None: ourselves)."""
        d = ring_distance(self.owner, key)
        if d == 0:
            return None
        at = bisect.bisect_left(self._dist, d)
        return self._known[at] if at < len(self._known) else None


def brute_successor(key: int, ids: Iterable[int]) -> int:
    """The ring successor of ``key`` among ``ids`` by brute force (for tests)."""
    return min(ids, key=lambda i: (i - key) % ID_SPACE)
