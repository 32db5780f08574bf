"""Trace stories: a small script run on the simulated network, and the decoded
message trace it produced (etcd raft's ``testdata``, for kadnode). No real I/O.

A story file is paragraphs separated by blank lines: command lines (and
``#`` comments), a line ``----``, then the output the commands must produce.
A paragraph of comments alone is prose. From tests/testdata/join.txt::

    join-all via n1
    ----
    +0.010 n2 -> n1 ping
    +0.020 n1 -> n2 pong
    +0.030 n2 -> n1 find_node n2
    +0.040 n1 -> n2 nodes []
    ...
    => join n2 (0.060 s): 1 of 1 seeds answered, 1 contacts

A trace line is one datagram, ``+TIME SRC -> DEST MESSAGE``, written when it
is delivered or dropped (``(dropped)``: a partition, a crashed sender or
receiver); TIME is virtual seconds since the command began. A request shows
its wire method and arguments (``(again)``: a retransmission; ``[token]``
or ``[padded]``: how it proves its sender's address, kadnode.core.proof), a
reply is read as the answer to the request it matches. Nodes are n1, n2... in order of
creation, a key is the name a command gave it, another id its first 4 hex
digits (``n2+1``: the id after n2's). ``=> ...`` is what the command reports:
an operation's result, after how long it came (virtual seconds).

Commands: ``add-nodes N [seed=S] [k=K] [alpha=A]`` (the first makes the
network: seeded, 10 ms constant latency, no loss); ``join nX via nY[,nZ]``;
``join-all via nY`` (every other node, in turn); ``put nX key=value``;
``get nX key``; ``lookup nX nY`` (find nY's id); ``leave nX`` (hand its values
over, then crash); ``holders key`` (the stores that hold it, and its value
there); ``partition n1,n2 | n3,n4`` (nodes not named form one more group);
``heal``; ``kill nX[,nY]``; ``restart nX`` (same id and store, empty memory:
join it again); ``run SECONDS`` (timer-driven traffic). Ending a command with
``quiet`` prints a count of datagrams instead of each. Every command ends
once its operation has completed and no datagram is in flight, or reports
that it timed out after :data:`LIMIT` virtual seconds.

``python -m kadnode.sim.script FILE... [--rewrite]`` prints each story with
its actual output, or writes that into the file.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

from kadnode.config import Config
from kadnode.core import codec, events
from kadnode.core import messages as m
from kadnode.core.antientropy import EMPTY
from kadnode.core.ids import key_digest
from kadnode.core.node import NodeCore
from kadnode.errors import DecodeError, KadnodeError
from kadnode.sim.network import SimNetwork

SEPARATOR = "----"
LIMIT = 60.0  # virtual seconds a command may run
OPTIONS = ("seed", "k", "alpha")  # of add-nodes


class ScriptError(KadnodeError):
    """A story line that is not a valid command."""


class Story:
    """One network, the names of what is in it, and the trace being written."""

    def __init__(self) -> None:
        self._net: SimNetwork | None = None
        self.names: dict[int, str] = {}  # node ids and key ids
        # Requests seen, to read replies by: (requester, responder, msg_id).
        self.requests: dict[tuple[int, int | None, bytes], m.RequestMessage] = {}
        self.lines: list[str] = []
        self.began = 0.0
        self.quiet = False
        self.delivered = self.dropped = 0

    @property
    def net(self) -> SimNetwork:
        if self._net is None:
            raise ScriptError("no network yet: add-nodes first")
        return self._net

    # ---- running one command ------------------------------------------------------

    def run(self, line: str) -> list[str]:
        """Run one command line; returns its output lines."""
        words = line.split()
        self.quiet = len(words) > 1 and words[-1] == "quiet"
        if self.quiet:
            words.pop()
        command = getattr(Story, "do_" + words[0].replace("-", "_"), None)
        if command is None:
            raise ScriptError(f"unknown command {words[0]!r}")
        try:
            inspect.signature(command).bind(self, *words[1:])
        except TypeError:
            raise ScriptError(f"wrong arguments for {words[0]}") from None
        self.lines, self.delivered, self.dropped = [], 0, 0
        self.began = self._net.now if self._net is not None else 0.0
        try:
            command(self, *words[1:])
        except ScriptError:
            raise
        except KadnodeError as e:  # the core refused (a value too large...)
            self.report(f"error: {e}")
        if self.quiet:
            self.lines.insert(0, f"({self.delivered} datagrams delivered, {self.dropped} dropped)")
        return self.lines

    def report(self, text: str) -> None:
        self.lines.append(f"=> {text}")

    def operate(self, node: int, begin: Callable[[NodeCore, float], int], what: str) -> None:
        """Run an operation on node ``node`` until it completes and no datagram
        is in flight; report its result, or that it timed out."""
        net = self.net
        started, deadline = net.now, net.now + LIMIT
        key = net.start(net.cores[node], begin)
        try:
            result, done = net.finish(key, LIMIT)
        except TimeoutError:
            net.run_until(deadline)
            self.report(f"{what}: timed out after {LIMIT:g} s")
            return
        self.settle(deadline)
        self.report(f"{what} ({done - started:.3f} s): {self.outcome(result)}")

    def settle(self, deadline: float) -> None:
        """Deliver what is in flight, and what that causes, until ``deadline``."""
        net = self.net
        while net.sent - net.dropped - net.delivered > 0 and net.now < deadline and net.step():
            pass

    def outcome(self, r: object) -> str:
        match r:
            case events.BootstrapResult():
                return f"{r.answered} of {r.seeds} seeds answered, {r.table_size} contacts"
            case events.PutResult():
                met = "met" if r.quorum else "missed"
                refused = "".join(f"; refused: {reason}" for reason in r.refused)
                pending = f", {r.pending} pending" if r.pending else ""
                return (
                    f"{r.acks} of {r.replica_set} acknowledged {self.contacts(r.replicas)}"
                    f"{pending}, quorum {r.needed} {met}{refused}"
                )
            case events.GetResult():
                source = "own store" if r.source is None else self.name(r.source.node_id)
                found = f"{_value(r.value)} from {source}" if r.found else "not found"
                return f"{found}, {r.queried} queried, {r.hops} hops"
            case events.LookupResult():
                found = "found" if r.peer is not None else "not found"
                unheard = [c for c in r.closest if c.node_id in r.unheard]
                named = f" (only named: {self.contacts(unheard)})" if unheard else ""
                return (
                    f"{found}, closest {self.contacts(r.closest)}{named}; {r.queried} queried,"
                    f" {r.answered} answered, {r.failed} failed, {r.hops} hops"
                )
            case events.LeaveResult():
                return f"{r.keys} keys, {r.acks} of {r.stores} stores acknowledged"
        raise AssertionError(r)

    # ---- watching datagrams -----------------------------------------------------------

    def observe(self, now: float, src: int, dest: int | None, data: bytes, delivered: bool):
        """The network's observer: counts every datagram, and writes its line."""
        if delivered:
            self.delivered += 1
        else:
            self.dropped += 1
        text, again = self.datagram(src, dest, data)
        if not self.quiet:
            marks = ["again"] * again + ["dropped"] * (not delivered)
            shown = f" ({', '.join(marks)})" if marks else ""
            self.lines.append(f"+{now - self.began:.3f} {text}{shown}")

    def datagram(self, src: int, dest: int | None, data: bytes) -> tuple[str, bool]:
        """The datagram as a line, and whether it repeats a request (same id)."""
        head = f"{_n(src)} -> {'?' if dest is None else _n(dest)}"
        try:
            decoded = codec.decode(data, self.net.config.max_datagram)
            if type(decoded) is codec.Request:
                seen = (src, dest, decoded.msg_id)
                again = seen in self.requests
                message = decoded.message
                self.requests[seen] = message
                proof = getattr(message, "proof", None)
                shown = "" if proof is None else " [token]" if len(proof) == 8 else " [padded]"
                return f"{head} {_REQUESTS[type(message)](self, message)}{shown}", again
            request = self.requests.get((dest, src, decoded.msg_id))  # type: ignore[arg-type]
            if request is None:
                return f"{head} reply to no request seen", False
            reply = codec.decode_reply(request, decoded.body)
            if type(reply) is m.Ack:  # taken or refused: a store, or a goodbye
                said = "stored" if type(request) is m.Store else "bye"
                return f"{head} {said if reply.ok else 'refused'}", False
            return f"{head} {_REPLIES[type(reply)](self, reply, src)}", False
        except DecodeError as e:
            return f"{head} undecodable: {e}", False

    # ---- names --------------------------------------------------------------------

    def name(self, ident: int) -> str:
        known = self.names.get(ident)
        if known is not None:
            return known
        before = self.names.get(ident - 1)
        return f"{before}+1" if before is not None else f"{ident:040x}"[:4]

    def key(self, key: bytes) -> str:
        return self.name(int.from_bytes(key, "big"))

    def contacts(self, contacts: list[m.Contact]) -> str:
        return _list(self.name(c.node_id) for c in contacts)

    def node(self, word: str) -> int:
        """The index of node ``nX``."""
        count = len(self.net.cores)
        if word[:1] != "n" or not word[1:].isdigit() or not 1 <= int(word[1:]) <= count:
            raise ScriptError(f"no node {word!r} (n1..n{count})")
        return int(word[1:]) - 1

    def nodes(self, words: str) -> list[int]:
        return [self.node(w) for w in words.split(",") if w]

    def key_named(self, name: str) -> bytes:
        digest = key_digest(name)
        self.names[int.from_bytes(digest, "big")] = name
        return digest

    # ---- the commands -------------------------------------------------------------

    def do_add_nodes(self, count: str, *options: str) -> None:
        settings = dict(_option(o) for o in options)
        if self._net is None:
            seed = settings.pop("seed", 0)
            self._net = SimNetwork(seed=seed, config=Config(**settings), observer=self.observe)
        elif settings:
            raise ScriptError("only the first add-nodes takes options")
        added = []
        for _ in range(int(count)):
            core = self.net.add_node()
            name = self.names[core.id] = _n(len(self.net.cores) - 1)
            added.append(f"{name}={core.id:040x}"[: len(name) + 5])
        self.report(" ".join(added))

    def do_join(self, who: str, via: str, seeds: str) -> None:
        _expect(via, "via", "join nX via nY")
        self.bootstrap(self.node(who), self.nodes(seeds))

    def do_join_all(self, via: str, seed: str) -> None:
        _expect(via, "via", "join-all via nY")
        first = self.node(seed)
        for i in range(len(self.net.cores)):
            if i != first:
                self.bootstrap(i, [first])

    def bootstrap(self, node: int, seeds: list[int]) -> None:
        addrs = [self.net.addrs[i] for i in seeds]
        self.operate(node, lambda c, now: c.bootstrap(addrs, now), f"join {_n(node)}")

    def do_put(self, who: str, pair: str) -> None:
        name, _, value = pair.partition("=")
        key = self.key_named(name)
        self.operate(self.node(who), lambda c, now: c.put(key, value, now), f"put {name}")

    def do_get(self, who: str, name: str) -> None:
        key = self.key_named(name)
        self.operate(self.node(who), lambda c, now: c.get(key, now), f"get {name}")

    def do_lookup(self, who: str, whom: str) -> None:
        target = self.net.cores[self.node(whom)].id
        begin = lambda c, now: c.lookup(target, now)  # noqa: E731
        self.operate(self.node(who), begin, f"lookup {self.name(target)}")

    def do_leave(self, who: str) -> None:
        node = self.node(who)
        self.operate(node, lambda c, now: c.leave(now), f"leave {_n(node)}")
        self.net.kill([self.net.addrs[node]])

    def do_holders(self, name: str) -> None:
        net, key = self.net, self.key_named(name)
        held = [
            f"{_n(i)}={_value(record.value)}" + (" (down)" if net.addrs[i] in net.down else "")
            for i, core in enumerate(net.cores)
            if (record := core.store.get(key)) is not None and record.expires_at > net.now
        ]
        self.report(f"{name} held by {', '.join(held) or 'nobody'}")

    def do_partition(self, *words: str) -> None:
        groups = [self.nodes(g) for g in "".join(words).split("|")]
        self.net.partition([self.net.addrs[i] for i in g] for g in groups)
        named = {i for g in groups for i in g}
        rest = [i for i in range(len(self.net.cores)) if i not in named]
        shown = [_names(g) for g in ([*groups, rest] if rest else groups)]
        self.report("partitioned: " + " | ".join(shown))

    def do_heal(self) -> None:
        self.net.heal()
        self.report("healed")

    def do_kill(self, who: str) -> None:
        nodes = self.nodes(who)
        self.net.kill(self.net.addrs[i] for i in nodes)
        self.report(f"killed {_names(nodes)}")

    def do_restart(self, who: str) -> None:
        node = self.node(who)
        self.net.restart(self.net.addrs[node])
        self.report(f"restarted {_n(node)}")

    def do_run(self, seconds: str) -> None:
        net = self.net
        net.run_until(net.now + float(seconds))
        self.settle(net.now + LIMIT)
        self.report(f"ran {float(seconds):g} s")


