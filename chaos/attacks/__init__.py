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

from importlib import import_module
from types import ModuleType

NAMES = ("amplify", "flood", "sybil", "forge", "exhaust", "work", "shared")


def attack(name: str) -> ModuleType:
    """The module of the attack called ``name``."""
    return import_module(f"chaos.attacks.{name}")
