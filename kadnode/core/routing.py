"""k-buckets: the XOR-metric routing table. Pure, no I/O.

One bucket per log distance (go-ethereum's layout): bucket ``i`` holds up to
k contacts at distance ``[2**i, 2**(i+1))`` from the owner, least recently
seen first (Kademlia paper, section 2.2). The table never sends anything:
when a full bucket meets a new contact, :meth:`RoutingTable.seen` puts the
newcomer in the bucket's replacement cache and *returns* the least recently
seen contact, which the caller pings (ping-before-evict). A contact leaves
only after ``stale_limit`` consecutive failures (paper, section 4.1), and a
cached replacement then takes its place.

Admission (go-ethereum p2p/discover: ``bucketIPLimit``, ``tableIPLimit``):
one id per IP:port, at most ``per_bucket`` contacts of one /24 (/48) in a
bucket and ``per_table`` in the whole table, replacement caches included, so
that addresses from one subnet cannot fill a bucket or the table. Addresses
in the exempt ranges skip the subnet limits, never the one id per address.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from kadnode.core.addresses import Exempt, subnet_of
from kadnode.core.ids import ID_BITS
from kadnode.core.messages import Addr, Contact

_EMPTY: tuple = ()


@dataclass(slots=True, eq=False)
class Entry:
    """Mutable per-contact state kept by the table."""

    contact: Contact
    last_seen: float
    failures: int = 0
    srtt: float | None = None  # RFC 6298 smoothed RTT, seconds
    rttvar: float = 0.0
    token: bytes | None = None  # its latest write token for us (BEP 5)
    token_at: float = 0.0
    welcomed_at: float = float("-inf")  # its last join handoff (kadnode.core.upkeep)


class RoutingTable:
    def __init__(
        self,
        owner: int,
        k: int,
        replacement_cache: int,
        stale_limit: int,
        good_for: float,
        now: float,
        per_bucket: int = 2,
        per_table: int = 10,
        exempt: Exempt | None = None,
    ):
        self.owner = owner
        self.per_bucket = per_bucket
        self.per_table = per_table
        self.exempt = exempt or Exempt()
        self._by_addr: dict[Addr, int] = {}  # bucket entries and cached replacements
        self._subnets: dict[str, int] = {}  # contacts per subnet, caches included
        self.refused = 0  # newcomers turned away by the admission limits
        self.k = k
        self.replacement_cache = replacement_cache
        self.stale_limit = stale_limit
        self.good_for = good_for
        # Empty buckets share one empty tuple: most of the 160 stay empty, and
        # 320 empty lists would cost ~18 KB per node (the simulator runs 10^4).
        self._buckets: list[list[Entry]] = [_EMPTY] * ID_BITS  # type: ignore[list-item]
        self._replacements: list[list[Contact]] = [_EMPTY] * ID_BITS  # type: ignore[list-item]
        self._by_id: dict[int, Entry] = {}
        self._occupied = 0  # bit i set: bucket i holds someone
        self.version = 0  # bumped on every change of membership
        self._radius: tuple[int, int | None] = (-1, None)  # (version, radius)
        self.refreshed_at = array("d", [now] * ID_BITS)  # no float object per bucket

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, node_id: int) -> bool:
        return node_id in self._by_id

    def knows(self, node_id: int) -> bool:
        """In a bucket or in its bucket's replacement cache."""
        if node_id in self._by_id:
            return True
        for cached in self._replacements[(self.owner ^ node_id).bit_length() - 1]:
            if cached.node_id == node_id:
                return True
        return False

    def get(self, node_id: int) -> Entry | None:
        return self._by_id.get(node_id)

    def holds(self, node_id: int, addr: Addr) -> bool:
        """``node_id`` at ``addr``, in a bucket or in its replacement cache."""
        return self._by_addr.get(addr) == node_id

    def entries(self) -> Iterator[Entry]:
        for bucket in self._buckets:
            yield from bucket

    def contacts(self) -> list[Contact]:
        return [e.contact for e in self.entries()]

    def bucket_index(self, node_id: int) -> int:
        return (self.owner ^ node_id).bit_length() - 1

    def seen(self, contact: Contact, now: float) -> Contact | None:
        """Record that ``contact`` was heard from; maybe return one to ping.

        The return value is the least recently seen contact of a full bucket,
        to be pinged before anyone is evicted; None when nothing is needed
        (it has room, or its oldest contact was heard from within
        ``good_for`` and has not failed since). A newcomer the admission
        limits refuse is not kept (counted in ``refused``).
        """
        node_id = contact.node_id
        if node_id == self.owner:
            return None
        index = (self.owner ^ node_id).bit_length() - 1
        bucket = self._buckets[index]
        if bucket is _EMPTY:
            bucket = self._buckets[index] = []
        self.refreshed_at[index] = now
        entry = self._by_id.get(node_id)
        if entry is not None:
            old = entry.contact
            if old is contact:  # the usual case: contacts are shared (wire.contact_of)
                pass
            elif old.addr != contact.addr:
                if entry.failures == 0:
                    # Same id from another address while the known one answers:
                    # keep the proven address (no hijack by claiming an id).
                    return None
                self._release(old)
                if not self._admissible(contact, index):
                    self._hold(old)
                    self.refused += 1
                    return None
                self._hold(contact)
                entry.contact = contact
            elif contact.native and not old.native:
                entry.contact = contact
            entry.last_seen = now
            entry.failures = 0
            if bucket[-1] is not entry:  # to the tail: most recently seen last
                bucket.remove(entry)
                bucket.append(entry)
            return None
        cache = self._replacements[index]
        if self._by_addr.get(contact.addr) == node_id:
            # Cached already at this address: only its place changes (newest last).
            for i, c in enumerate(cache):
                if c.node_id == node_id:
                    del cache[i]
                    cache.append(contact)
                    return self._due_ping(bucket, now)
        cached = [c for c in cache if c.node_id == node_id]
        for c in cached:  # one entry per id: the newest address wins
            cache.remove(c)
            self._release(c)
        if not self._admissible(contact, index):
            for c in cached:  # as it was
                cache.append(c)
                self._hold(c)
            self.refused += 1
            return None
        self._hold(contact)
        if len(bucket) < self.k:
            entry = Entry(contact, now)
            bucket.append(entry)
            self._by_id[node_id] = entry
            self._occupied |= 1 << index
            self.version += 1
            return None
        if cache is _EMPTY:
            cache = self._replacements[index] = []
        cache.append(contact)
        if len(cache) > self.replacement_cache:
            self._release(cache.pop(0))
        return self._due_ping(bucket, now)

    def _due_ping(self, bucket: list[Entry], now: float) -> Contact | None:
        """A full bucket's least recently seen contact, if it is due a ping
        before eviction (heard from too long ago, or failed since)."""
        oldest = bucket[0]
        if oldest.failures == 0 and now - oldest.last_seen < self.good_for:
            return None
        return oldest.contact

    def wants(self, node_id: int, now: float) -> bool:
        """Whether a newcomer could take a place in its bucket now: the bucket
        has room, or its least recently seen contact is due the ping that
        :meth:`seen` would ask for. Else the newcomer could only wait in the
        replacement cache, which the owner's own lookups keep filled with
        contacts that answered it."""
        bucket = self._buckets[(self.owner ^ node_id).bit_length() - 1]
        return len(bucket) < self.k or self._due_ping(bucket, now) is not None

    def admits(self, contact: Contact) -> bool:
        """Whether a newcomer would pass the admission limits (see the module)."""
        return self._admissible(contact, (self.owner ^ contact.node_id).bit_length() - 1)

    def _admissible(self, contact: Contact, index: int) -> bool:
        """One id per address; and, outside the exempt ranges, at most
        ``per_bucket`` of one subnet in a bucket (with its replacement cache)
        and ``per_table`` in the table."""
        held = self._by_addr.get(contact.addr)
        if held is not None and held != contact.node_id:
            return False
        host = contact.host
        if host in self.exempt:
            return True
        subnet = subnet_of(host)
        if self._subnets.get(subnet, 0) >= self.per_table:
            return False
        near = [e.contact for e in self._buckets[index]]
        near += self._replacements[index]
        return sum(1 for c in near if subnet_of(c.host) == subnet) < self.per_bucket

    def _hold(self, contact: Contact) -> None:
        self._by_addr[contact.addr] = contact.node_id
        subnet = subnet_of(contact.host)
        self._subnets[subnet] = self._subnets.get(subnet, 0) + 1

    def _release(self, contact: Contact) -> None:
        addr = contact.addr
        if self._by_addr.get(addr) == contact.node_id:
            del self._by_addr[addr]
        subnet = subnet_of(contact.host)
        left = self._subnets.get(subnet, 0) - 1
        if left > 0:
            self._subnets[subnet] = left
        else:
            self._subnets.pop(subnet, None)

    def failed(self, node_id: int) -> bool:
        """Count one failed request; return True if the contact was dropped."""
        entry = self._by_id.get(node_id)
        if entry is None:
            return False
        entry.failures += 1
        if entry.failures < self.stale_limit:
            return False
        self.remove(node_id)
        return True

    def remove(self, node_id: int) -> None:
        entry = self._by_id.pop(node_id, None)
        if entry is None:
            return
        self._release(entry.contact)
        self.version += 1
        index = (self.owner ^ node_id).bit_length() - 1
        self._buckets[index].remove(entry)
        cache = self._replacements[index]
        if cache:
            # The most recently seen replacement moves in (paper, section 4.1).
            # It has not been heard from since it was cached: not "good", so
            # the next newcomer pings it before anything else is decided.
            promoted = cache.pop()
            entry = Entry(promoted, self.refreshed_at[index] - self.good_for)
            self._buckets[index].insert(0, entry)
            self._by_id[promoted.node_id] = entry
        elif not self._buckets[index]:
            self._occupied &= ~(1 << index)

    def record_rtt(self, node_id: int, rtt: float, alpha: float, beta: float) -> None:
        entry = self._by_id.get(node_id)
        if entry is not None:
            entry.srtt, entry.rttvar = rtt_update(entry.srtt, entry.rttvar, rtt, alpha, beta)

    def closest(
        self, target: int, n: int, exclude: int | None = None, ordered: bool = True
    ) -> list[Contact]:
        """The ``n`` known contacts closest to ``target`` by XOR, nearest first
        (with ``ordered=False``, the same contacts in any order: a reply's
        reader sorts them itself, and a bucket taken whole is then not sorted).

        Exact without sorting the whole table: buckets are visited in
        distance order and each is sorted on its own. With ``x = target ^
        owner`` whose top bit is ``t``, bucket ``t`` comes first (distances
        below 2**t). Below it, bucket ``j`` is nearer than all lower buckets
        when bit ``j`` of x is set, and farther than all of them when it is
        clear; so the walk takes the set-bit buckets downwards, then the
        clear-bit ones upwards. Buckets above t follow in increasing order.
        Only occupied buckets are visited (a bit mask of them), and the walk
        stops as soon as ``n`` are found.
        """
        buckets = self._buckets
        x = target ^ self.owner
        top = x.bit_length() - 1
        out: list[Contact] = []

        def take(j: int) -> bool:
            group = buckets[j]
            if len(group) > 1 and (ordered or len(group) > n - len(out)):
                group = sorted(group, key=lambda e: e.contact.node_id ^ target)
            for entry in group:
                if entry.contact.node_id != exclude:
                    out.append(entry.contact)
            return len(out) >= n

        occupied = self._occupied
        if top >= 0:
            below = occupied & ((1 << top) - 1)
            if (occupied >> top) & 1 and take(top):
                return out[:n]
            nearer = below & x
            while nearer:
                j = nearer.bit_length() - 1
                nearer ^= 1 << j
                if take(j):
                    return out[:n]
            farther = below & ~x
            while farther:
                low = farther & -farther
                farther ^= low
                if take(low.bit_length() - 1):
                    return out[:n]
        above = occupied >> (top + 1) << (top + 1)
        while above:
            low = above & -above
            above ^= low
            if take(low.bit_length() - 1):
                return out[:n]
        return out

    def radius(self) -> int | None:
        """XOR distance from the owner to its k-th nearest contact; None while
        fewer than k are known. Kept until the membership changes: every
        unknown sender asks it (join handoff)."""
        version, radius = self._radius
        if version != self.version:
            near = self.closest(self.owner, self.k)
            radius = near[-1].node_id ^ self.owner if len(near) == self.k else None
            self._radius = (self.version, radius)
        return radius

    def nearest_occupied(self) -> int:
        """The index of the nearest bucket that holds someone (160: none)."""
        occupied = self._occupied
        return (occupied & -occupied).bit_length() - 1 if occupied else ID_BITS

    def sparse_buckets(self, most: int) -> list[int]:
        """Buckets above the nearest occupied one with at most ``most`` contacts."""
        return [i for i in range(self.nearest_occupied(), ID_BITS) if len(self._buckets[i]) <= most]

    def stale_buckets(self, now: float, interval: float) -> list[int]:
        """Buckets not touched for ``interval``, from the nearest occupied one out.

        Buckets nearer than the nearest occupied one are empty by the id
        distribution (there is nobody that close); the join lookup for our
        own id covers them.
        """
        occupied = self._occupied
        if not occupied:
            return []
        nearest = (occupied & -occupied).bit_length() - 1
        return [i for i in range(nearest, ID_BITS) if now - self.refreshed_at[i] >= interval]

    def touch(self, index: int, now: float) -> None:
        if 0 <= index < ID_BITS:
            self.refreshed_at[index] = now


def rtt_update(
    srtt: float | None, rttvar: float, sample: float, alpha: float, beta: float
) -> tuple[float, float]:
    """RFC 6298 section 2: the smoothed RTT and its variation."""
    if srtt is None:
        return sample, sample / 2
    rttvar = (1 - beta) * rttvar + beta * abs(srtt - sample)
    return (1 - alpha) * srtt + alpha * sample, rttvar
