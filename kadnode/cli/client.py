"""Talk to a running daemon's control API, and the CLI commands that do. Does network I/O.

:class:`ApiClient` is a blocking urllib client returning the API's JSON dicts,
each checked against the route's schema (``kadnode.shell.api``), so a reply from an
incompatible daemon is one clear error rather than a KeyError later.
:func:`add_client_commands` and :func:`run_client_command` plug the commands
into the main argument parser; every failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kadnode.core.codec import check_value_size
from kadnode.core.ids import user_key
from kadnode.errors import ApiError, KadnodeError, LocalProtocolError
from kadnode.inputs import format_hostport, parse_hostport
from kadnode.shell import schemas
from kadnode.shell.apiguard import TOKEN_ENV
from kadnode.shell.datadir import TOKEN_FILE
from kadnode.shell.httpserver import ERROR_SCHEMA, JsonSchema, check_schema, one_line

DEFAULT_API = "127.0.0.1:8468"
# Straight to the daemon, never through $http_proxy: a proxy would not reach
# its loopback address, and would see its token.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
EXIT_OK, EXIT_MISSED, EXIT_ERROR = 0, 1, 2


class ApiClient:
    """A client for one daemon; ``base`` is its API address, HOST:PORT."""

    def __init__(
        self, base: str = DEFAULT_API, timeout: float = 30.0, token: str | None = None
    ) -> None:
        host, port = parse_hostport(base)
        self.base = base
        self.timeout = timeout
        self.token = token  # sent as a Bearer token (kadnode.shell.apiguard)
        self._url = f"http://{format_hostport(host, port)}"

    def info(self) -> dict[str, Any]:
        return self._call("GET", "/info", schemas.INFO_SCHEMA)

    def lookup(self, id_hex: str) -> dict[str, Any]:
        return self._call("GET", f"/lookup/{_segment(id_hex, 'id')}", schemas.LOOKUP_SCHEMA)

    def put(self, key: str, value: str) -> dict[str, Any]:
        path = f"/values/{_key(key)}"
        return self._call("PUT", path, schemas.PUT_SCHEMA, _value_body(value))

    def get(self, key: str) -> dict[str, Any]:
        """The value dict; ``found`` is false (not an error) for an unknown key."""
        path = f"/values/{_key(key)}"
        return self._call("GET", path, schemas.VALUE_SCHEMA, found_statuses=(200, 404))

    def register(self) -> dict[str, Any]:
        """Sign and store the daemon's peer record; below the write quorum is an ApiError."""
        return self._call("POST", "/register", schemas.REGISTER_SCHEMA)

    def find_peer(self, id_hex: str) -> dict[str, Any]:
        """The verified record dict; ``found`` is false (not an error) when none is held."""
        path = f"/peers/{_segment(id_hex, 'id')}/record"
        return self._call("GET", path, schemas.PEER_RECORD_SCHEMA, found_statuses=(200, 404))

    def put_shared(
        self, key: str, value: str, context: list[list[Any]] | None = None
    ) -> dict[str, Any]:
        """A vector-clocked write; ``context`` (from :meth:`get_shared`) resolves siblings."""
        body = _value_body(value)
        if context is not None:
            body["context"] = context
        return self._call("PUT", f"/shared/{_key(key)}", schemas.PUT_SCHEMA, body)

    def get_shared(self, key: str) -> dict[str, Any]:
        """Every sibling of a shared value; ``found`` is false (not an error) for none."""
        path = f"/shared/{_key(key)}"
        return self._call("GET", path, schemas.SHARED_SCHEMA, found_statuses=(200, 404))

    def peers(self) -> dict[str, Any]:
        return self._call("GET", "/peers", schemas.PEERS_SCHEMA)

    def ping(self, address: str) -> dict[str, Any]:
        return self._call("POST", "/ping", schemas.PING_SCHEMA, {"address": address})

    def owner(self, key: str) -> dict[str, Any]:
        return self._call("GET", f"/owner/{_key(key)}", schemas.OWNER_SCHEMA)

    def ring(self) -> dict[str, Any]:
        return self._call("GET", "/ring", schemas.RING_SCHEMA)

    def fault(self, delay_ms: str, jitter_ms: str | None = None) -> dict[str, Any]:
        """Chaos testing: delay what the daemon sends (it must allow fault injection)."""
        body = {"delay_ms": _milliseconds(delay_ms), "jitter_ms": _milliseconds(jitter_ms or "0")}
        return self._call("POST", "/fault", schemas.FAULT_SCHEMA, body)

    def leave(self) -> dict[str, Any]:
        """Hand the daemon's values on; the daemon stops once it has replied."""
        return self._call("POST", "/leave", schemas.LEAVE_SCHEMA)

    def _call(
        self,
        method: str,
        path: str,
        schema: JsonSchema,
        body: dict[str, Any] | None = None,
        found_statuses: tuple[int, ...] = (200,),
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self._url + path, data, headers, method=method)
        try:
            with _DIRECT.open(request, timeout=self.timeout) as reply:
                status, raw = reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (OSError, HTTPException) as exc:
            raise self._unreachable(exc) from None
        try:
            payload = json.loads(raw)
            check_schema(schema if status in found_statuses else ERROR_SCHEMA, payload, "reply")
        except (ValueError, LocalProtocolError) as exc:
            raise ApiError(f"unexpected reply from {self.base} (HTTP {status}): {exc}") from None
        if status in found_statuses:
            return payload
        raise (LocalProtocolError if status == 400 else ApiError)(payload["error"])

    def _unreachable(self, exc: OSError | HTTPException) -> ApiError:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionRefusedError):
            return ApiError(
                f"no kadnode daemon answering at {self.base} (start one with 'kadnode run')"
            )
        if isinstance(reason, TimeoutError):
            return ApiError(f"the daemon at {self.base} did not answer within {self.timeout:g} s")
        return ApiError(f"cannot talk to the daemon at {self.base}: {reason}")


