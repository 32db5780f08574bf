"""The ``kadnode`` command line. I/O.

``run`` starts the daemon, ``demo`` a local network, ``sim`` a simulated
one; the API commands (``info``, ``lookup``, ``put``, ``get``, ``register``,
``find-peer``, ``peers``, ``ping``, ``owner``, ``ring``, ``fault``,
``leave``, ``watch``...) talk to a running daemon over its control API. Bad input and
failures print one line to stderr and exit non-zero; no traceback reaches a
user.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from kadnode import __version__
from kadnode.cli.client import EXIT_ERROR, add_client_commands, one_line, run_client_command
from kadnode.cli.demo import render as render_demo
from kadnode.cli.demo import run_demo
from kadnode.cli.settings import Setting, render, resolve, settings_of
from kadnode.config import MAX_NETWORK_ID_CHARS, REQUESTS_TOTAL, Config
from kadnode.core.addresses import parse_networks
from kadnode.errors import KadnodeError
from kadnode.inputs import at_least, parse_hostport, parse_nameserver
from kadnode.shell import loop
from kadnode.shell.apiguard import TOKEN_ENV
from kadnode.shell.daemon import DEFAULT_API_PORT, DEFAULT_PORT, DaemonOptions, run_daemon

# The simulator's scenarios, named without importing it (startup stays quick);
# tests/sim/test_sim.py holds this equal to kadnode.sim.scenarios.SCENARIOS.
SIM_SCENARIOS = "hops, failure, churn, partition, load, latency, delete, skew"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, not {port}")
    return port


def _hostport(text: str) -> tuple[str, int]:
    try:
        return parse_hostport(text)
    except KadnodeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _nameserver(text: str) -> str:
    """A ``--dns-server`` entry, checked as the resolver will read it (kept as written)."""
    try:
        parse_nameserver(text)
    except KadnodeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _network_id(text: str) -> str:
    """A private network's name: printable, without spaces, at most MAX_NETWORK_ID_CHARS."""
    if not (0 < len(text) <= MAX_NETWORK_ID_CHARS and text.isprintable() and " " not in text):
        raise argparse.ArgumentTypeError(
            f"a network id is 1 to {MAX_NETWORK_ID_CHARS} printable characters without"
            f" spaces, not {text[:80]!r}"
        )
    return text


