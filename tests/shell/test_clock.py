"""The daemon's clock: a step of the machine's wall clock does not reach a running node.

The step is real: libfaketime (Debian's libfaketime) preloaded into a child
interpreter moves its wall clock 300 s, as NTP putting a wrong clock right
would. Where libfaketime is missing that test skips and says so, except when
CI_REQUIRE_FAKETIME is set (.ci/run installs it and sets it): then it fails.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time

import pytest

from kadnode.cli.show import SHOW
from kadnode.shell import clock

FAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)

# Runs under libfaketime: reads the clocks, steps the wall clock by writing
# the offset file libfaketime re-reads each second, reads them again.
STEPPED = """
import json, sys, threading, time
from kadnode.core.node import NodeCore
from kadnode.core.store import MemoryStore
from kadnode.shell.transport import UdpNode
udp = UdpNode(NodeCore(1, MemoryStore()))
node0, wall0 = udp.clock(), time.time()
open(sys.argv[1], "w").write("+300")
for _ in range(100):  # libfaketime re-reads the file once its 1 s cache runs out
    if time.time() - wall0 > 200:
        break
    threading.Event().wait(0.1)  # time.sleep is unsafe under libfaketime (no fake monotonic)
print(json.dumps({"node": udp.clock() - node0, "wall": time.time() - wall0}))
"""


def test_a_step_of_the_wall_clock_does_not_reach_a_running_nodes_core(tmp_path):
    if FAKETIME is None:
        if os.environ.get("CI_REQUIRE_FAKETIME"):
            pytest.fail("libfaketime is missing but CI_REQUIRE_FAKETIME is set")
        pytest.skip("libfaketime is missing (apt-get install libfaketime): the step was not made")
    offset = tmp_path / "clock"
    env = {
        **os.environ,
        "LD_PRELOAD": FAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(offset),  # absent until written: the true time
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_CACHE_DURATION": "1",
    }
    run = subprocess.run(
        [sys.executable, "-c", STEPPED, str(offset)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    moved = json.loads(run.stdout)
    assert moved["wall"] > 290.0  # the step happened
    assert moved["node"] < 5.0  # and the core's clock went on as if it had not


def test_how_far_the_wall_clock_moved_is_measured_against_the_nodes_clock(monkeypatch):
    before = clock.now()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 300.0)
    assert clock.now() - before < 5.0
    assert -305.0 < clock.wall_step() < -295.0


def test_info_shows_a_clock_step_only_when_there_was_one():
    info = {"id": "ab" * 20, "host": "10.0.0.1", "port": 8467, "peers": 3, "values": 0,
            "uptime_s": 60.0, "stats": {}}  # fmt: skip
    assert "clock step" not in SHOW["info"]({**info, "clock_step_s": 0.002})
    shown = SHOW["info"]({**info, "clock_step_s": -300.4})
    assert "clock step  -300 s since start (the node keeps its clock until restarted)" in shown


def test_a_registration_some_replicas_refused_as_expired_says_to_check_the_clocks():
    reply = {"key": "ab" * 20, "stored": 12, "local": False, "pending": 0,
             "refused": ["expired"] * 3, "record": None}  # fmt: skip
    shown = SHOW["register"](reply)
    assert shown.startswith("registered " + "ab" * 20 + ": on 12 nodes; refused by 3 expired (")
    assert "clock" in shown
