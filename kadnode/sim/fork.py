"""A pool of forked worker processes. I/O: it forks this process once per item and
pickles each child's result (or its error) back to the parent through a pipe.

Used for the failure scenario's fractions of failed nodes and for ``kadnode
sim all``'s groups of scenarios. POSIX only (``os.fork``).
"""

from __future__ import annotations

import os
import pickle
import select
import sys
from collections.abc import Callable, Sequence


def forked_map(fn: Callable[[object], object], items: Sequence, workers: int) -> list:
    """Run ``fn(item)`` for each item in a forked child of this process.

    Each child starts from this process's memory as it is now (a built
    network, say), so every item sees the same state, untouched by the
    others; up to ``workers`` run at once. Results come back pickled.
    """
    results: list = [None] * len(items)
    running: dict[int, tuple[int, int]] = {}  # read fd -> (item index, pid)
    queue = list(range(len(items)))
    while queue or running:
        while queue and len(running) < max(1, workers):
            index = queue.pop(0)
            read, write = os.pipe()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the child: run, send the outcome, leave at once
                os.close(read)
                try:
                    payload = pickle.dumps((True, fn(items[index])))
                except BaseException as exc:  # everything goes back to the parent
                    payload = pickle.dumps((False, f"{type(exc).__name__}: {exc}"))
                with os.fdopen(write, "wb") as f:
                    f.write(payload)
                os._exit(0)
            os.close(write)
            running[read] = (index, pid)
        ready, _, _ = select.select(list(running), [], [])
        fd = ready[0]
        index, pid = running.pop(fd)
        with os.fdopen(fd, "rb") as f:  # read to the end before reaping
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            raise RuntimeError(f"simulation child for {items[index]!r} died (status {status})")
        ok, value = pickle.loads(data)
        if not ok:
            raise RuntimeError(f"{items[index]!r}: {value}")
        results[index] = value
    return results