def _segment(text: str, what: str) -> str:
    if not text:
        raise LocalProtocolError(f"the {what} cannot be empty")
    return quote(text, safe="")


def _key(key: str) -> str:
    """A key as a path segment, refused here (one line) when the daemon would refuse it."""
    user_key(key)
    return _segment(key, "key")


def _value_body(value: str) -> dict[str, Any]:
    """A value as a request body, refused here (one line) when over the daemon's limit."""
    check_value_size(value)
    return {"value": value}


# -- CLI commands ----------------------------------------------------------------------------


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
        "peers": r["peers"],
        "values": r["values"],
        "uptime": f"{r['uptime_s']:.0f} s",
        **dict(sorted(r["stats"].items())),
    }
    width = max(map(len, rows))
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows.items())


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
    return f"registered {r['key']}{at}: on {_held_by(r)}"


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
    return "\n".join(
        [
            f"{record['id']} seq {record['seq']}, signed by its key; verified addresses:",
            *(f"  {_address(a)}" for a in record["addresses"]),
            _replies(r),
        ]
    )


def _show_get_shared(r: dict[str, Any]) -> str:
    siblings = r["siblings"]
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


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LocalProtocolError(f"not a number of milliseconds: {text!r}") from None
    if not 0 <= value <= 60_000:
        raise LocalProtocolError(f"milliseconds must be 0..60000, not {text}")
    return value


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


def _never(_: dict[str, Any]) -> bool:
    return False


def _not_found(r: dict[str, Any]) -> bool:
    return not r["found"]


def _context(text: str | None) -> list[list[Any]] | None:
    """``--context``: the JSON context a ``get --shared`` printed."""
    if text is None:
        return None
    try:
        context = json.loads(text)
    except ValueError:
        raise LocalProtocolError(
            f"--context is not JSON: {text[:60]!r} (pass the context get --shared printed)"
        ) from None
    try:
        check_schema(schemas.CONTEXT, context, "--context")
    except LocalProtocolError as exc:
        raise LocalProtocolError(f"{exc} (want [[40-hex writer id, counter], ...])") from None
    return context


_Call = Callable[[ApiClient, argparse.Namespace], dict[str, Any]]


def _plain(call: _Call) -> _Call:
    """A plain-value command, which refuses ``--context`` (shared values only)."""

    def checked(client: ApiClient, args: argparse.Namespace) -> dict[str, Any]:
        if getattr(args, "context", None) is not None:
            raise LocalProtocolError("--context is for shared values: add --shared")
        return call(client, args)

    return checked


@dataclass(frozen=True, slots=True)
class _Command:
    help: str
    args: tuple[tuple[str, str], ...]
    call: _Call
    show: Callable[[dict[str, Any]], str]
    missed: Callable[[dict[str, Any]], bool] = _never  # exit 1: a reply, but no answer
    # With --shared, this command's call, show and missed act on shared
    # (vector-clocked) values instead (its help and args are the outer one's).
    shared: _Command | None = None
    # Extra options: (flag, metavar, help); each takes one value.
    options: tuple[tuple[str, str, str], ...] = ()


