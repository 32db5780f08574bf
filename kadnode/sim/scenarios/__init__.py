"""The simulation scenarios, by name, with their default network sizes. A registry, no I/O.

``kadnode sim <scenario> --nodes N --seed S`` (or ``python -m kadnode.sim``)
builds a network of unchanged :class:`~kadnode.core.node.NodeCore` instances
on :class:`~kadnode.sim.network.SimNetwork` (lognormal per-pair latency,
loss, partitions, crashes; seeded, deterministic) and measures what the
papers predict:

``hops``
    lookup hops and success against N, beside log2 N and the Kademlia
    estimate log_{2^b}(N/k) + c (Maymounkov & Mazieres 2002, 2.3 and 4.2);
``failure``
    a fraction p of nodes fails at once; lookups and gets from survivors,
    beside the Chord paper's fig. 11 (no replication: failures ~ p);
``churn``
    lookups and gets over time while nodes leave and join with Weibull
    session lengths (Stutzbach & Rejaie 2006);
``partition``
    two halves cut apart, then healed: time until routing tables span both
    halves again, and records lost;
``load``
    values held per node: min / median / p99 / max and the Gini index;
``latency``
    lookup, put and get times and lookup accuracy under wide-area latency
    and 0, 1, 5 and 20 % packet loss;
``delete``
    signed values, shared values and a peer record deleted on one side of a
    split: no read after the heal returns them, and the tombstones reach the
    other half, restarted replicas and newcomers;
``skew``
    a share of the nodes booted with clocks off by up to S = 0, 5 min, 1 h
    and past the 6 h peer-record lifetime: plain values found, a TTL kept to
    within S, signed peer records verified or refused (and why).

Networks are built by the real join (``NodeCore.bootstrap``), in waves of
newcomers arriving over a few seconds, through a few well-known seed nodes,
as a real network grows (:class:`~kadnode.sim.world.World`). Every scenario
is called as ``run(nodes, seed, progress=...)`` and returns a
:class:`~kadnode.sim.report.Report` with its trace digest: one seed gives
one digest, and a failing run names its seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from kadnode.sim.report import Report
from kadnode.sim.scenarios.churn import scenario_churn
from kadnode.sim.scenarios.delete import scenario_delete
from kadnode.sim.scenarios.failure import scenario_failure
from kadnode.sim.scenarios.hops import scenario_hops
from kadnode.sim.scenarios.latency import scenario_latency
from kadnode.sim.scenarios.load import scenario_load
from kadnode.sim.scenarios.partition import scenario_partition
from kadnode.sim.scenarios.skew import scenario_skew


class Scenario(NamedTuple):
    run: Callable[..., Report]  # run(nodes, seed, *, progress=None, ...) -> Report
    nodes: int  # the default network size


# In the order ``kadnode sim all`` reports them.
SCENARIOS: dict[str, Scenario] = {
    "hops": Scenario(scenario_hops, 10_000),
    "failure": Scenario(scenario_failure, 10_000),
    "churn": Scenario(scenario_churn, 1000),
    "partition": Scenario(scenario_partition, 1000),
    "load": Scenario(scenario_load, 1000),
    "latency": Scenario(scenario_latency, 2000),
    "delete": Scenario(scenario_delete, 500),
    "skew": Scenario(scenario_skew, 200),
}