def add_run_options(run: argparse.ArgumentParser) -> None:
    """The daemon's settings: flags of ``run`` and ``config``, and keys of the
    --config file and KADNODE_* variables (kadnode.cli.settings)."""
    run.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a TOML file of settings, keys named as these flags (flags and KADNODE_*"
        " variables take precedence; 'kadnode config' shows the outcome)",
    )
    run.add_argument(
        "--host", default="0.0.0.0", help="UDP address to listen on (default %(default)s)"
    )
    run.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help="UDP port (default %(default)s; 0 picks a free one)",
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=Path("kadnode-data"),
        help="where values, identity, contacts and the API token persist (default %(default)s)",
    )
    run.add_argument(
        "--bootstrap",
        type=_hostport,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a node to join through (repeatable)",
    )
    run.add_argument(
        "--dns-seed",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name whose SRV/A/AAAA records list seed nodes (repeatable)",
    )
    run.add_argument(
        "--dns-server",
        type=_nameserver,
        action="append",
        default=None,
        metavar="IP[:PORT]",
        help="DNS server for --dns-seed (default: the system's)",
    )
    run.add_argument(
        "--api",
        type=_hostport,
        default=("127.0.0.1", DEFAULT_API_PORT),
        metavar="HOST:PORT",
        help=f"control API address (default 127.0.0.1:{DEFAULT_API_PORT})",
    )
    run.add_argument(
        "--metrics",
        type=_hostport,
        default=None,
        metavar="HOST:PORT",
        help="also serve GET /metrics (and /health) on a listener of its own, without a token,"
        " for a scraper on another host (default: only on the control API)",
    )
    run.add_argument(
        "--advertise",
        type=_hostport,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="the address to register in this node's signed peer record (repeatable;"
        " default: the address it listens on)",
    )
    run.add_argument(
        "--allow-fault-injection",
        action="store_true",
        help="let the control API delay this node's datagrams (chaos testing only)",
    )
    run.add_argument(
        "--exempt",
        type=_network,
        action="append",
        default=[],
        metavar="CIDR",
        help="lift the per-address and per-subnet limits for this range, e.g. a LAN, or"
        " 127.0.0.0/8 for a test network on loopback (repeatable; default: none)",
    )
    run.add_argument(
        "--network-id",
        type=_network_id,
        default=None,
        metavar="NAME",
        help="join the private network NAME: its nodes take no datagram from another"
        " network's, nor theirs from it (default: the default network, which"
        " bmuller/kademlia nodes join too)",
    )
    run.add_argument(
        "--requests-per-second",
        type=at_least(1),
        default=None,
        metavar="N",
        help=f"requests this node answers per second in all (default {int(REQUESTS_TOTAL)})",
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="lines for people, or one JSON object a line (time, level, logger, message) for"
        " a log collector (default %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kadnode",
        description="Kademlia peer discovery: daemon, library and shell tools. The API"
        " commands' --api, --data-dir and --json may also come before the command.",
    )
    parser.add_argument("--version", action="version", version=f"kadnode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_run_options(sub.add_parser("run", help="run a node (the daemon)"))
    add_run_options(
        sub.add_parser(
            "config",
            help="print the settings 'run' would use with these flags, and where each came from",
        )
    )

    demo = sub.add_parser("demo", help="start a local network on loopback and show it working")
    demo.add_argument("--nodes", type=at_least(1), default=50, help="nodes (default %(default)s)")
    demo.add_argument(
        "--values",
        type=at_least(1),
        default=None,
        help="values to store and read back (default: as many as nodes, at most 200)",
    )
    demo.add_argument("--seed", type=int, default=None, help="seed for the choice of nodes")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")

    # The simulator is loaded only when asked for; its own parser reads the rest.
    sim = sub.add_parser(
        "sim",
        help="simulate a network of real node cores (" + SIM_SCENARIOS + ")",
        add_help=False,
        prefix_chars="\0",
    )
    sim.add_argument("sim_args", nargs=argparse.REMAINDER)
    add_client_commands(sub)
    return parser


def _network(text: str) -> str:
    try:
        parse_networks([text])
    except KadnodeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _log_to_stderr(level: str, form: str) -> None:
    handler = logging.StreamHandler()
    if form == "json":
        from pythonjsonlogger.json import JsonFormatter  # only when asked for

        fields = {"levelname": "level", "name": "logger"}
        text = "%(levelname)s %(name)s %(message)s"
        handler.setFormatter(JsonFormatter(text, rename_fields=fields, timestamp="time"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def _run(args: argparse.Namespace) -> int:
    _log_to_stderr(args.log_level, args.log_format)
    host, api_port = args.api
    options = DaemonOptions(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        bootstrap=args.bootstrap,
        dns_seeds=args.dns_seed,
        dns_nameservers=args.dns_server,
        advertise=args.advertise,
        allow_fault_injection=args.allow_fault_injection,
        api_host=host,
        api_port=api_port,
        api_token=os.environ.get(TOKEN_ENV),
        metrics=args.metrics,
        config=Config(
            exempt_networks=tuple(args.exempt),
            network_id=args.network_id or "",
            requests_total=float(args.requests_per_second or REQUESTS_TOTAL),
        ),
    )
    loop.run(run_daemon(options))
    return 0


def _demo(args: argparse.Namespace) -> int:
    values = args.values if args.values is not None else min(args.nodes, 200)
    progress = None if args.json else (lambda msg: print(f"  {msg}", file=sys.stderr))
    report = loop.run(run_demo(args.nodes, values, args.seed, progress))
    print(json.dumps(report.as_json(), indent=2) if args.json else render_demo(report))
    return 0 if report.ok else 1


# Options of every API command that may also come before it (kadnode --api
# HOST:PORT info), as git takes -C before its command; True: takes a value.
OPTIONS_BEFORE_COMMAND = {"--api": True, "--data-dir": True, "--json": False}


def options_after_command(argv: list[str]) -> list[str]:
    """``argv`` with the API options given before the command moved after it."""
    moved, i = [], 0
    while i < len(argv) and (name := argv[i].partition("=")[0]) in OPTIONS_BEFORE_COMMAND:
        width = 2 if OPTIONS_BEFORE_COMMAND[name] and "=" not in argv[i] else 1
        moved += argv[i : i + width]
        i += width
    rest = argv[i:]
    return [rest[0], *moved, *rest[1:]] if moved and rest else argv


def layered(parser: argparse.ArgumentParser, argv: list[str], command: str) -> list[Setting]:
    """The settings of ``command`` (run, config) in ``argv``: flags, then KADNODE_*
    variables, then the --config file, then defaults (kadnode.cli.settings)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = settings_of(sub.choices[command]).values()
    defaults = [a.default for a in actions]
    for action in actions:
        action.default = argparse.SUPPRESS  # so that only the flags given are parsed
    try:
        given = parser.parse_args(argv)
    finally:
        for action, default in zip(actions, defaults, strict=True):
            action.default = default
    return resolve(sub.choices[command], given, given.config, os.environ)


def main(argv: list[str] | None = None) -> int:
    argv = options_after_command(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in ("run", "config"):
            settings = layered(parser, argv, args.command)
            if args.command == "config":
                print(render(settings), end="")
                return 0
            for setting in settings:
                setattr(args, setting.dest, setting.value)
            return _run(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "sim":
            from kadnode.sim.cli import main as sim_main

            return sim_main(args.sim_args, prog="kadnode sim")
        return run_client_command(args)
    except KadnodeError as exc:
        print(f"kadnode: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
