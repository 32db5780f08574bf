"""Trace stories (tests/testdata/*.txt): each script must produce exactly the
decoded message trace written under it (kadnode.sim.script). On a mismatch
the test shows the unified diff; ``pytest --rewrite-stories`` writes the
actual traces into the files instead, for a reviewer to read as a diff."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from kadnode.sim.script import run_story

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
