"""Talk to a running daemon's control API, and the CLI commands that do. Does network I/O.

:class:`ApiClient` calls every operation declared in
:mod:`kadnode.shell.api` over httpx and returns its reply, validated
by the operation's reply model, so a reply from an incompatible daemon is one
clear error rather than a KeyError later. :func:`add_client_commands` derives
a CLI command from each declaration that names one, and
:func:`run_client_command` runs it; every failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel, ValidationError

from kadnode.cli.show import SHOW
from kadnode.errors import ApiError, KadnodeError, LocalProtocolError
from kadnode.inputs import at_least, format_hostport, parse_hostport
from kadnode.shell.api import BY_NAME, OPERATIONS
from kadnode.shell.apiguard import TOKEN_ENV
from kadnode.shell.datadir import TOKEN_FILE
from kadnode.shell.messages import Error, first_error, one_line
from kadnode.shell.operations import Operation
from kadnode.shell.streams import EVENT_STREAM, events

DEFAULT_API = "127.0.0.1:8468"
EXIT_OK, EXIT_MISSED, EXIT_ERROR = 0, 1, 2


def signature(operation: Operation) -> inspect.Signature:
    """How its client method is called: its path parameters and required body
    fields, then its query parameters and optional body fields, which default
    to None."""
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    required = [p.name for p in operation.params]
    optional = [p.name for p in operation.query]
    for name, field in (operation.body.model_fields if operation.body else {}).items():
        (required if field.is_required() else optional).append(name)
    return inspect.Signature(
        [inspect.Parameter(name, positional) for name in required]
        + [inspect.Parameter(name, positional, default=None) for name in optional]
    )


def _refused(exc: BaseException | None) -> bool:
    """A ConnectionRefusedError somewhere under httpx's (and httpcore's) errors."""
    while exc is not None:
        if isinstance(exc, ConnectionRefusedError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class ApiClient:
    """A client for one daemon; ``base`` is its API address, HOST:PORT.

    Each operation is a method of its name, called as :func:`signature` says:
    ``client.put("greeting", "hello")``,
    ``client.put_shared(key, value, context=...)``. Calls go straight to the
    daemon, never through $http_proxy (a proxy would not reach its loopback
    address, and would see its token)."""

    def __init__(
        self, base: str = DEFAULT_API, timeout: float = 30.0, token: str | None = None
    ) -> None:
        host, port = parse_hostport(base)
        self.base = base
        self.timeout = timeout
        headers = {"Accept": "application/json"}
        if token is not None:  # sent as a Bearer token (kadnode.shell.apiguard)
            headers["Authorization"] = f"Bearer {token}"
        self._url = f"http://{format_hostport(host, port)}"
        self._headers = headers

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in BY_NAME:
            raise AttributeError(name)
        return partial(self.call, BY_NAME[name])

    def call(self, operation: Operation, *args: Any, **kwargs: Any) -> Any:
        """The operation's reply: a dict (``found`` false is a reply, not an
        error), or text. Refused here, in one line, what the daemon would refuse."""
        given = signature(operation).bind(*args, **kwargs).arguments  # else a TypeError
        path = operation.path
        for param in operation.params:
            text = given.pop(param.name)
            if not text:
                raise LocalProtocolError(f"the {param.name} cannot be empty")
            param.parse(text)
            path = path.replace(f"{{{param.name}}}", quote(text, safe=""))
        query = {}
        for param in operation.query:
            if (value := given.pop(param.name)) is not None:
                text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
                param.parse(text)
                query[param.name] = text
        if query:
            path += "?" + urlencode(query)
        body = None
        if operation.body is not None:
            try:
                body = operation.body.model_validate(
                    {k: v for k, v in given.items() if v is not None}
                ).model_dump(mode="json", exclude_unset=True)
            except ValidationError as exc:
                raise LocalProtocolError(first_error(exc)) from None
        if operation.stream:
            return self._events(operation, path)
        reply = self._send(operation.method, path, body)
        return self._answer(operation, reply)

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        with self._talking() as http:
            return http.request(method, self._url + path, json=body, headers=self._headers)

    def _events(self, operation: Operation, path: str) -> Iterator[dict[str, Any]]:
        """A stream's replies as they come. The stream ends only in an error: its
        ``error`` event, or the connection closing, is an ApiError."""
        assert operation.reply is not None
        headers = {**self._headers, "Accept": EVENT_STREAM}
        with self._talking() as http, http.stream("GET", self._url + path, headers=headers) as r:
            if r.status_code != 200:
                r.read()
                self._answer(operation, r)  # raises the refusal's one line
            for name, data in events(r.iter_lines()):
                if name == "error":
                    raise ApiError(self._decoded(Error, data, r.status_code)["error"])
                yield self._decoded(operation.reply, data, r.status_code)
        raise ApiError(f"the daemon at {self.base} closed the stream")

    @contextlib.contextmanager
    def _talking(self) -> Iterator[httpx.Client]:
        """An HTTP client for the daemon; what httpx raises, as one line."""
        try:
            with httpx.Client(trust_env=False, timeout=self.timeout) as http:
                yield http
        except httpx.TimeoutException:
            raise ApiError(
                f"the daemon at {self.base} did not answer within {self.timeout:g} s"
            ) from None
        except httpx.ConnectError as exc:
            if _refused(exc):
                raise ApiError(
                    f"no kadnode daemon answering at {self.base} (start one with 'kadnode run')"
                ) from None
            raise ApiError(f"cannot talk to the daemon at {self.base}: {exc}") from None
        except (httpx.HTTPError, OSError) as exc:
            raise ApiError(f"cannot talk to the daemon at {self.base}: {exc}") from None

    def _answer(self, operation: Operation, reply: httpx.Response) -> Any:
        status = reply.status_code
        answered = status == 200 or (
            operation.missed is not None and status == operation.missed_status
        )
        if answered and operation.reply is None:
            return reply.text
        payload = self._decoded(operation.reply if answered else Error, reply.text, status)
        if answered:
            return payload
        raise (LocalProtocolError if status == 400 else ApiError)(payload["error"])

    def _decoded(self, model: type[BaseModel], text: str, status: int) -> dict[str, Any]:
        """``text``, JSON, as ``model`` reads it; anything else is one line."""
        try:
            payload = model.model_validate(json.loads(text))
        except ValueError as exc:  # pydantic's ValidationError is one
            why = first_error(exc) if isinstance(exc, ValidationError) else "not JSON"
            raise ApiError(f"unexpected reply from {self.base} (HTTP {status}): {why}") from None
        return payload.model_dump(mode="json", exclude_unset=True)


# -- CLI commands ----------------------------------------------------------------------------


def commands() -> dict[str, list[Operation]]:
    """Each CLI command and the operations it runs: the plain one first, then
    its variants (``put --shared``)."""
    grouped: dict[str, list[Operation]] = {}
    for operation in OPERATIONS:
        if operation.command is not None:
            grouped.setdefault(operation.command, []).append(operation)
    for variants in grouped.values():
        variants.sort(key=lambda o: o.variant is not None)
    return grouped


def _fields(operation: Operation) -> dict[str, Any]:
    return dict(operation.body.model_fields) if operation.body else {}


def _positionals(operation: Operation) -> list[tuple[str, str]]:
    """The command's arguments: path parameters, then the body's required fields."""
    fields = [(n, f.description or n) for n, f in _fields(operation).items() if f.is_required()]
    return [(p.name, p.description) for p in operation.params] + fields


def _optional(operation: Operation) -> dict[str, str]:
    """The command's options: query parameters and the body's optional fields, with their help."""
    fields = {n: f.description or n for n, f in _fields(operation).items() if not f.is_required()}
    return {p.name: p.description for p in operation.query} | fields


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


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
    for name, variants in commands().items():
        plain = variants[0]
        parser = subparsers.add_parser(name, parents=[common], help=plain.help)
        # Variants whose arguments differ (put KEY VALUE, put --signed VALUE)
        # take them in order: each optional here, counted when the command runs.
        alike = all(_positionals(o) == _positionals(plain) for o in variants)
        for arg, arg_help in max((_positionals(o) for o in variants), key=len):
            parser.add_argument(arg, help=arg_help, **({} if alike else {"nargs": "?"}))
        options: dict[str, str] = {}
        for operation in variants:
            if operation.variant is not None:
                parser.add_argument(
                    f"--{operation.variant}", action="store_true", help=operation.help
                )
            options |= _optional(operation)
        for option, option_help in options.items():
            parser.add_argument(_flag(option), metavar=option.upper(), help=option_help)
        if plain.stream:
            parser.add_argument(
                "--count",
                type=at_least(1),
                metavar="N",
                help="stop after N versions (default: until interrupted)",
            )
        parser.set_defaults(client_command=name, in_order=not alike)


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
    variants = commands()[args.client_command]
    chosen = [o for o in variants[1:] if getattr(args, o.variant or "", False)]
    if len(chosen) > 1:
        flags = " and ".join(f"--{o.variant}" for o in chosen)
        print(f"kadnode: error: {flags} cannot be combined", file=sys.stderr)
        return EXIT_ERROR
    operation = chosen[0] if chosen else variants[0]
    try:
        given = _arguments(operation, args.client_command, variants, args)
        result = ApiClient(args.api, token=api_token(args.data_dir)).call(operation, **given)
        if operation.stream:
            return _follow(operation, result, args)
    except KadnodeError as exc:
        if args.json:  # a script reading stdout gets an object, not nothing
            indent = None if operation.stream else 2  # a stream's are JSON lines
            print(json.dumps({"error": one_line(exc)}, indent=indent))
        print(f"kadnode: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    show = SHOW.get(operation.name, partial(json.dumps, indent=2))
    print(json.dumps(result, indent=2) if args.json else show(result))
    missed = operation.missed is not None and operation.missed(result)
    return EXIT_MISSED if missed else EXIT_OK


def _follow(
    operation: Operation, replies: Iterator[dict[str, Any]], args: argparse.Namespace
) -> int:
    """Print each version as it comes, a line each (flushed), until --count of them;
    otherwise only an error (exit 2) or Ctrl-C (130, kadnode.cli.main) ends it."""
    show = SHOW[operation.name]
    try:
        with contextlib.closing(replies):  # type: ignore[type-var]
            for seen, reply in enumerate(replies, 1):
                shown = json.dumps(reply) if args.json else show(reply)
                print(shown if args.json else f"{time.strftime('%H:%M:%S')}  {shown}", flush=True)
                if seen == args.count:
                    break
    except BrokenPipeError:  # the reader went away (| head -n 1): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _arguments(
    operation: Operation, command: str, variants: list[Operation], args: argparse.Namespace
) -> dict[str, Any]:
    """The call's arguments from the command line: text for a text field, JSON
    for any other (a number, the context ``get --shared`` printed)."""
    fields = _fields(operation)
    wanted = [name for name, _ in _positionals(operation)]
    if args.in_order:  # this variant's arguments, in the order given
        declared = max((_positionals(o) for o in variants), key=len)
        typed = [v for n, _ in declared if (v := getattr(args, n)) is not None]
        if len(typed) != len(wanted):
            flag = f" --{operation.variant}" if operation.variant else ""
            usage = " ".join(w.upper() for w in wanted)
            raise LocalProtocolError(f"{command}{flag} takes {usage}")
        given = dict(zip(wanted, typed, strict=True))
    else:
        given = {name: getattr(args, name) for name in wanted}
    for other in variants:
        for name in _optional(other).keys() - _optional(operation).keys():
            if getattr(args, name, None) is not None:
                raise LocalProtocolError(f"{_flag(name)} is only for {command} --{other.variant}")
    given |= {p.name: getattr(args, p.name) for p in operation.query}
    for name, info in fields.items():
        text = given[name] if name in given else getattr(args, name, None)
        if text is None or info.annotation is str:
            given[name] = text
            continue
        try:
            given[name] = json.loads(text)
        except ValueError:
            where = name if info.is_required() else _flag(name)
            raise LocalProtocolError(f"{where} is not JSON: {text[:60]!r}") from None
    if operation.body is not None:  # refused here, naming the argument as the user typed it
        try:
            operation.body.model_validate({k: given[k] for k in fields if given[k] is not None})
        except ValidationError as exc:
            error = exc.errors()[0]
            name, *inside = error["loc"]
            where = str(name) if fields[str(name)].is_required() else _flag(str(name))
            where += "".join(f"[{i}]" for i in inside)
            raise LocalProtocolError(f"{where}: {first_error(exc).partition(': ')[2]}") from None
    return given
