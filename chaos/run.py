#!/usr/bin/env python3
"""Tear a kadnode network apart and report what survived.

    chaos/run.py [--backend auto|docker|netns|process] COMMAND [options]

    up         start N nodes (default 20), 2 of them bootstrap nodes
    partition  split the nodes in two for --duration s, heal, measure convergence
    kill       SIGKILL --fraction of the nodes (--restart: start them again)
    loss       drop --probability of every node's incoming kadnode datagrams
    delay      every node's datagrams wait --ms +- --jitter-ms: tc netem, or where the
               kernel has none, kadnode's send delay (kadnode fault)
    churn      --rounds times: one node leaves for good, a new one joins
    skew       --fraction of the nodes' clocks set up to --max-seconds ahead or behind
               (libfaketime): stepped while running, then across a restart, then put right
    slow       --fraction of the nodes capped at --cpu cores and, with --pause-ms,
               frozen that long in every --period-ms (docker update, pause)
    heal       remove every fault, start stopped nodes, wait until all have contacts
    status     the nodes, their states and routing-table sizes
    down       remove every container, namespace, process and network of the cluster

Backends: docker (containers on an internal docker network of our own; every
fault, and the only one with skew and slow), netns (one network namespace per
daemon, root; the network faults, kill, churn), process (daemons on
127.0.0.1; kill, churn and kadnode's own delay). Every daemon runs with
--allow-fault-injection. ``auto`` takes the backend whose cluster is up, else
docker if an engine answers, else netns as root, else process. Exit codes: 0
no violation, 1 violations, 2 the harness could not run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `chaos` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chaos import host_faults, scenarios
from chaos.cluster import Backend, ChaosError

BACKENDS = ("docker", "netns", "process")


def make_backend(kind: str, args: argparse.Namespace) -> Backend:
    if kind == "docker":
        from chaos.docker_backend import DockerBackend

        return DockerBackend(args.name, args.image)
    from chaos.process_backend import NetnsBackend, ProcessBackend

    cls = NetnsBackend if kind == "netns" else ProcessBackend
    state = Path(args.state_dir) if args.state_dir else None
    return cls(args.name, state)


def choose_backend(args: argparse.Namespace) -> Backend:
    """The named backend; for ``auto``, the one whose cluster is up, else the first usable."""
    if args.backend != "auto":
        return make_backend(args.backend, args)
    usable, reasons = [], []
    for kind in BACKENDS:
        try:
            backend = make_backend(kind, args)
        except ChaosError as exc:
            reasons.append(f"{kind}: {exc}")
            continue
        if backend.exists():
            return backend
        usable.append(backend)
    if not usable:
        raise ChaosError("no backend can run here: " + "; ".join(reasons))
    if args.command == "up":
        for reason in reasons:
            print(f"chaos: not {reason}", file=sys.stderr)
    return usable[0]


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chaos/run.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--backend", choices=("auto", *BACKENDS), default="auto")
    parser.add_argument("--name", default="kadchaos", help="cluster name (default %(default)s)")
    parser.add_argument("--image", default="kadnode:local", help="docker image (%(default)s)")
    parser.add_argument("--state-dir", help="netns/process state (default /tmp/NAME-BACKEND)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("up", help="start the nodes")
    p.add_argument("--nodes", type=int, default=20)
    p.add_argument("--join-timeout", type=float, default=120.0)
    p = sub.add_parser("partition", help="split in two, then heal")
    p.add_argument("--duration", type=float, default=60.0, help="seconds split (%(default)s)")
    p.add_argument("--heal-timeout", type=float, default=180.0)
    p = sub.add_parser("kill", help="SIGKILL a fraction of the nodes")
    p.add_argument("--fraction", type=float, default=0.3)
    p.add_argument("--restart", action="store_true", help="start the killed nodes again")
    p.add_argument("--timeout", type=float, default=120.0)
    p = sub.add_parser("loss", help="random datagram loss")
    p.add_argument("--probability", type=float, default=0.2)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--timeout", type=float, default=120.0)
    p = sub.add_parser("delay", help="datagram delay (tc netem, else kadnode fault)")
    p.add_argument("--ms", type=int, default=200, help="delay (default %(default)s)")
    p.add_argument("--jitter-ms", type=int, default=50, help="+- jitter (default %(default)s)")
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--timeout", type=float, default=120.0)
    p = sub.add_parser("churn", help="nodes leave for good and new ones join")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=120.0)
    p = sub.add_parser("skew", help="wrong clocks (libfaketime), then put right")
    p.add_argument("--max-seconds", type=positive, default=300.0, help="(default %(default)s)")
    p.add_argument("--fraction", type=fraction, default=0.5, help="(default %(default)s)")
    p.add_argument(
        "--no-expiry",
        action="store_true",
        help="skip the ttl value's check (its T is 2S + 60 s: for a large S, hours)",
    )
    p.add_argument("--timeout", type=float, default=120.0)
    p = sub.add_parser("slow", help="CPU-starved and paused nodes")
    p.add_argument("--fraction", type=fraction, default=0.3, help="(default %(default)s)")
    p.add_argument("--cpu", type=positive, default=0.05, help="cores each (default %(default)s)")
    p.add_argument("--pause-ms", type=int, default=0, help="frozen this long each period")
    p.add_argument("--period-ms", type=int, default=1000, help="(default %(default)s)")
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--timeout", type=float, default=180.0)
    p = sub.add_parser("heal", help="remove every fault")
    p.add_argument("--timeout", type=float, default=120.0)
    sub.add_parser("status", help="show the nodes")
    sub.add_parser("down", help="remove the cluster")
    return parser


def run(args: argparse.Namespace) -> scenarios.Report:
    backend = choose_backend(args)
    chaos = scenarios.Chaos(backend, args.seed, scenarios.Progress(args.quiet))
    chaos.progress(f"backend: {backend.name}")
    if args.command == "up":
        return scenarios.up(chaos, args.nodes, args.join_timeout)
    if args.command == "down":
        return scenarios.down(chaos)
    scenarios.require_cluster(backend)
    if args.command == "partition":
        return scenarios.partition(chaos, args.duration, args.heal_timeout)
    if args.command == "kill":
        return scenarios.kill(chaos, args.fraction, args.restart, args.timeout)
    if args.command == "loss":
        return scenarios.loss(chaos, args.probability, args.duration, args.timeout)
    if args.command == "delay":
        return scenarios.delay(chaos, args.ms, args.jitter_ms, args.duration, args.timeout)
    if args.command == "churn":
        return scenarios.churn(chaos, args.rounds, args.interval, args.timeout)
    if args.command == "skew":
        return host_faults.skew(
            chaos, args.max_seconds, args.fraction, args.timeout,
            expiry=not args.no_expiry,
        )  # fmt: skip
    if args.command == "slow":
        if not 0 <= args.pause_ms < args.period_ms:
            raise ChaosError("--pause-ms must be at least 0 and less than --period-ms")
        return host_faults.slow(
            chaos, args.fraction, args.cpu, args.pause_ms, args.period_ms, args.duration,
            args.timeout,
        )  # fmt: skip
    if args.command == "heal":
        return scenarios.heal(chaos, args.timeout)
    return scenarios.status(chaos)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(args)
    except ChaosError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    except subprocess.TimeoutExpired as exc:
        print(f"chaos: a command on a node did not finish: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not type(exc).__module__.startswith("docker"):
            raise
        print(f"chaos: docker: {exc}", file=sys.stderr)  # the engine refused something
        return 2
    except KeyboardInterrupt:
        if args.command in ("partition", "loss", "delay", "slow", "skew"):
            after = "faults were removed; 'down' removes the cluster"
        else:  # kill, churn, heal, up: nodes may be left stopped
            after = "'heal' starts stopped nodes and clears faults; 'down' removes the cluster"
        print(f"chaos: interrupted ({after})", file=sys.stderr)
        return 130
    print(json.dumps(report.as_json(), indent=2) if args.json else report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
