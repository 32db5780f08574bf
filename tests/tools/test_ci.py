""".ci/run says what its chaos steps did: "ran" only when pytest ran a test, "skipped"
with pytest's reason when it skipped it (.ci/pytest_step.py), and it names test files
that exist."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEP = ROOT / ".ci" / "pytest_step.py"

TESTS = """
import time

import pytest


def test_skips():
    pytest.skip("no docker engine reachable (none here)")


def test_passes():
    pass


def test_fails():
    assert False


def test_sleeps():
    time.sleep(60)
"""


def step(tmp_path: Path, seconds: float, *args: str) -> tuple[int, str]:
    """Run the step on a test file of its own (its own rootdir); its last line, and exit code."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_some.py").write_text(TESTS)
    proc = subprocess.run(
        [sys.executable, str(STEP), "the step", str(seconds), *args, "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    ("selected", "code", "line"),
    [
        ("skips", 0, "ci: skipped the step: no docker engine reachable (none here)"),
        ("passes", 0, "ci: ran the step: 1 passed"),
        ("fails", 1, "ci: ran the step: 1 failed"),
        (
            "passes or skips",
            0,
            "ci: ran the step: 1 passed, 1 skipped (no docker engine reachable (none here))",
        ),
        ("nothing_matches", 1, "ci: the step did not run: pytest collected no test (exit 5)"),
    ],
)
def test_the_step_says_whether_it_ran_or_skipped(tmp_path, selected, code, line):
    assert step(tmp_path, 60, "test_some.py", "-k", selected) == (code, line)


def test_a_missing_test_file_did_not_run(tmp_path):
    assert step(tmp_path, 60, "tests/test_chaos.py") == (
        1,
        "ci: the step did not run: pytest collected no test (exit 4)",
    )


def test_a_step_over_its_time_is_interrupted_and_says_so(tmp_path):
    started = time.monotonic()
    assert step(tmp_path, 2, "test_some.py", "-k", "sleeps") == (
        1,
        "ci: the step timed out after 2 s",
    )
    assert time.monotonic() - started < 30  # interrupted, not waited out


def test_ci_run_reports_every_chaos_step_and_names_files_that_exist():
    script = (ROOT / ".ci" / "run").read_text()
    named = set(re.findall(r"\btests/[\w/]+\.py\b", script))
    assert named and all((ROOT / path).is_file() for path in named), named
    # pytest runs the chaos scenarios only through the step, which says ran or skipped.
    chaos_lines = [line for line in script.splitlines() if "test_chaos" in line]
    assert chaos_lines and all("pytest_step.py" in line for line in chaos_lines), chaos_lines
    assert "ci: ran" not in script


def test_ci_runs_the_readmes_test_command_on_its_clean_clone():
    """The README's second command (install with the test extra, run pytest) is
    the line .ci/run runs, word for word, and it fails on pytest's exit 5."""
    readme = (ROOT / "README.md").read_text()
    commands = readme.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert len(commands) == 2 and commands[1].endswith(".venv/bin/pytest"), commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()
    assert '"$rc" -eq 5' in ci and "exit 1" in ci