# How each message reads in a trace line: one table each way, like the codec's.
_REQUESTS: dict[type, Callable[[Story, Any], str]] = {
    m.Ping: lambda s, q: "ping",
    m.FindNode: lambda s, q: f"find_node {s.name(q.target)}",
    m.FindValue: lambda s, q: f"find_value {s.key(q.key)}",
    m.Has: lambda s, q: f"kn_has {s.key(q.key)}",
    m.Store: lambda s, q: f"store {s.key(q.key)}={_value(q.value)}{_ttl(q.ttl)}",
    m.Put: lambda s, q: f"kn_put {s.key(q.key)} {q.kind.label}{_ttl(q.ttl)}",
    m.RingQuery: lambda s, q: "kn_ring" if q.seen is None else "kn_ring seen",
    m.Goodbye: lambda s, q: "kn_bye",
    m.FindSuccessor: lambda s, q: f"kn_find_successor {s.name(q.key)}",
    m.Digest: lambda s, q: f"kn_digest {sum(h != EMPTY for h in q.hashes)} buckets",
    m.KeyList: lambda s, q: (
        f"kn_keys buckets {_list(q.buckets)} keys {_list(s.key(k) for k, _ in q.entries)}"
    ),
}
# A reply's line may name its sender (``src``): a successor reply naming no node.
_REPLIES: dict[type, Callable[[Story, Any, int], str]] = {
    m.PingReply: lambda s, r, src: "pong",
    m.NodesReply: lambda s, r, src: f"nodes {s.contacts(r.contacts)}",
    m.ValueReply: lambda s, r, src: (
        f"value {_value(r.value)}{'' if r.kind == m.Kind.PLAIN else ' ' + r.kind.label}"
        f"{_ttl(r.ttl)}"
    ),
    m.PutReply: lambda s, r, src: "taken" if r.reason is None else f"refused: {r.reason}",
    m.RingReply: lambda s, r, src: (
        "ring unchanged"
        if r.unchanged
        else f"ring pred={'-' if r.predecessor is None else s.name(r.predecessor.node_id)}"
        f" succ={s.contacts(r.successors)}"
    ),
    m.SuccessorReply: lambda s, r, src: (
        f"{'successor' if r.done else 'next hop'}"
        f" {_n(src) if r.node is None else s.name(r.node.node_id)}"
    ),
    m.BucketList: lambda s, r, src: f"buckets {_list(r.indices)}",
}


