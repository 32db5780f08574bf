"""kadnode watch across real daemons on 127.0.0.1: a watcher on one node sees each
version written through another, of each kind, within the bound the poll schedule
promises (kadnode.config.WATCH_POLL_MAX and one read), and Ctrl-C ends it cleanly.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
from typing import Any

from daemons import ENV, KADNODE, STOP_TIMEOUT, Daemon, Daemons, cli_json, wait_for

from kadnode.config import WATCH_POLL_MAX, WATCH_POLL_MIN

# A watch idle this long waits WATCH_POLL_MAX between reads (1 + 2 + 4 s).
IDLE_S = 7 * WATCH_POLL_MIN + 0.5
# Beyond WATCH_POLL_MAX: one read on loopback (milliseconds) and the CLI printing it.
SLACK_S = 2.0
LINE = re.compile(r"\d\d:\d\d:\d\d  (.*)")


class Watcher:
    """``kadnode watch ...`` against ``daemon``; its stdout lines as they come, timed."""

    def __init__(self, daemon: Daemon, *argv: str) -> None:
        args = [*KADNODE, "watch", *argv, "--api", daemon.api, "--data-dir", str(daemon.data_dir)]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
        )
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line.rstrip("\n")))

    def next(self, timeout: float) -> tuple[float, str]:
        """The next line and when it came; fails after ``timeout`` s."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no line within {timeout:g} s; stderr so far: {self._stderr()}"
            ) from None

    def json(self, timeout: float) -> tuple[float, dict[str, Any]]:
        at, line = self.next(timeout)
        return at, json.loads(line)

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: its exit status and what it said on stderr."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(STOP_TIMEOUT)
        return code, self._stderr()

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)


def test_a_watcher_sees_each_kind_written_on_another_node_within_the_bound(
    daemons: Daemons,
) -> None:
    seed = daemons.start("seed")
    a = daemons.start("a", bootstrap=[seed])
    b = daemons.start("b", bootstrap=[seed])
    wait_for(lambda: a.info()["peers"] >= 2 and b.info()["peers"] >= 2, 10, "a full network")
    # B's public key, from B's own reply: the name of its signed value.
    first = cli_json("put", "--signed", "s1", "--salt", "status", api=b.api)
    owner = first["public_key"]
    watchers = {
        "plain": Watcher(a, "colour"),
        "shared": Watcher(a, "palette", "--shared", "--json"),
        "signed": Watcher(a, "--signed", owner, "--salt", "status", "--json"),
    }
    try:
        # Each says at once what there is now.
        _, line = watchers["plain"].next(10)
        assert LINE.fullmatch(line) and LINE.fullmatch(line)[1] == "not found: 'colour'"
        _, shared = watchers["shared"].json(10)
        assert (shared["key"], shared["found"], shared["siblings"]) == ("palette", False, [])
        _, signed = watchers["signed"].json(10)
        assert (signed["public_key"], signed["seq"], signed["value"]) == (owner, 1, "s1")
        # Idle long enough that each reads only every WATCH_POLL_MAX s: the worst case.
        time.sleep(IDLE_S)
        written: dict[str, float] = {}
        cli_json("put", "colour", "blue", api=b.api)
        written["plain"] = time.monotonic()
        cli_json("put", "palette", "red", "--shared", api=b.api)
        written["shared"] = time.monotonic()
        second = cli_json("put", "--signed", "s2", "--salt", "status", api=b.api)
        written["signed"] = time.monotonic()
        assert second["seq"] == 2

        bound = WATCH_POLL_MAX + SLACK_S
        at, line = watchers["plain"].next(bound)
        assert LINE.fullmatch(line) and LINE.fullmatch(line)[1] == "blue"
        seen = {"plain": at - written["plain"]}
        at, shared = watchers["shared"].json(bound)
        assert [s["value"] for s in shared["siblings"]] == ["red"]
        seen["shared"] = at - written["shared"]
        at, signed = watchers["signed"].json(bound)
        assert (signed["seq"], signed["value"], signed["deleted"]) == (2, "s2", False)
        seen["signed"] = at - written["signed"]
        print(f"seen after the write returned, s: {seen}")  # pytest -s shows it
        assert all(0 <= s <= bound for s in seen.values()), seen

        # Ctrl-C: exit 130, nothing on stderr (no traceback), nothing more on stdout.
        for watcher in watchers.values():
            assert watcher.interrupt() == (130, "")
            assert watcher.lines.empty()
    finally:
        for watcher in watchers.values():
            watcher.kill()
