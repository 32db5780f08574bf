"""Quotas: what one subnet may keep on a node, and room for honest writes. Pure.

A value stored for others counts against the /24 (/48) it came from: at most
``max_values_per_subnet`` values and ``max_bytes_per_subnet`` bytes each
(a sixteenth of the store, so it takes sixteen subnets to fill one). The
whole store holds at most ``max_stored_values`` values and
``max_stored_bytes`` bytes (OpenDHT's 64 MiB); when a write would pass
either, the heaviest source's oldest values make room (OpenDHT's
``expireStore``), rather than an honest newcomer being refused. A node's
own publications count toward neither and are never evicted.

Bounded: at most :data:`MAX_EVICTIONS` evictions per write, each O(log n).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kadnode.core.store import Record

if TYPE_CHECKING:
    from kadnode.core.node import NodeCore

MAX_EVICTIONS = 16


def make_room(
    node: NodeCore, source: str, host: str, key: bytes, size: int, held: Record | None
) -> str | None:
    """None when a write of ``size`` bytes under ``key`` from ``source`` may be
    stored now (after evicting what must go); else why not, in one line."""
    store, cfg, stats = node.store, node.config, node.stats
    values, held_bytes = store.usage.of(source)
    if held is not None and held.source == source:
        values, held_bytes = values - 1, held_bytes - held.size
    if host not in node.exempt and (
        values + 1 > cfg.max_values_per_subnet or held_bytes + size > cfg.max_bytes_per_subnet
    ):
        stats["stores_refused_quota"] += 1
        return f"this node holds all it keeps for {source}"
    grows = size - (held.size if held is not None else 0)
    evictions = 0
    while store.usage.bytes + grows > cfg.max_stored_bytes or (
        held is None and len(store) >= cfg.max_stored_values
    ):
        heaviest = store.usage.heaviest()
        victim = store.oldest_from(heaviest) if heaviest is not None else None
        if victim is None or evictions >= MAX_EVICTIONS:
            stats["stores_refused"] += 1
            return "store full"
        store.delete(victim)
        evictions += 1
        stats["evicted"] += 1
    return None
