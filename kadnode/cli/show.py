"""How each reply of the control API reads to a person: one function per
operation, in :data:`SHOW`; an operation not named there prints its JSON. No I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kadnode.core import records
from kadnode.inputs import format_hostport


def _address(contact: dict[str, Any]) -> str:
    return format_hostport(contact["host"], contact["port"])


def _contact(contact: dict[str, Any]) -> str:
    unheard = "  (known only from others' replies)" if contact.get("answered") is False else ""
    return f"{contact['id']}  {_address(contact)}{unheard}"


def _contacts(contacts: list[dict[str, Any]]) -> list[str]:
    return [f"  {_contact(c)}" for c in contacts]


def _show_info(r: dict[str, Any]) -> str:
    rows = {
        "id": r["id"],
        "address": _address(r),
        "network": r.get("network_id") or "default",
        "peers": r["peers"],
        "values": r["values"],
        "uptime": f"{r['uptime_s']:.0f} s",
        **_clock_step(r.get("clock_step_s")),
        **_reach_rows(r.get("reach")),
        **dict(sorted(r["stats"].items())),
    }
    width = max(map(len, rows))
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows.items())


def _reach_rows(reach: dict[str, Any] | None) -> dict[str, str]:
    """The address peers see, and whether others can reach the node."""
    if reach is None:
        return {}
    seen = reach["observed"]
    observed = (
        f"{_address(seen)} (peers on {reach['observers']} subnets agree)"
        if seen
        else f"not yet agreed ({reach['votes']} subnets have answered)"
    )
    nat = f"behind NAT, {reach['reachability']}" if reach["nat"] else "not behind NAT"
    return {"observed": observed, "mode": f"{reach['mode']} ({nat})"}


def _show_doctor(r: dict[str, Any]) -> str:
    lines = []
    for c in r["checks"]:
        lines.append(f"{c['verdict'].upper():<4}  {c['check']}: {c['finding']}")
        if c["advice"]:
            lines.append(f"      -> {c['advice']}")
    return "\n".join(lines)


def _clock_step(step: float | None) -> dict[str, str]:
    """A row only when the wall clock stepped by a second or more since the start."""
    if step is None or abs(step) < 1.0:
        return {}
    return {"clock step": f"{step:+.0f} s since start (the node keeps its clock until restarted)"}


def _addresses(record: dict[str, Any]) -> str:
    return ", ".join(map(_address, record["addresses"]))


def _show_lookup(r: dict[str, Any]) -> str:
    took = f"{r['queried']} queried, {r['elapsed_ms']:.1f} ms"
    record = r.get("record")
    if record is not None:
        took = f"signed record seq {record['seq']}; {took}"
    if r["found"]:
        return f"found {r['peer']['id']} at {_address(r['peer'])} ({took})"
    return "\n".join([f"not found: {r['target']} ({took}); closest:", *_contacts(r["closest"])])


def _show_put(r: dict[str, Any]) -> str:
    took = f"{r['elapsed_ms']:.1f} ms"
    if r.get("only_copy"):
        return (
            f"stored {r['key']!r} on this node only: it knows no other node,"
            f" so it holds the only copy ({took})"
        )
    head = f"stored {r['key']!r} on {_held_by(r)} ({took}); other replicas:"
    return "\n".join([head, *_contacts(r["replicas"])])


def _held_by(r: dict[str, Any]) -> str:
    """How many replicas hold a write, whether this node is one of them, and
    how many writes were still on their way when the quorum was reached."""
    mine = ", this one among them" if r.get("local") else ""
    more = f", {r['pending']} more being written" if r.get("pending") else ""
    return f"{r['stored']} nodes{mine}{more}"


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _show_get(r: dict[str, Any]) -> str:
    if not r["found"]:
        return f"not found: {r['key']!r}"
    return _value(r["value"])


def _show_register(r: dict[str, Any]) -> str:
    record = r["record"]
    at = f" at {_addresses(record)} (seq {record['seq']})" if record else ""
    refused = records.refusals(r.get("refused") or [])
    return f"registered {r['key']}{at}: on {_held_by(r)}" + (f"; {refused}" if refused else "")


def _show_deregister(r: dict[str, Any]) -> str:
    seq = f" (seq {r['record']['seq']})" if r["record"] else ""
    return f"deregistered {r['key']}{seq}: a signed tombstone on {_held_by(r)}"


def _replies(r: dict[str, Any]) -> str:
    """How a quorum read went, in one line."""
    line = f"{r['answered']} of {r['replicas']} replicas answered, {r['repaired']} repaired"
    if r["rejected"]:
        line += f", {r['rejected']} invalid versions rejected"
    if not r["quorum"]:
        line += f"; below the read quorum of {r['needed']}"
    return f"{line} ({r['elapsed_ms']:.1f} ms)"


def _show_find_peer(r: dict[str, Any]) -> str:
    record = r["record"]
    if record is None:
        return f"not found: no valid record for {r['id']}; {_replies(r)}"
    if r["left"]:
        return f"not found: {r['id']} left the network (seq {record['seq']}); {_replies(r)}"
    return "\n".join(
        [
            f"{record['id']} seq {record['seq']}, signed by its key; verified addresses:",
            *(f"  {_address(a)}" for a in record["addresses"]),
            *(
                ["behind NAT; its relays (peers it keeps a binding with):"]
                + [f"  {_contact(c)}" for c in record["relays"]]
                if record.get("relays")
                else []
            ),
            _replies(r),
        ]
    )


def _show_get_shared(r: dict[str, Any]) -> str:
    siblings = r["siblings"]
    if r["deleted"]:
        return f"deleted: every version of {r['key']!r} the replicas hold is a delete"
    if not r["found"]:
        return f"not found: {r['key']!r}"
    if len(siblings) == 1:
        return _value(siblings[0]["value"])
    context = json.dumps(r["context"], separators=(",", ":"))
    return "\n".join(
        [
            f"{len(siblings)} concurrent values (siblings); to resolve them, put --shared "
            "with --context:",
            *(f"  {_value(s['value'])}" for s in siblings),
            f"context: {context}",
        ]
    )


def _named(r: dict[str, Any]) -> str:
    salt = f", salt {r['salt']!r}" if r["salt"] else ""
    return f"{r['public_key']}{salt}"


def _show_put_signed(r: dict[str, Any]) -> str:
    return (
        f"signed version {r['seq']} of {_named(r)} (key {r['key']}) stored on {_held_by(r)}"
        f" ({r['elapsed_ms']:.1f} ms)"
    )


def _show_delete_signed(r: dict[str, Any]) -> str:
    return (
        f"deleted {_named(r)}: signed version {r['seq']}, a tombstone, stored on {_held_by(r)}"
        f" ({r['elapsed_ms']:.1f} ms)"
    )


def _show_delete_shared(r: dict[str, Any]) -> str:
    return (
        f"deleted {r['key']!r}: a tombstone superseding what the read saw, stored on"
        f" {_held_by(r)} ({r['elapsed_ms']:.1f} ms)"
    )


def _show_exists(r: dict[str, Any]) -> str:
    took = f"({r['holding']} nodes held a version, {r['queried']} asked, {r['elapsed_ms']:.1f} ms)"
    if r["exists"]:
        return f"exists: {r['key']!r} holds a {r['kind']} value {took}"
    if r["deleted"]:
        return f"not found: {r['key']!r} was deleted (its newest {r['kind']} version) {took}"
    return f"not found: {r['key']!r} {took}"


def _show_delete(r: dict[str, Any]) -> str:
    return (
        f"dropped this node's copy of {r['key']!r} and stopped republishing it; the other"
        f" replicas keep theirs until they expire (at most {r['replicas_keep_it_h']:g} h)"
    )


def _show_get_signed(r: dict[str, Any]) -> str:
    if r["deleted"]:
        return f"deleted: version {r['seq']} of {_named(r)} is its owner's delete"
    if not r["found"]:
        return f"not found: no valid version of {_named(r)}; {_replies(r)}"
    return _value(r["value"])


def _show_peers(r: dict[str, Any]) -> str:
    lines = [
        f"{line}  failures {p['failures']}  seen {p['last_seen_s']:.0f} s ago"
        for line, p in zip(_contacts(r["peers"]), r["peers"], strict=True)
    ]
    return "\n".join([f"{r['count']} peers", *lines])


def _show_ping(r: dict[str, Any]) -> str:
    if not r["alive"]:
        return f"no reply from {_address(r)}"
    return f"reply from {_address(r)}: id {r['id']}, {r['rtt_ms']:.2f} ms"


def _show_owner(r: dict[str, Any]) -> str:
    """Both answers, each under the question it answers (the reply names them)."""
    hops = f"{r['successor_hops']} hops"
    if r["successor"] is None:
        successor = f"  unknown: Chord routing failed after {hops}"
    else:
        successor = f"  {_contact(r['successor'])}  ({hops})"
    return "\n".join(
        [
            f"key {r['key']!r} is SHA-1 {r['key_id']} ({r['elapsed_ms']:.1f} ms)",
            f"ring owner: {r['questions']['successor']}",
            successor,
            f"k closest: {r['questions']['closest']}",
            *(_contacts(r["closest"]) or ["  none known"]),
        ]
    )


def _show_ring(r: dict[str, Any]) -> str:
    pred = r["predecessor"]
    width = max((len(str(f["index"])) for f in r["fingers"]), default=1)
    return "\n".join(
        [
            f"predecessor  {_contact(pred) if pred else 'none known'}",
            f"self         {_contact(r['self'])}",
            f"successors   {len(r['successors'])}, nearest clockwise first",
            *(_contacts(r["successors"]) or ["  none known"]),
            f"fingers      {len(r['fingers'])}; finger i: the first node at or after self + 2^i",
            *(f"  {f['index']:>{width}}  {_contact(f)}" for f in r["fingers"]),
        ]
    )


def _show_fault(r: dict[str, Any]) -> str:
    if not r["delay_ms"]:
        return "fault injection cleared: datagrams go out at once"
    return (
        f"every datagram now waits {r['delay_ms']:g} ms +- {r['jitter_ms']:g} ms ({r['mechanism']})"
    )


def _show_leave(r: dict[str, Any]) -> str:
    if r.get("timed_out"):
        return (
            f"the hand-off did not finish within {r['elapsed_ms'] / 1000:.1f} s: some values "
            "may not have been handed on; the daemon is stopping"
        )
    said = f"; {r['goodbyes']} nodes took its goodbye" if r.get("goodbyes") is not None else ""
    return (
        f"handed {r['keys']} keys to the nodes now responsible ({r['stores']} stores, "
        f"{r['acks']} acknowledged){said}; the daemon is stopping"
    )


def _line(value: Any) -> str:
    """A value on one line: text as it is, unless it holds a line break; else JSON."""
    one = isinstance(value, str) and (value.splitlines() or [""]) == [value]
    return value if one else json.dumps(value, ensure_ascii=False)


def _show_watch(r: dict[str, Any]) -> str:
    return _line(r["value"]) if r["found"] else f"not found: {r['key']!r}"


def _show_watch_shared(r: dict[str, Any]) -> str:
    values = [s["value"] for s in r["siblings"]]
    if r["deleted"]:
        return f"deleted: {r['key']!r}"
    if not r["found"]:
        return f"not found: {r['key']!r}"
    if len(values) == 1:
        return _line(values[0])
    return f"{len(values)} concurrent values: {json.dumps(values, ensure_ascii=False)}"


def _show_watch_signed(r: dict[str, Any]) -> str:
    if r["deleted"]:
        return f"version {r['seq']}: deleted by its owner"
    if not r["found"]:
        return f"not found: no valid version of {_named(r)}"
    return f"version {r['seq']}: {_line(r['value'])}"


# How each operation's reply reads to a person; one not named prints its JSON.
SHOW: dict[str, Callable[[dict[str, Any]], str]] = {
    "info": _show_info,
    "doctor": _show_doctor,
    "lookup": _show_lookup,
    "put": _show_put,
    "put_shared": _show_put,
    "get": _show_get,
    "get_shared": _show_get_shared,
    "put_signed": _show_put_signed,
    "get_signed": _show_get_signed,
    "delete_signed": _show_delete_signed,
    "delete_shared": _show_delete_shared,
    "delete": _show_delete,
    "register": _show_register,
    "deregister": _show_deregister,
    "find_peer": _show_find_peer,
    "peers": _show_peers,
    "ping": _show_ping,
    "exists": _show_exists,
    "owner": _show_owner,
    "ring": _show_ring,
    "fault": _show_fault,
    "leave": _show_leave,
    # One line for each version a watch streams.
    "watch": _show_watch,
    "watch_shared": _show_watch_shared,
    "watch_signed": _show_watch_signed,
}
