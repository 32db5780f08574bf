"""``kadnode demo`` over real loopback sockets, and its command line."""

from __future__ import annotations

import json

import pytest

from kadnode.cli.demo import render, run_demo
from kadnode.cli.main import main
from kadnode.config import K


async def test_a_30_node_demo_finds_every_value_and_every_lookup_is_exact():
    report = await run_demo(30, 30, seed=4)
    assert report.found == report.stored == 30
    assert report.lookups_exact == report.lookups == 30
    assert report.replicas_mean == 20.0  # each written to its k = 20 nearest
    assert report.bad_datagrams == 0 and report.ok
    assert f"replicas on average (k={K})" in render(report)


def test_demo_json_follows_the_output_contract(capsys):
    assert main(["demo", "--nodes", "12", "--values", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nodes"] == 12 and out["stored"] == 10 and out["found"] == 10
    assert set(out["put_ms"]) == {"p50", "p99"} and set(out["get_ms"]) == {"p50", "p99"}


def test_demo_rejects_a_bad_node_count_with_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--nodes", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "must be at least 1" in err and "Traceback" not in err
