"""Scenario ``skew``: what wrong clocks do to values and peer records. No I/O
but progress on stderr.

A daemon's core runs on its machine's wall clock (read when it starts, then carried
on by the monotonic clock: kadnode.shell.clock), so a node whose clock is
wrong runs all of itself on that wrong clock. Plain values travel with a
relative TTL (each replica counts it down on its own clock); signed peer
records carry an absolute ``expires`` in the signer's clock (``now`` +
``register_lifetime``), which a replica or reader refuses when its own clock
says the record has expired (:data:`~kadnode.core.records.EXPIRED`) or
expires more than ``MAX_RECORD_LIFETIME`` ahead
(:data:`~kadnode.core.records.TOO_FAR_AHEAD`).

For each maximum skew S (a row) a network of ``nodes`` is grown by the real
join, a ``fraction`` of its nodes booted with a constant clock offset drawn
uniformly from [-S, +S] (and, with ``drift_ppm``, a rate error of up to that
many ppm); the others keep true time. Every clock reads unix time
(:data:`EPOCH` + the simulated time, plus the offset), as a daemon's does.
Then, on that network:

- ``records_found``: one plain value put (``NodeCore.put``) from each of
  ``samples`` nodes, half of them skewed, each read (``NodeCore.get``) from
  :data:`READERS` other random nodes; found with the right value, of pairs tried;
- ``peer_records_verified``: ``samples`` nodes with an ed25519 identity (the
  last ones to join, skewed in the same share) each register
  (``NodeCore.register``, as the daemon does), and each record is read
  (``NodeCore.read`` of a peer record: the daemon's find_peer) by every
  other of them; verified with the right address, of pairs tried;
- ``peer_records_refused``: why each pair that was not verified failed: the
  reader's own verdict on the record (:func:`~kadnode.core.records.verify_record`
  on its clock when the read ended) if it refuses it, else the reason the
  replicas gave when the record was written, else ``not found``;
- ``expiry_found_before`` / ``expiry_found_after``: a plain value put with a
  TTL T = max(:data:`TTL_FLOOR`, 2 S + :data:`TTL_MARGIN`) from a random
  node, read by ``samples`` other nodes at put time + T - S - 60 s (all must
  find it) and at put time + T + S + 60 s (none may).

The row's figures, and their names, are those of the docker chaos scenario
``chaos/run.py skew``, so the two can be set side by side.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from kadnode.config import Config
from kadnode.core import records
from kadnode.core.identity import Identity
from kadnode.core.messages import Kind
from kadnode.core.node import NodeCore
from kadnode.sim.report import Report
from kadnode.sim.world import Progress, World, finish_report, tuned_gc

# Every clock reads unix time, as a daemon's does: true time is EPOCH plus
# the simulated time (14 Nov 2023), so a clock set hours back still reads a
# time after 1970 (a core whose clock read below zero was seen to drop every
# request as rate-limited, stats["requests_limited"]).
EPOCH = 1_700_000_000.0
# The expiry value's TTL: T = max(TTL_FLOOR, 2 S + TTL_MARGIN), read at
# T - S - READ_MARGIN and T + S + READ_MARGIN after the put.
TTL_FLOOR = 600.0
TTL_MARGIN = 300.0
READ_MARGIN = 60.0
# Each sampled plain value is read by this many other nodes.
READERS = 5
# Beyond the peer-record lifetime (kadnode.config.REGISTER_LIFETIME, 6 h):
# the last default row is S = lifetime + this.
PAST_LIFETIME = 1800.0


def default_skews(config: Config) -> tuple[float, ...]:
    """The rows ``kadnode sim skew`` runs: none, minutes, an hour, past the record lifetime."""
    return (0.0, 300.0, 3600.0, config.register_lifetime + PAST_LIFETIME)


def ttl_for(skew: float) -> float:
    return max(TTL_FLOOR, 2 * skew + TTL_MARGIN)


def scenario_skew(
    nodes: int,
    seed: int,
    *,
    skews: Sequence[float] | None = None,
    fraction: float = 0.5,
    drift_ppm: float = 0.0,
    samples: int = 20,
    loss: float = 0.0,
    config: Config | None = None,
    progress: Progress | None = None,
) -> Report:
    """One row per maximum skew in ``skews`` (default :func:`default_skews`),
    each on a network of its own grown under ``loss``."""
    config = config or Config()
    skews = default_skews(config) if skews is None else tuple(skews)
    signers = max(2, min(samples, nodes // 4))
    if nodes - signers < 2:
        raise ValueError(f"the skew scenario needs at least {signers + 2} nodes")
    rows, details, pairs = [], [], {}
    world = None
    for skew in skews:
        ttl = ttl_for(skew)
        if ttl > config.expire_after:
            raise ValueError(f"S = {skew:g} s needs a TTL of {ttl:g} s, over expire_after")
        world = World("skew", seed, config=config, loss=loss, progress=progress)
        row, detail, seen = _run(world, nodes, signers, skew, fraction, drift_ppm, samples)
        rows.append(row)
        details.append(detail)
        pairs[skew] = seen
        world.progress(
            f"S = {skew:g} s: records {row['records_found']}, peer records"
            f" {row['peer_records_verified']}, expiry {row['expiry_found_before']} before,"
            f" {row['expiry_found_after']} after",
            force=True,
        )
    assert world is not None
    return _report(world, nodes, seed, rows, details, pairs, fraction, drift_ppm, samples)


def _run(
    world: World,
    nodes: int,
    signers: int,
    skew: float,
    fraction: float,
    drift_ppm: float,
    samples: int,
) -> tuple[dict, dict, list[tuple[float, bool]]]:
    net = world.net
    clocks = random.Random(f"kadnode-sim:skew-clocks:{world.seed}:{skew!r}")
    grown = nodes - signers
    # The same share skewed among the grown nodes and among the signers.
    chosen = set(clocks.sample(range(grown), round(fraction * grown)))
    chosen |= set(clocks.sample(range(grown, nodes), round(fraction * signers)))
    offsets: dict[int, float] = {}  # index -> offset, for the skewed

    def clock_for(index: int) -> tuple[float, float]:
        if index not in chosen:
            return EPOCH, 1.0
        offsets[index] = offset = clocks.uniform(-skew, skew)
        return EPOCH + offset, 1.0 + clocks.uniform(-drift_ppm, drift_ppm) * 1e-6

    net.clock_for = clock_for
    with tuned_gc():
        world.grow(grown)
        peers = _signers(world, signers)
        world.settle(60.0)
        found, tried = _plain_values(world, offsets, samples)
        verified, refused, detail, seen = _peer_records(world, peers, offsets)
        before, after, held = _expiry(world, skew, samples)
    skewed = [offsets[i] for i in sorted(offsets)] or [0.0]
    row = {
        "max_skew_s": skew,
        "skewed": f"{len(offsets)} of {len(net.cores)}",
        "offset_s": [round(min(skewed), 1), round(max(skewed), 1)],
        "records_found": f"{found}/{tried}",
        "expiry_found_before": f"{before[0]}/{before[1]}",
        "expiry_found_after": f"{after[0]}/{after[1]}",
        "peer_records_verified": f"{verified}/{len(seen)}",
        "peer_records_refused": refused,
    }
    row["ok"] = not broken(row)
    detail = {"max_skew_s": skew, "ttl_s": ttl_for(skew), **detail, **held}
    return row, detail, seen


def broken(row: dict) -> list[str]:
    """The row's invariants that did not hold, each with its figure."""
    out = [
        f"{key} {row[key]}"
        for key in ("records_found", "expiry_found_before", "peer_records_verified")
        if len(set(row[key].split("/"))) != 1
    ]
    if not row["expiry_found_after"].startswith("0/"):
        out.append(f"expiry_found_after {row['expiry_found_after']} (should be 0)")
    return out


