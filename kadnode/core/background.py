"""Work a node does off the datagram path, a slice at a time. Pure.

What grows with the store (a join handoff, an anti-entropy digest or push)
never runs while a datagram is handled: the datagram queues a job, and the
node's timer runs the queued jobs for at most :data:`BACKGROUND_BUDGET`
records per tick, one tick every :data:`BACKGROUND_PAUSE` seconds, so a
store of 100,000 values delays nobody's reply by more than one slice.

A job is a generator that yields once per record it examines. At most
:data:`MAX_JOBS` are queued; past that a new one is refused (counted) and
the work it stood for waits for the next occasion (the next handoff
interval, the next anti-entropy round).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from kadnode.config import BACKGROUND_BUDGET, BACKGROUND_PAUSE, MAX_JOBS

INF = float("inf")


class Background:
    def __init__(self) -> None:
        self._jobs: deque[Iterator[None]] = deque()
        self.at = INF  # when the next slice is due (INF: nothing queued)
        self.now = 0.0  # the time of the slice running: jobs send at it
        self.refused = 0

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, job: Iterator[None], now: float) -> bool:
        """Queue ``job``; False (not queued) when the queue is full."""
        if len(self._jobs) >= MAX_JOBS:
            self.refused += 1
            return False
        self._jobs.append(job)
        self.at = min(self.at, now)
        return True

    def run(self, now: float) -> int:
        """One slice: up to BACKGROUND_BUDGET records, jobs in turn; the records done."""
        done = 0
        jobs = self._jobs
        self.now = now
        while jobs and done < BACKGROUND_BUDGET:
            job = jobs[0]
            for _ in range(min(64, BACKGROUND_BUDGET - done)):  # then the next job's turn
                try:
                    next(job)
                except StopIteration:
                    jobs.popleft()
                    break
                done += 1
            else:
                jobs.rotate(-1)
        self.at = now + BACKGROUND_PAUSE if jobs else INF
        return done
