"""``kadnode sim`` and ``python -m kadnode.sim``: the argument parser, running one
scenario or all of them, and printing or writing their reports.

I/O: prints reports (text or JSON) to stdout and progress to stderr, writes
the markdown and PNG files it is asked for (``--out``, ``--plot``), and for
``all`` forks a child process per group of scenarios. The simulations
themselves send nothing over any network.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from kadnode.config import Config
from kadnode.inputs import at_least, probability
from kadnode.sim import plots
from kadnode.sim.fork import forked_map
from kadnode.sim.report import Report, write_report
from kadnode.sim.scenarios import SCENARIOS
from kadnode.sim.scenarios.failure import FAILURE_REPLICATE_INTERVAL, scenario_failure
from kadnode.sim.scenarios.hops import scenario_hops
from kadnode.sim.world import Progress, World, tuned_gc


def run_scenario(
    name: str, nodes: int | None, seed: int, quiet: bool = False, loss: float | None = None
) -> Report:
    """One scenario by name, on ``nodes`` nodes or its default size; with
    ``loss``, every datagram is dropped with that probability (``latency``
    without it runs each of its loss rates)."""
    scenario = SCENARIOS[name]
    n = nodes if nodes is not None else scenario.nodes
    extra = {} if loss is None else {"loss": loss}
    report = scenario.run(n, seed, progress=Progress(name, enabled=not quiet), **extra)
    report.loss = loss
    return report


def run_all(
    nodes: int | None,
    seed: int,
    quiet: bool = False,
    workers: int = 2,
    loss: float | None = None,
) -> list[Report]:
    """Every scenario, in groups, each group in a forked child of this
    process, at most ``workers`` children at once (:func:`~kadnode.sim.fork.forked_map`).

    One child grows the big network and runs hops then failure on it:
    growing 10,000 nodes is the longest part of both, so the failure
    scenario continues on the network the hops scenario grew (built with
    the failure scenario's config; hops stores nothing, so its traffic and
    digest are those of ``kadnode sim hops`` alone). Every other scenario
    gets a child of its own, forked from the small parent as a
    worker frees up (so memory per node is measured cleanly); with the
    default two workers they run one after the other beside the first. The
    failure scenario forks its own children (two at once) from the first
    child, so more than ``workers`` processes may run for a while.
    """
    groups = [
        ("hops", "failure"),
        ("churn",),
        ("partition",),
        ("load",),
        ("latency",),
        ("delete",),
        ("skew",),
    ]

    def run_group(names: tuple[str, ...]) -> list[Report]:
        if names[0] == "hops":
            return _hops_then_failure(nodes, seed, quiet, loss)
        return [run_scenario(name, nodes, seed, quiet, loss) for name in names]

    with tuned_gc():
        done = forked_map(run_group, groups, workers)
    reports = {r.scenario: r for group in done for r in group}
    return [reports[name] for name in SCENARIOS]


def _hops_then_failure(
    nodes: int | None, seed: int, quiet: bool, loss: float | None = None
) -> list[Report]:
    size = nodes if nodes is not None else max(SCENARIOS["hops"].nodes, SCENARIOS["failure"].nodes)
    shared = World(
        "hops",
        seed,
        config=Config(replicate_interval=FAILURE_REPLICATE_INTERVAL),
        loss=loss or 0.0,
        progress=Progress("hops", enabled=not quiet),
    )
    hops = scenario_hops(size, seed, world=shared)
    hops.loss = loss
    shared.progress = Progress("failure", enabled=not quiet)
    failure = scenario_failure(size, seed, world=shared)
    failure.loss = loss
    failure.reproduce = (
        f"python -m kadnode.sim all --seed {seed}"
        + (f" --nodes {nodes}" if nodes is not None else "")
        + ("" if loss is None else f" --loss {loss:g}")
    )
    failure.reproduce_note = "the failure scenario continues on the network grown by hops"
    return [hops, failure]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"], help="what to simulate")
    parser.add_argument(
        "--nodes",
        type=at_least(2),
        default=None,
        help="network size (default per scenario: "
        + ", ".join(f"{name} {s.nodes}" for name, s in SCENARIOS.items())
        + ")",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed (default %(default)s)")
    parser.add_argument(
        "--loss",
        type=probability,
        default=None,
        metavar="P",
        help="drop each datagram with probability P, 0 <= P < 1 (default: none; latency runs"
        " 0, 0.01, 0.05 and 0.2)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--plot", type=Path, default=None, metavar="FILE.png", help="write a plot")
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR",
        help="write <scenario>.md and <scenario>.png there (e.g. docs/sim)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _reports(args: argparse.Namespace) -> Iterator[Report]:
    if args.scenario == "all":
        yield from run_all(args.nodes, args.seed, args.quiet, loss=args.loss)
    else:
        yield run_scenario(args.scenario, args.nodes, args.seed, args.quiet, args.loss)


def run_command(args: argparse.Namespace) -> int:
    """Run ``kadnode sim``: 0 when every invariant held, 1 when one failed."""
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    if args.plot is not None and len(names) > 1:
        print("kadnode: error: --plot takes one scenario; use --out DIR for all", file=sys.stderr)
        return 2
    # Both draw PNGs: refuse before simulating, not once the run is done.
    drawing = next((flag for flag in ("plot", "out") if getattr(args, flag) is not None), None)
    if drawing is not None and not plots.can_plot():
        print(
            f"kadnode: error: --{drawing} needs matplotlib, which is not installed here"
            " (pip install matplotlib)",
            file=sys.stderr,
        )
        return 2
    reports: list[Report] = []
    runs = _reports(args)
    while True:
        try:
            report = next(runs)
        except StopIteration:
            break
        except Exception as exc:
            print(
                f"kadnode sim {args.scenario}: error (seed {args.seed}):"
                f" {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            return 2
        name = report.scenario
        reports.append(report)
        if args.plot is not None:
            plots.plot(report, args.plot)
        if args.out is not None:
            for path in write_report(report, args.out):
                print(f"wrote {path}", file=sys.stderr)
        if not args.json:
            print(report.text())
            print()
        if not report.ok:
            print(f"kadnode sim {name}: FAILED with seed {args.seed}", file=sys.stderr)
    if args.json:
        data = [r.as_json() for r in reports]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
    return 0 if all(r.ok for r in reports) else 1


def main(argv: list[str] | None = None, prog: str = "python -m kadnode.sim") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a seeded simulation of many node cores on a virtual network.",
    )
    add_arguments(parser)
    return run_command(parser.parse_args(argv))
