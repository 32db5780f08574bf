"""The simulator: seeded and deterministic, realistic network, scenario invariants.

Small versions (a few hundred nodes) of what ``kadnode sim`` runs at 10,000.
Every assertion message carries the seed, so a failure can be replayed.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from kadnode.cli.main import SIM_SCENARIOS
from kadnode.cli.main import main as cli_main
from kadnode.config import Config
from kadnode.core.ids import key_digest
from kadnode.sim import cli as sim_cli
from kadnode.sim.network import LATENCY_MEDIAN, PairLatency, SimNetwork
from kadnode.sim.oracle import hop_bound, weibull_median
from kadnode.sim.scenarios import SCENARIOS
from kadnode.sim.scenarios.churn import CHURN_SCALE, CHURN_SHAPE, MIN_CHURN_LOOKUPS, scenario_churn
from kadnode.sim.scenarios.delete import scenario_delete
from kadnode.sim.scenarios.failure import scenario_failure
from kadnode.sim.scenarios.hops import scenario_hops
from kadnode.sim.scenarios.latency import JOINERS, PROBE_RTTS, scenario_latency
from kadnode.sim.scenarios.load import scenario_load
from kadnode.sim.scenarios.partition import scenario_partition
from kadnode.sim.world import MIN_FOUND_NEAREST, World, measure_lookups, tuned_gc
from kadnode.stats import percentile

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("KADNODE_SIM_SEED", "7"))


def world(n: int, seed: int = SEED, **kwargs) -> World:
    w = World("test", seed, **kwargs)
    with tuned_gc():
        w.grow(n)
    return w


# ---- determinism ----------------------------------------------------------------


def digest(seed: int) -> str:
    w = world(40, seed, loss=0.02)
    measure_lookups(w, 20)
    w.put_values(5, "d")
    return w.net.trace.hexdigest()


def test_one_seed_one_digest_and_another_seed_another():
    assert digest(SEED) == digest(SEED), f"seed {SEED}"
    assert digest(SEED) != digest(SEED + 1), f"seeds {SEED}, {SEED + 1}"


def test_the_digest_does_not_depend_on_the_process_hash_seed():
    code = (
        "from kadnode.sim.world import World, measure_lookups\n"
        f"w = World('x', {SEED})\n"
        "w.grow(30)\n"
        "measure_lookups(w, 10)\n"
        "print(w.net.trace.hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert len(digests) == 1, f"seed {SEED}: {digests}"


# ---- the network model ------------------------------------------------------------


def test_pair_latency_is_fixed_per_pair_lognormal_around_the_median():
    model = PairLatency(SEED)
    bases = [model.base(a, a + 1 + a % 97) for a in range(20_000)]
    assert statistics.median(bases) == pytest.approx(LATENCY_MEDIAN, rel=0.05)
    # lognormal, sigma 0.5: the 90th percentile is e^(0.5 * 1.2816) times the median
    assert percentile(bases, 90) / statistics.median(bases) == pytest.approx(1.90, rel=0.1)
    assert model.base(3, 9) == model.base(9, 3) == PairLatency(SEED).base(3, 9)
    assert model.base(3, 9) != PairLatency(SEED + 1).base(3, 9)
    rng = random.Random(1)
    assert all(model(3, 9, rng) >= model.base(3, 9) for _ in range(100))


def test_a_partition_drops_datagrams_between_groups_until_healed():
    net = SimNetwork(seed=SEED, latency=PairLatency(SEED))
    a, b, c = (net.add_node() for _ in range(3))
    net.partition([[a.addr], [b.addr, c.addr]])
    assert net.call(a, lambda n, now: n.ping(b.addr, now)).node_id is None
    assert net.call(b, lambda n, now: n.ping(c.addr, now)).node_id == c.id
    net.heal()
    assert net.call(a, lambda n, now: n.ping(b.addr, now)).node_id == b.id


def test_a_restarted_host_keeps_its_id_and_values_and_rejoins():
    w = world(30)
    net = w.net
    key = key_digest("kept")
    host = w.members[5]
    net.call(host, lambda c, now: c.put(key, "v", now))
    contacts = [c.addr for c in host.table.contacts()[:8]]
    net.kill([host.addr])
    net.run_until(net.now + 60)
    back = net.restart(host.addr)
    assert back is not host and back.id == host.id and back.store.get(key) is not None
    assert len(back.table) == 0
    assert net.call(back, lambda c, now: c.bootstrap(contacts, now)).answered > 0
    other = w.members[9]
    found = net.call(other, lambda c, now: c.lookup(host.id, now))
    assert found.peer is not None and found.peer.node_id == host.id, f"seed {SEED}"


def test_nodes_with_skewed_clocks_still_find_each_other():
    w = World("skew", SEED)
    w.net.clock_skew = 1e-3  # 1000 ppm, ten times a cheap quartz
    with tuned_gc():
        w.grow(40)
    m = measure_lookups(w, 30)
    assert m["nearest_ok"] >= 0.9 * m["count"], f"seed {SEED}: {m['nearest_ok']}"
    clocks = {round(w.net.local_time(i)) for i in range(len(w.net.cores))}
    assert len(clocks) > 1  # the clocks really differ


def test_a_host_given_its_own_clock_reads_it_from_its_start_and_wakes_on_it():
    net = SimNetwork(seed=SEED)
    net.clock_for = lambda index: ((1000.0, 1.0), (500.0, 1.001))[index]
    a, b = net.add_node(), net.add_node()
    net.run_until(100.0)
    assert net.local_time(0) == 1100.0 and net.local_time(1) == pytest.approx(600.1)
    assert net.call(a, lambda c, now: c.ping(b.addr, now)).node_id == b.id
    # A timer the second host asks for (on its own clock) fires when its clock
    # reads that time: in network time, (asked - 500) / 1.001.
    asked = b.get_timer()
    woken = []
    handle = b.handle_timer
    b.handle_timer = lambda now: (woken.append((net.now, now)), handle(now))
    net.run_until((asked - 500.0) / 1.001 + 1e-6)
    assert woken and all(local == pytest.approx(500.0 + 1.001 * at) for at, local in woken)
    assert woken[-1] == pytest.approx(((asked - 500.0) / 1.001, asked))
    assert all(local < asked for _, local in woken[:-1])


# ---- scenarios (small) -----------------------------------------------------------------


def test_hops_stay_within_the_bound_and_lookups_find_the_nearest():
    report = scenario_hops(256, SEED, lookups=150)
    assert [r["n"] for r in report.rows] == [64, 128, 256]
    for row in report.rows:
        n = row["n"]
        assert row["nearest"] >= MIN_FOUND_NEAREST, f"seed {SEED}, N={n}: {row}"
        assert row["max"] <= hop_bound(n, 20), f"seed {SEED}, N={n}: {row}"
        # Far below log2 N: each hop resolves ~log2 k bits, not one.
        assert 1 <= row["mean"] <= math.log2(n / 20) + 1, f"seed {SEED}, N={n}: {row}"
        if "chord" in row:
            assert row["chord_ok"] >= 0.99, f"seed {SEED}, N={n}: {row}"
            assert abs(row["chord"] - row["half_log2n"]) < 1.0, f"seed {SEED}, N={n}: {row}"
    means = [r["mean"] for r in report.rows]
    assert means == sorted(means), f"seed {SEED}: hops must grow with N: {means}"
    assert report.ok, f"seed {SEED}: {report.failures}"
    assert report.perf["join_failures"] == 0


def test_a_mass_failure_loses_no_value_and_replication_restores_the_replicas():
    report = scenario_failure(
        200, SEED, fractions=(0.3,), values=40, lookups=60, workers=1, progress=None
    )
    [row] = report.rows
    assert row["killed"] == 60
    assert row["all_lost"] == 0 and row["get_fail"] == 0, f"seed {SEED}: {row}"
    assert row["get_fail_after"] == 0, f"seed {SEED}: {row}"
    assert row["lookup_fail"] <= 1 - MIN_FOUND_NEAREST, f"seed {SEED}: {row}"
    # Without replication about p of the values would be gone.
    assert 0.1 <= row["primary_lost"] <= 0.5, f"seed {SEED}: {row}"
    # Right after, the k nearest live nodes include ~p*k that never held it;
    # one replication round fills most of them (holders still count dead
    # contacts among their k nearest until those fail 3 times).
    assert row["near"] < 0.8 * 20 <= row["near_after"], f"seed {SEED}: {row}"


def test_a_healed_partition_loses_no_record():
    report = scenario_partition(160, SEED, split_for=600.0, watch_for=300.0, probes=20, values=40)
    [row] = report.rows
    assert row["records"] == 80
    assert row["lost"] == 0 and row["missed_gets"] == 0, f"seed {SEED}: {row}"
    assert row["lookups_back"] != "> 300", f"seed {SEED}: {row}"
    timeline = report.series["timeline"]
    assert timeline[0]["cross_share"] > 0.4  # random halves: about half the contacts
    assert report.ok, f"seed {SEED}: {report.failures}"


def test_lookups_keep_succeeding_under_weibull_churn():
    report = scenario_churn(150, SEED, duration=1200.0, bucket=600.0, values=20, rate=0.5)
    assert len(report.rows) == 2
    assert sum(r["departures"] for r in report.rows) >= 20, f"seed {SEED}: {report.rows}"
    assert sum(r["arrivals"] for r in report.rows) >= 15, f"seed {SEED}: {report.rows}"
    for row in report.rows:
        assert row["lookup_ok"] >= MIN_CHURN_LOOKUPS, f"seed {SEED}: {row}"
        assert row["get_ok"] == 1.0, f"seed {SEED}: {row}"


def test_load_spreads_values_over_the_k_nearest():
    report = scenario_load(100, SEED, per_node=5)
    held, owned = report.rows
    assert held["mean"] == pytest.approx(20 * 500 / 100, rel=0.15), f"seed {SEED}: {held}"
    assert held["min"] > 0 and held["gini"] < owned["gini"], f"seed {SEED}: {report.rows}"


def test_weibull_sessions_have_the_stated_median():
    rng = random.Random(SEED)
    draws = [rng.weibullvariate(CHURN_SCALE, CHURN_SHAPE) for _ in range(20_000)]
    median = weibull_median(CHURN_SHAPE, CHURN_SCALE)
    assert median / 60 == pytest.approx(28.8, abs=0.1)
    assert statistics.median(draws) == pytest.approx(median, rel=0.05)


# ---- the command ------------------------------------------------------------------------


def test_the_command_prints_json_and_writes_the_report(tmp_path, capsys):
    argv = ["sim", "load", "--nodes", "40", "--seed", str(SEED), "--json", "--quiet"]
    assert cli_main([*argv, "--out", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["scenario"] == "load" and data["ok"] and len(data["digest"]) == 64
    markdown = (tmp_path / "load.md").read_text()
    assert "| per node |" in markdown and "kadnode sim load --nodes 40" in markdown
    assert (tmp_path / "load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("flag", ["--plot", "--out"])
def test_plotting_without_matplotlib_is_refused_before_simulating(
    tmp_path, capsys, monkeypatch, flag
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # "import matplotlib" raises ImportError

    def simulate(*_args, **_kwargs):
        raise AssertionError("simulated although no plot can be drawn")

    monkeypatch.setattr(sim_cli, "run_scenario", simulate)
    target = tmp_path / ("load.png" if flag == "--plot" else "out")
    assert cli_main(["sim", "load", "--nodes", "40", flag, str(target)]) == 2
    assert capsys.readouterr() == (
        "",
        f"kadnode: error: {flag} needs matplotlib, which is not installed here"
        " (pip install matplotlib)\n",
    )
    assert not target.exists()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--nodes", "1"], "at least 2"),
        (["--loss", "1"], "must be at least 0 and below 1, not 1"),
        (["--loss", "-0.1"], "must be at least 0 and below 1"),
        (["--loss", "lots"], "not a number: 'lots'"),
    ],
)
def test_bad_arguments_are_refused_by_the_parser(capsys, argv, says):
    with pytest.raises(SystemExit):
        cli_main(["sim", "hops", *argv])
    err = capsys.readouterr().err
    assert says in err and err.startswith("usage: kadnode sim")


def test_loss_drops_that_share_of_datagrams_and_the_report_says_how_to_replay_it(capsys):
    argv = ["sim", "load", "--nodes", "40", "--seed", str(SEED), "--json", "--quiet"]
    assert cli_main([*argv, "--loss", "0.1"]) == 0
    data = json.loads(capsys.readouterr().out)
    perf = data["perf"]
    dropped = perf["datagrams_dropped"] / (perf["datagrams_dropped"] + perf["datagrams_delivered"])
    assert dropped == pytest.approx(0.1, abs=0.01)
    assert f"kadnode sim load --nodes 40 --seed {SEED} --loss 0.1" in data["command"]


def test_latency_times_lookups_puts_and_gets_in_round_trips_and_loss_costs_accuracy():
    report = scenario_latency(64, SEED, loss=0.0, lookups=60, values=20)
    clean = report.rows[0]
    # ~1.2 hops at N=64; a lookup ends once the beta nearest have answered,
    # and the rest of its k are as they named them: nearly always the truth.
    assert clean["nearest"] == clean["get_ok"] == 1.0 and clean["exact"] >= 0.9
    assert clean["lookup_rtt"] == pytest.approx(clean["lookup_ms"] / 100, rel=0.01)
    assert 0 < clean["get_ms"] < clean["lookup_ms"] < clean["put_ms"]
    # Idle: each node asks its successor once a stabilize interval.
    (_, _, idle), (_, _, joins) = report.extra
    by_kind = {row["kind"]: row for row in idle}
    interval = Config().stabilize_interval
    assert by_kind["RingQuery"]["datagrams_s"] == pytest.approx(1 / interval, rel=0.1)
    assert by_kind["all"]["bytes_s"] == pytest.approx(sum(r["bytes_s"] for r in idle[:-1]))
    # Joining: a lookup of a newcomer reaches it more often the later it
    # starts after the newcomer's first seed reply, and always within 3 round trips.
    assert [row["rtts"] for row in joins] == list(PROBE_RTTS)
    assert all(row["probes"] == JOINERS for row in joins)
    shares = [row["lookup_ok"] for row in joins]
    assert shares == sorted(shares) and shares[PROBE_RTTS.index(3)] == 1.0
    lossy = scenario_latency(64, SEED, loss=0.2, lookups=60, values=20).rows[0]
    assert lossy["loss"] == 0.2 and lossy["lookup_ms"] > clean["lookup_ms"]


def test_deletes_made_on_one_side_of_a_split_stay_deleted_after_the_heal():
    report = scenario_delete(60, SEED, keys=6, crashed=4, newcomers=4, watch_for=600.0)
    split, *healed = report.rows
    # While split, the other side still reads every deleted key's old version.
    assert split["live_reads"] == split["reads"] == 13 and split["tombstones"] == 0
    # After the heal no read returns one, and the replicas converge on the tombstones.
    assert [r["live_reads"] for r in healed] == [0] * len(healed)
    assert healed[0]["stale"] > 0 and healed[-1]["stale"] == 0
    assert report.ok, report.failures
    assert "The newcomers hold" in report.notes[3] and " and 0 old versions" in report.notes[3]


def test_the_cli_help_names_every_scenario():
    assert SIM_SCENARIOS.split(", ") == list(SCENARIOS)
