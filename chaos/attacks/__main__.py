"""``python -m chaos.attacks ATTACK|all [options]``: run attacks on a kadnode node on
loopback and print their figures (a table each; ``--json`` for scripts).

Exit codes: 0 every attack run was held, 1 at least one broke through, 2 an
attack could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time

from chaos.attacks import NAMES, arguments, attack
from chaos.attacks.harness import Result
from chaos.scenarios import Progress


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.attacks",
        description=sys.modules["chaos.attacks"].__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=sys.modules["chaos.attacks"].__doc__.split("\n\n")[1],
    )
    sub = parser.add_subparsers(dest="attack", required=True, metavar="ATTACK")
    for name in (*NAMES, "all"):
        if name == "all":
            p = sub.add_parser("all", help="every attack at its default size")
        else:
            module = attack(name)
            p = sub.add_parser(
                name, help=module.__doc__.split("\n")[0].split(": ", 1)[1].removesuffix(" I/O.")
            )
            module.add_arguments(p)
        p.add_argument("--seed", type=int, default=1, help="random seed (%(default)s)")
        p.add_argument("--json", action="store_true", help="print the report as JSON")
        p.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def run_one(name: str, args: argparse.Namespace) -> Result:
    args.say = Progress(args.quiet)
    args.say(f"{name}: starting")
    before = load()
    result = asyncio.run(attack(name).run(args))
    result.seconds = time.monotonic() - args.say.t0
    result.notes.append(
        f"machine load (1-min average, {os.cpu_count()} CPUs): {before} before, {load()} after"
    )
    return result


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM (and SIGINT, which a shell's background job ignores) unwind the attack,
    # so the nodes and sockets it opened are closed on the way out.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, interrupted)
    names = NAMES if args.attack == "all" else (args.attack,)
    results = []
    for name in names:
        one = arguments(name, args.quiet, args.seed) if args.attack == "all" else args
        try:
            results.append(run_one(name, one))
        except KeyboardInterrupt:
            print(f"attacks: interrupted during {name}; its nodes were stopped", file=sys.stderr)
            return 130
        if not args.json:
            print(results[-1].render(), flush=True)
    if args.json:
        print(json.dumps([r.as_json() for r in results], indent=2))
    if any(r.held is None for r in results):
        return 2
    return 0 if all(r.held for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