def _signers(world: World, count: int) -> list[NodeCore]:
    """``count`` newcomers with ed25519 identities (ids derived from their keys), joined."""
    net = world.net
    peers = []
    for _ in range(count):
        me = Identity.from_seed(world.rng.randbytes(32))
        core = net.add_node(node_id=me.node_id)
        core.identity = me
        core.addresses = (core.addr,)  # type: ignore[attr-defined]
        peers.append(core)
    world.run_ops([(c, world.bootstrap_from(world.seed_addrs())) for c in peers], 5.0)
    world.members += peers
    return peers


def _index(world: World, core: NodeCore) -> int:
    return world.net.index[core.addr]  # type: ignore[attr-defined]


def _plain_values(world: World, offsets: dict[int, float], samples: int) -> tuple[int, int]:
    """Values put from ``samples`` nodes, half skewed (as far as there are),
    each read by READERS others: (found with the right value, pairs tried)."""
    rng, members = world.rng, world.members
    skewed = [m for m in members if _index(world, m) in offsets]
    true = [m for m in members if _index(world, m) not in offsets]
    half = min(len(skewed), samples // 2)
    publishers = rng.sample(skewed, half) + rng.sample(true, min(len(true), samples - half))
    keys = [rng.getrandbits(160).to_bytes(20, "big") for _ in publishers]
    world.run_ops(
        [(p, lambda c, now, k=key, i=i: c.put(k, f"skew-{i}", now))
         for i, (p, key) in enumerate(zip(publishers, keys, strict=True))], 10.0)  # fmt: skip
    reads = []
    for i, (publisher, key) in enumerate(zip(publishers, keys, strict=True)):
        others = [m for m in members if m is not publisher]
        reads += [(r, key, f"skew-{i}") for r in rng.sample(others, min(READERS, len(others)))]
    results = world.run_ops([(r, lambda c, now, k=key: c.get(k, now)) for r, key, _ in reads], 10.0)
    found = sum(
        1
        for (_, _, value), (result, _) in zip(reads, results, strict=True)
        if result.found and result.value == value  # type: ignore[attr-defined]
    )
    return found, len(reads)


def _peer_records(
    world: World, peers: list[NodeCore], offsets: dict[int, float]
) -> tuple[int, dict[str, int], dict, list[tuple[float, bool]]]:
    """Every peer registers; every other reads its record. Returns (verified,
    {reason: count} for the rest, the registers' details, and per pair (how far
    the reader's clock is ahead of the signer's, in s; verified))."""
    net = world.net
    puts = world.run_ops([(p, lambda c, now: c.register(now)) for p in peers], 5.0)
    by_replicas = {}  # signer id -> the first reason its record's replicas gave
    for peer, (result, _) in zip(peers, puts, strict=True):
        if result.refused:  # type: ignore[attr-defined]
            by_replicas[peer.id] = result.refused[0]  # type: ignore[attr-defined]
    pairs = [(s, r) for s in peers for r in peers if r is not s]
    reads = world.run_ops(
        [(r, lambda c, now, k=s.id_bytes: c.read(k, Kind.PEER, now)) for s, r in pairs], 20.0
    )
    verified, refused, seen = 0, Counter(), []
    for (signer, reader), (result, _) in zip(pairs, reads, strict=True):
        payload = result.payload  # type: ignore[attr-defined]
        record = records.from_wire(payload) if payload is not None else None
        ok = record is not None and record.addresses == signer.addresses
        verified += ok
        ahead = offsets.get(_index(world, reader), 0.0) - offsets.get(_index(world, signer), 0.0)
        seen.append((ahead, ok))
        if ok:
            continue
        if record is not None:
            refused["wrong address" if not record.deleted else "deleted"] += 1
            continue
        signed = records.from_wire(signer.store.get(signer.id_bytes).value)  # type: ignore[union-attr]
        try:
            records.verify_record(signed, net.local_time(_index(world, reader)), signer.id)
        except records.RecordRejected as exc:
            refused[exc.reason] += 1
            continue
        refused[by_replicas.get(signer.id, "not found")] += 1
    detail = {
        "registers_refused": sum(1 for result, _ in puts if result.refused),  # type: ignore[attr-defined]
        "register_acks": sum(result.acks for result, _ in puts) / max(1, len(puts)),  # type: ignore[attr-defined]
        "reads_rejected": sum(result.rejected for result, _ in reads),  # type: ignore[attr-defined]
    }
    return verified, dict(sorted(refused.items())), detail, seen


def _expiry(
    world: World, skew: float, samples: int
) -> tuple[tuple[int, int], tuple[int, int], dict]:
    """A value put with TTL T from a random node, read by ``samples`` others
    at put time + T - S - 60 s and + T + S + 60 s: (found, tried) for each,
    and who held a live copy (on its own clock) after the second reads."""
    net, rng = world.net, world.rng
    ttl = ttl_for(skew)
    publisher = rng.choice(world.members)
    key = rng.getrandbits(160).to_bytes(20, "big")
    op = world.begin(publisher, lambda c, now: c.put(key, "expiry", now, ttl=ttl), "put")
    world.finish(op)
    others = [m for m in world.members if m is not publisher]
    readers = rng.sample(others, min(samples, len(others)))
    gets = [(r, lambda c, now: c.get(key, now)) for r in readers]
    counts = []
    # The reads start within one second before the first time (none late) and
    # within one second after the second (none early).
    for at in (op.started + ttl - skew - READ_MARGIN - 1.0, op.started + ttl + skew + READ_MARGIN):
        world.settle(at - net.now)
        results = world.run_ops(gets, 1.0)
        found = sum(1 for result, _ in results if result.found and result.value == "expiry")  # type: ignore[attr-defined]
        counts.append((found, len(results)))
    left = {}  # holder -> seconds its copy still has to live, on its clock
    for m in world.members:
        record = m.store.get(key)
        if record is not None and record.expires_at > (now := net.local_time(_index(world, m))):
            left[m] = record.expires_at - now
    held = {
        "held_after": len(left),
        "publisher_holds": publisher in left,
        "held_until_h": max(left.values(), default=0.0) / 3600,
    }
    return counts[0], counts[1], held


def _report(world, nodes, seed, rows, details, pairs, fraction, drift_ppm, samples) -> Report:
    lifetime = world.config.register_lifetime
    report = Report(
        "skew",
        f"Clock skew: plain values and peer records on {nodes} nodes,"
        f" {fraction:.0%} of them with a wrong clock",
        seed,
        nodes,
        [
            ("max_skew_s", "max skew S, s"),
            ("skewed", "skewed"),
            ("offset_s", "offsets given, s"),
            ("records_found", "values found"),
            ("expiry_found_before", "found at T - S - 60 s"),
            ("expiry_found_after", "found at T + S + 60 s"),
            ("peer_records_verified", "peer records verified"),
            ("peer_records_refused", "not verified, why"),
            ("ok", "ok"),
        ],
        rows,
        params={
            "skewed share": fraction,
            "drift ppm": drift_ppm,
            "samples": samples,
            "readers per value": READERS,
            "record lifetime s": lifetime,
        },
        series={"pairs": {str(s): seen for s, seen in pairs.items()}, "lifetime": lifetime},
    )
    report.extra.append(
        (
            "Per row: the peer records' writes and reads, and the expiry value (TTL T) after"
            " its second reads",
            [
                ("max_skew_s", "max skew S, s"),
                ("ttl_s", "T, s"),
                ("registers_refused", "registers some replica refused"),
                ("register_acks", "replicas holding a record, mean"),
                ("reads_rejected", "versions refused by readers"),
                ("held_after", "live copies of the expiry value at T + S + 60 s"),
                ("publisher_holds", "its publisher's among them"),
                ("held_until_h", "the longest still to live, h"),
            ],
            details,
        )
    )
    report.notes = [
        f"Each row grows its own network; a share of {fraction:.0%} of its nodes (of the grown"
        " ones and of the signers alike) boots with a clock offset drawn uniformly from [-S, +S]"
        + (f" and a rate error of up to {drift_ppm:g} ppm" if drift_ppm else "")
        + "; the others keep true time. Every clock reads unix time.",
        f"values found: a plain value put from each of {samples} nodes (half of them skewed),"
        f" each read by {READERS} others. peer records: {min(samples, nodes // 4)} nodes with"
        " identities register, and every one reads every other's record (find_peer); not"
        " verified, why: the reader's own refusal of the signed record, else the replicas'"
        " when it was written, else not found.",
        "T = max(600 s, 2 S + 300 s); the expiry value is read by the sample at put time"
        " + T - S - 60 s (all must find it) and + T + S + 60 s (none may). Its publisher"
        " keeps running and holds it as a replica does, never republishing it (a put with a"
        " ttl: kadnode.core.node.NodeCore.put); the second table counts any copy still live,"
        " from anti-entropy or read caching.",
        *_threshold_notes(pairs, lifetime),
    ]
    for row in rows:
        if not row["ok"]:
            report.failures.append(f"S = {row['max_skew_s']:g} s: " + ", ".join(broken(row)))
    return finish_report(world, report)


def _threshold_notes(pairs: dict[float, list[tuple[float, bool]]], lifetime: float) -> list[str]:
    """Where the peer records broke, from the pairs themselves: how far ahead
    of the signer's clock the readers' clocks were, verified or not."""
    notes = []
    for skew, seen in pairs.items():
        failed = [ahead for ahead, ok in seen if not ok]
        if not failed:
            continue
        fine = [ahead for ahead, ok in seen if ok]
        notes.append(
            f"S = {skew:g} s: the {len(failed)} pairs not verified had the reader's clock"
            f" {min(failed) / 3600:.2f} h to {max(failed) / 3600:.2f} h ahead of the signer's;"
            f" the {len(fine)} verified at most {max(fine, default=0.0) / 3600:.2f} h ahead"
            f" (the record lifetime is {lifetime / 3600:.3g} h)."
        )
    return notes
