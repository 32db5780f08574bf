"""Trace stories (tests/testdata/*.txt): each script must produce exactly the
decoded message trace written under it (kadnode.sim.script). On a mismatch
the test shows the unified diff; ``pytest --rewrite-stories`` writes the
actual traces into the files instead, for a reviewer to read as a diff."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from kadnode.core.ids import key_digest
from kadnode.sim.network import SimNetwork
from kadnode.sim.script import ScriptError, run_story

STORIES = sorted((Path(__file__).resolve().parent.parent / "testdata").glob("*.txt"))


@pytest.mark.parametrize("path", STORIES, ids=[p.stem for p in STORIES])
def test_story(path: Path, request: pytest.FixtureRequest) -> None:
    expected = path.read_text()
    actual = run_story(expected)
    if request.config.getoption("--rewrite-stories"):
        path.write_text(actual)
    elif actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            f"{path.name} (expected)",
            f"{path.name} (actual)",
        )
        pytest.fail("story trace changed (--rewrite-stories to accept):\n" + "".join(diff))


def test_stories_exist() -> None:
    assert {p.stem for p in STORIES} >= {"join", "put-get", "partition", "churn", "leave"}


def test_an_operation_that_cannot_complete_times_out() -> None:
    # A crashed node's timers never fire: its put can never end.
    out = run_story("add-nodes 2\njoin n2 via n1 quiet\nkill n2\nput n2 x=1\n")
    assert "+0.000 n2 -> n1 find_node x [token] (dropped)\n" in out
    assert out.endswith("\n=> put x: timed out after 60 s\n")


def test_a_bad_line_is_named_by_its_number() -> None:
    with pytest.raises(ScriptError, match="line 3: join n1: wrong arguments"):
        run_story("# a comment\nadd-nodes 2\njoin n1\n")


def test_the_observer_only_watches() -> None:
    """Same trace digest with and without an observer, and it saw every datagram."""
    seen: list[bool] = []

    def run(observer) -> SimNetwork:
        net = SimNetwork(seed=4, observer=observer)
        cores = [net.add_node() for _ in range(6)]
        for core in cores[1:]:
            net.call(core, lambda c, now: c.bootstrap([cores[0].addr], now))
        net.kill([cores[2].addr])
        net.call(cores[3], lambda c, now: c.put(key_digest("k"), "v", now))
        net.run_until(net.now + 30)
        return net

    plain = run(None)
    watched = run(lambda now, src, dest, data, delivered: seen.append(delivered))
    assert watched.trace.hexdigest() == plain.trace.hexdigest()
    assert seen.count(True) == plain.delivered
    assert seen.count(False) == plain.dropped > 0
