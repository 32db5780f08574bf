"""The adversarial suite (issue 13, item 8): one module per attack on a kadnode node,
each run on loopback by ``python -m chaos.attacks ATTACK`` and printing its figure.

- amplify  every request type with a forged source: bytes reaching the victim / bytes sent
- flood    one IP at 10,000 find_node/s: answered per second, honest success, CPU
- sybil    500 ids from one /24 against 40 honest nodes: their share of tables, gets
- forge    forged-source writes of every kind: accepted, and the publisher's value
- exhaust  one IP storing 100,000 x 1 KB values: its share, honest puts afterwards
- work     CPU per crafted datagram (new sender id, kn_digest, kn_keys) against find_node
- shared   shared values: counters pinned at 2**63-1, a full clock, a squatted peer record

See docs/security.md for the threat model and the figures. The harness is
:mod:`chaos.attacks.harness`.
"""

from __future__ import annotations

import argparse
from importlib import import_module
from types import ModuleType
from typing import Any

NAMES = ("amplify", "flood", "sybil", "forge", "exhaust", "work", "shared")


def attack(name: str) -> ModuleType:
    """The module of the attack called ``name``."""
    return import_module(f"chaos.attacks.{name}")


def arguments(name: str, quiet: bool = True, seed: int = 1, **sizes: Any) -> argparse.Namespace:
    """The arguments of attack ``name`` at their defaults, with ``sizes`` instead where
    given (``values=50``), a seed, and a progress printer (silent when ``quiet``)."""
    from chaos.scenarios import Progress

    parser = argparse.ArgumentParser()
    attack(name).add_arguments(parser)
    args = parser.parse_args([])
    for option, value in sizes.items():
        if not hasattr(args, option):
            raise TypeError(f"attack {name} has no option {option!r}")
        setattr(args, option, value)
    args.seed, args.quiet, args.say = seed, quiet, Progress(quiet)
    return args
