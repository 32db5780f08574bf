"""bench/run.py works end to end: a tiny run, as CI can afford it (< 30 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SIZE, VALUES = 8, 10
FIGURES = (
    "bootstrap s (all joined)",
    "put p50 ms",
    "put p99 ms",
    "get p50 ms",
    "get p99 ms",
    "values found",
    "peak memory per node KiB",
    "datagrams per put",
    "datagrams per get",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--sizes",
            str(SIZE),
            "--repeats",
            "1",
            "--values",
            str(VALUES),
            "--quick",
            "--timeout",
            "60",
            "--out",
            str(out / "benchmarks.md"),
            "--plot",
            str(out / "benchmarks.png"),
            "--json",
            str(out / "benchmarks.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    raw = json.loads((out / "benchmarks.json").read_text())
    return proc, (out / "benchmarks.md").read_text(), raw, out


def table_rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| figure"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_the_table_has_every_row_and_column(run):
    _, markdown, _, _ = run
    assert (
        "| figure | better | kadnode | bmuller | OpenDHT | kadnode÷bmuller | kadnode÷OpenDHT |"
        in markdown
    )
    rows = table_rows(markdown)
    expected = [f"{f} (N={SIZE})" for f in FIGURES]
    assert [label for label in rows if not label.startswith(("FIND_NODE", "lookups"))] == expected
    assert any(label.startswith("FIND_NODE replies/s") for label in rows)
    assert any(label.startswith("lookups/s") for label in rows)
    assert all(len(cells) == 6 and cells[0] in ("lower", "higher") for cells in rows.values())
    assert "python bench/run.py" in markdown and "cores" in markdown


def test_kadnode_finds_every_value_it_stored(run):
    _, markdown, raw, _ = run
    (result,) = raw["workload"][f"kadnode/{SIZE}"]
    assert result["found"] == result["acked"] == VALUES
    assert table_rows(markdown)[f"values found (N={SIZE})"][1] == f"{VALUES}/{VALUES}"


def test_datagrams_per_operation_are_counted(run):
    _, _, raw, _ = run
    (result,) = raw["workload"][f"kadnode/{SIZE}"]
    # A put is a lookup and a STORE to each replica: at least one request
    # and one reply per replica; a get at least one exchange unless the
    # reader holds a replica itself.
    assert result["put_datagrams"] >= 2 * (SIZE - 1)
    assert result["get_datagrams"] >= 0


def test_kadnode_only_figures_are_measured(run):
    _, _, raw, _ = run
    (find_node,) = raw["find_node"]
    assert find_node["replies_per_s"] > 0
    assert find_node["server"]["table"] >= 200  # the ~200-contact routing table
    assert find_node["server"]["bad_datagrams"] == 0
    (lookups,) = raw["lookups"]
    assert lookups["completed"] > 0 and lookups["lookups_per_s"] > 0


@pytest.mark.parametrize(
    ("module", "impl", "column"), [("kademlia", "bmuller", 2), ("opendht", "opendht", 3)]
)
def test_the_other_implementations_ran(run, module, impl, column):
    pytest.importorskip(module)
    _, markdown, raw, _ = run
    (result,) = raw["workload"][f"{impl}/{SIZE}"]
    assert "error" not in result, result
    assert result["found"] > 0
    for cells in table_rows(markdown).values():
        assert not cells[column].startswith("n/a"), cells


def test_progress_goes_to_stderr_and_the_table_to_stdout(run):
    proc, _, _, _ = run
    assert "[bench] kadnode N=8 #1: starting" in proc.stderr
    assert proc.stdout.startswith("| figure |")


def test_the_plot_is_a_png(run):
    pytest.importorskip("matplotlib")
    _, markdown, _, out = run
    assert (out / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![put and get p50 against N](benchmarks.png)" in markdown
