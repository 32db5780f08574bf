"""The daemon's clock: the wall clock read once, then carried on by the monotonic clock. I/O.

The core runs on unix seconds: expiry times are kept on disk and must mean
the same after a restart, and a peer record carries an absolute expiry and a
sequence number taken from the clock. A machine's wall clock can step,
though (NTP putting a wrong clock right, an operator, a virtual machine
resumed), and the core's timers and deadlines are times on its clock: a step
forward fires at once every timer due within the step and times out every
request in flight (its contacts count failures, held values expire early); a
step back holds upkeep (stabilize, refresh, republish) for the length of the
step (seen with ``chaos/run.py skew``, which steps the clocks of running
containers with libfaketime; docs/chaos.md).

So the daemon reads the wall clock once, when it starts, and counts on from
there with ``CLOCK_MONOTONIC``, which never steps (NTP slews its rate, so it
keeps true time). A step reaches the node at its next start;
:func:`wall_step` says how far the wall clock has moved from the node's
(``kadnode info``: ``clock_step_s``).
"""

from __future__ import annotations

import time

# Unix seconds at monotonic zero, as the wall clock said when this module loaded.
_BASE = time.time() - time.monotonic()


def now() -> float:
    """Unix seconds on the node's clock: steps of the wall clock do not reach it."""
    return _BASE + time.monotonic()


def wall_step() -> float:
    """Seconds the wall clock has moved from the node's clock since the start (0: none)."""
    return time.time() - now()