_COMMANDS = {
    "info": _Command(
        "show this node's id, address and counters", (), lambda c, a: c.info(), _show_info
    ),
    "lookup": _Command(
        "find a node by id",
        (("id", "160-bit id, 40 hex digits"),),
        lambda c, a: c.lookup(a.id),
        _show_lookup,
        _not_found,
    ),
    "put": _Command(
        "store a value under a key",
        (("key", "any text"), ("value", "the value to store")),
        _plain(lambda c, a: c.put(a.key, a.value)),
        _show_put,
        shared=_Command(
            "",
            (),
            lambda c, a: c.put_shared(a.key, a.value, _context(a.context)),
            _show_put,
        ),
        options=(
            (
                "--context",
                "JSON",
                "with --shared: the context get --shared printed; the write supersedes "
                "the siblings that read saw (default: a blind write)",
            ),
        ),
    ),
    "get": _Command(
        "fetch the value of a key",
        (("key", "any text"),),
        lambda c, a: c.get(a.key),
        _show_get,
        _not_found,
        shared=_Command("", (), lambda c, a: c.get_shared(a.key), _show_get_shared, _not_found),
    ),
    "register": _Command(
        "sign and store this node's peer record",
        (),
        lambda c, a: c.register(),
        _show_register,
    ),
    "find-peer": _Command(
        "find a node's verified address (its signed peer record)",
        (("id", "160-bit id, 40 hex digits"),),
        lambda c, a: c.find_peer(a.id),
        _show_find_peer,
        _not_found,
    ),
    "peers": _Command("list the routing table's contacts", (), lambda c, a: c.peers(), _show_peers),
    "ping": _Command(
        "ping a node",
        (("address", "HOST:PORT or [IPv6]:PORT"),),
        lambda c, a: c.ping(a.address),
        _show_ping,
        lambda r: not r["alive"],
    ),
    "owner": _Command(
        "show a key's owner on the ring and its k closest nodes",
        (("key", "any text"),),
        lambda c, a: c.owner(a.key),
        _show_owner,
        lambda r: r["successor"] is None,
    ),
    "ring": _Command(
        "show this node's place on the Chord ring",
        (),
        lambda c, a: c.ring(),
        _show_ring,
    ),
    "fault": _Command(
        "chaos testing: delay every datagram the daemon sends (needs --allow-fault-injection)",
        (("delay_ms", "milliseconds each datagram waits; 0 clears the fault"),),
        lambda c, a: c.fault(a.delay_ms, a.jitter_ms),
        _show_fault,
        options=(("--jitter-ms", "MS", "spread the delay by up to this much either way"),),
    ),
    "leave": _Command(
        "hand this node's values on, then stop the daemon",
        (),
        lambda c, a: c.leave(),
        _show_leave,
        lambda r: bool(r.get("timed_out")),
    ),
}


def add_client_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the API commands; each sets ``client_command`` for :func:`run_client_command`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api",
        default=os.environ.get("KADNODE_API", DEFAULT_API),
        metavar="HOST:PORT",
        help="the daemon's control API (default: $KADNODE_API or %(default)s)",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON reply")
    common.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="the daemon's data directory, where its API token is (default: $KADNODE_DATA_DIR"
        f" or %(default)s; ${TOKEN_ENV} instead, if set)",
    )
    for name, command in _COMMANDS.items():
        parser = subparsers.add_parser(name, parents=[common], help=command.help)
        for arg, arg_help in command.args:
            parser.add_argument(arg, help=arg_help)
        if command.shared is not None:
            parser.add_argument(
                "--shared",
                action="store_true",
                help="a shared value: several writers, vector clocks, concurrent writes kept "
                "as siblings",
            )
        for flag, metavar, option_help in command.options:
            parser.add_argument(flag, metavar=metavar, help=option_help)
        parser.set_defaults(client_command=name)


def default_data_dir() -> Path:
    """``run``'s data directory, and where API commands look for its token."""
    return Path(os.environ.get("KADNODE_DATA_DIR") or "kadnode-data")


def api_token(data_dir: Path) -> str | None:
    """The token to send: $KADNODE_API_TOKEN, else the one in ``data_dir``, else
    none (reads on loopback need none; the daemon says so if a call does)."""
    chosen = os.environ.get(TOKEN_ENV)
    if chosen is not None:
        return chosen.strip()
    try:
        return (data_dir / TOKEN_FILE).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def run_client_command(args: argparse.Namespace) -> int:
    """Run one API command: 0 done; 1 a reply without an answer (key, node or record not
    found, no reply to ping, no ring owner reached, leave timed out); 2 error (a write
    below its quorum included)."""
    command = _COMMANDS[args.client_command]
    if getattr(args, "shared", False) and command.shared is not None:
        command = command.shared
    try:
        result = command.call(ApiClient(args.api, token=api_token(args.data_dir)), args)
    except KadnodeError as exc:
        if args.json:  # a script reading stdout gets an object, not nothing
            print(json.dumps({"error": one_line(exc)}, indent=2))
        print(f"kadnode: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(result, indent=2) if args.json else command.show(result))
    return EXIT_MISSED if command.missed(result) else EXIT_OK