def _n(index: int) -> str:
    return f"n{index + 1}"


def _names(indices: Iterable[int]) -> str:
    return " ".join(_n(i) for i in indices)


def _expect(word: str, wanted: str, usage: str) -> None:
    if word != wanted:
        raise ScriptError(f"usage: {usage}")


def _option(word: str) -> tuple[str, int]:
    name, sep, value = word.partition("=")
    if not sep or name not in OPTIONS or not value.isdigit():
        raise ScriptError(f"bad option {word!r} (add-nodes takes {', '.join(OPTIONS)})")
    return name, int(value)


def _value(value: object) -> str:
    return value if isinstance(value, str) and value and " " not in value else repr(value)


def _ttl(ttl: float | None) -> str:
    return "" if ttl is None else f" ttl={ttl:.0f}"


def _list(items: Iterable[object]) -> str:
    return "[" + " ".join(str(i) for i in items) + "]"


# ---- story files ----------------------------------------------------------------------


def paragraphs(text: str) -> Iterator[list[tuple[int, str]]]:
    """Runs of non-blank lines, each line with its number (from 1)."""
    numbered = enumerate(text.splitlines(), start=1)
    for blank, run in groupby(numbered, key=lambda pair: not pair[1].strip()):
        if not blank:
            yield [(number, line.rstrip()) for number, line in run]


def run_story(text: str) -> str:
    """The story ``text`` with each expected output replaced by the actual one."""
    story = Story()
    out = []
    for para in paragraphs(text):
        lines = [line for _, line in para]
        script = para[: lines.index(SEPARATOR)] if SEPARATOR in lines else para
        block = [line for _, line in script]
        commands = [(n, line) for n, line in script if not line.startswith("#")]
        if commands:
            block.append(SEPARATOR)
        for number, line in commands:
            try:
                block += story.run(line)
            except ScriptError as e:
                raise ScriptError(f"line {number}: {line}: {e}") from None
        out.append("\n".join(block))
    return "\n\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kadnode.sim.script", description="Run trace stories."
    )
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--rewrite", action="store_true", help="write the output into the files")
    args = parser.parse_args(argv)
    for path in args.files:
        try:
            actual = run_story(path.read_text())
        except (OSError, ScriptError) as e:
            print(f"{path}: {e}", file=sys.stderr)
            return 1
        if args.rewrite:
            path.write_text(actual)
        else:
            sys.stdout.write(actual)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
