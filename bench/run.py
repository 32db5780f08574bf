"""kadnode beside bmuller/kademlia and OpenDHT: one command, one report. I/O.

    python bench/run.py                        # N = 50, 200, 1000; 3 repeats
    python bench/run.py --sizes 50,200 --repeats 1

For every N and repeat, each implementation runs the same workload
(bench/workload.py) in a subprocess of its own, bounded by ``--timeout``:
N nodes on 127.0.0.1, all joined, then ``--values`` puts from random nodes
and gets of those keys from other random nodes, one at a time. Then two
figures for kadnode alone (bench/kadload.py): FIND_NODE replies per second
one node serves on one core, and lookups per second an N-node network
sustains under concurrent clients. Medians across repeats go into a markdown
table (``--out``, docs/benchmarks.md) and a plot of put/get p50 against N
(``--plot``, docs/benchmarks.png); every raw result goes beside the page
(``--json``, docs/benchmarks.json), and the page is rendered from that JSON
alone (:func:`render_page`), so a published page is its JSON's figures.
Progress goes to stderr. A run that fails or times out becomes "n/a
(reason)" in its cell; nothing waits unbounded.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from kadnode.config import K
from kadnode.shell import loop

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
IMPLS = ("kadnode", "bmuller", "opendht", "kadnode8")
TITLES = {
    "kadnode": "kadnode",
    "kadnode8": "kadnode k=8",
    "bmuller": "bmuller",
    "opendht": "OpenDHT",
}
DISTRIBUTIONS = {
    "kadnode": "kadnode",
    "kadnode8": "kadnode",
    "bmuller": "kademlia",
    "opendht": "opendht",
}
# Nodes a put stores the value on, each as configured here: kadnode's k;
# kadnode8, kadnode with k = 8 (bench/workload.py), like with like beside
# OpenDHT's TARGET_NODES (8, in include/opendht/routing_table.h: a put is
# done once the 8 closest good nodes of its search have acknowledged it,
# Search::isAnnounced); bmuller's Server(ksize=20) default.
REPLICAS = {"kadnode": K, "kadnode8": 8, "bmuller": 20, "opendht": 8}
# The kadnode-only figures' server waits at most this long past its load.
SERVE_SLACK_S = 60.0


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---- running workers ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    result: dict | None
    reason: str = ""  # why result is None


def _last_json(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _outcome(code: int, stdout: str) -> Outcome:
    answer = _last_json(stdout)
    if answer is not None and "error" in answer:
        return Outcome(None, answer["error"])
    if code != 0 or answer is None:
        return Outcome(None, f"exit code {code}" if code else "no result")
    return Outcome(answer)


# A workload run in a network namespace of its own, loopback only, so that
# the datagrams it counts (/proc/net/snmp) are its own and not also those of
# whatever else runs on the machine. Needs root, unshare and ip.
OWN_NETNS = ("unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh")


def own_netns_works() -> bool:
    try:
        probe = subprocess.run([*OWN_NETNS, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def run_worker(args: list[str], timeout: float, wrapper: tuple[str, ...] = ()) -> Outcome:
    """Run one worker script (under ``wrapper``); its stderr (progress) passes through."""
    command = [*wrapper, sys.executable, *args]
    proc = subprocess.Popen(command, cwd=BENCH, stdout=subprocess.PIPE, text=True)
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return Outcome(None, f"timed out after {timeout:.0f} s")
    return _outcome(proc.returncode, stdout)


def run_find_node(seconds: float, contacts: int, timeout: float, seed: int) -> Outcome:
    """A kadnode server process and a load-generator process against it."""
    limit = seconds + SERVE_SLACK_S
    server = subprocess.Popen(
        [sys.executable, "kadload.py", "serve", "--limit", str(limit)],
        cwd=BENCH,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = server.stdout.readline()  # the address, or nothing if it died
        hello = _last_json(first)
        if hello is None or "port" not in hello:
            return Outcome(None, "the server did not start")
        load = run_worker(
            [
                "kadload.py",
                "load",
                "--port",
                str(hello["port"]),
                "--id",
                hello["id"],
                "--contacts",
                str(contacts),
                "--seconds",
                str(seconds),
                "--seed",
                str(seed),
            ],
            timeout,
        )
        stdout, _ = server.communicate(input="", timeout=timeout)  # EOF: report and exit
        served = _outcome(server.returncode, stdout)
        if load.result is None:
            return load
        if served.result is None:
            return served
        return Outcome({**load.result, "server": served.result})
    except subprocess.TimeoutExpired:
        return Outcome(None, f"timed out after {timeout:.0f} s")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


# ---- figures -----------------------------------------------------------------------


def significant(x: float) -> str:
    """Three significant digits, never scientific: 0.0234, 1.23, 123, 1,234."""
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}" if x >= 0.01 else f"{x:.4f}"


@dataclass(frozen=True, slots=True)
class Figure:
    """One table row: how to read it from a workload result, how to show it."""

    label: str
    better: str  # "lower" or "higher"
    path: tuple[str, ...]
    fmt: Callable[[float], str]
    out_of_values: bool = False  # shown as "found/values"

    def value(self, result: dict) -> float | None:
        """The figure, or None where this run could not measure it."""
        v = result
        for part in self.path:
            v = v.get(part) if isinstance(v, dict) else None
        return None if v is None else float(v)


WORKLOAD_FIGURES = (
    Figure("bootstrap s (all joined)", "lower", ("join_s",), significant),
    Figure("put p50 ms", "lower", ("put_ms", "p50"), significant),
    Figure("put p99 ms", "lower", ("put_ms", "p99"), significant),
    Figure("get p50 ms", "lower", ("get_ms", "p50"), significant),
    Figure("get p99 ms", "lower", ("get_ms", "p99"), significant),
    Figure("values found", "higher", ("found",), "{:.0f}".format, out_of_values=True),
    Figure("peak memory per node KiB", "lower", ("mem_per_node_kb",), "{:,.0f}".format),
    Figure("datagrams per put", "lower", ("put_datagrams",), "{:.1f}".format),
    Figure("datagrams per get", "lower", ("get_datagrams",), "{:.1f}".format),
)


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    better: str
    cells: dict[str, str]  # impl -> shown text
    values: dict[str, float]  # impl -> median, where there is one


def median_cell(fig: Figure, outcomes: list[Outcome], suffix: str = "") -> tuple[str, float | None]:
    measured = [fig.value(o.result) for o in outcomes if o.result is not None]
    good = [v for v in measured if v is not None]
    if not good:
        reasons = sorted({o.reason for o in outcomes if o.reason}) or (
            ["not measured"] if measured else ["not run"]
        )
        return f"n/a ({'; '.join(reasons)})", None
    med = statistics.median(good)
    text = fig.fmt(med) + suffix
    if len(good) < len(outcomes):
        text += f" ({len(good)}/{len(outcomes)} runs)"
    return text, med


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "—"
    if b == 0:
        return "∞" if a else "1.00"
    return f"{a / b:.2f}"


def build_rows(results: dict, args) -> list[Row]:
    rows = []
    for n in args.sizes:
        for fig in WORKLOAD_FIGURES:
            cells, values = {}, {}
            for impl in IMPLS:
                outcomes = results["workload"].get(f"{impl}/{n}", [])
                suffix = f"/{args.values}" if fig.out_of_values else ""
                cells[impl], med = median_cell(fig, outcomes, suffix)
                if med is not None:
                    values[impl] = med
            rows.append(Row(f"{fig.label} (N={n})", fig.better, cells, values))
    for key, fig in (
        (
            "find_node",
            Figure(
                f"FIND_NODE replies/s, one node, one core ({args.contacts} contacts)",
                "higher",
                ("replies_per_s",),
                "{:,.0f}".format,
            ),
        ),
        (
            "lookups",
            Figure(
                f"lookups/s, N={args.lookup_nodes}, {args.lookup_clients} concurrent clients",
                "higher",
                ("lookups_per_s",),
                "{:,.0f}".format,
            ),
        ),
    ):
        text, med = median_cell(fig, results[key])
        cells = {impl: "—" for impl in IMPLS} | {"kadnode": text}
        rows.append(Row(fig.label, fig.better, cells, {} if med is None else {"kadnode": med}))
    return rows


def ran(args) -> list[str]:
    """The implementations a run ran (a run recorded before ``--impls`` ran
    the first three)."""
    return getattr(args, "impls", list(IMPLS[:3]))


def render_table(rows: list[Row], impls: list[str]) -> str:
    """One column per implementation run (runs before kadnode8 existed have
    none for it), then kadnode's ratios, and kadnode8's to OpenDHT."""
    shown = [i for i in IMPLS if i in impls]
    eight = "kadnode8" in shown
    head = ["figure", "better", *(TITLES[i] for i in shown), "kadnode÷bmuller", "kadnode÷OpenDHT"]
    head += ["k=8÷OpenDHT"] * eight
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        k, opendht = r.values.get("kadnode"), r.values.get("opendht")
        cols = [
            r.label,
            r.better,
            *(r.cells[i] for i in shown),
            ratio(k, r.values.get("bmuller")),
            ratio(k, opendht),
        ]
        cols += [ratio(r.values.get("kadnode8"), opendht)] * eight
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


# ---- the targets (issue 7) -----------------------------------------------------------

FIND_NODE_TARGET = 20_000  # replies per second from one node on one core
TARGET_SIZES = (200, 1000)  # where kadnode is held against OpenDHT and bmuller
BMULLER_PUT_FACTOR = 10  # kadnode's put p50 at least this many times faster


def check_targets(rows: list[Row], args, results: dict) -> list[tuple[str, bool | None, str]]:
    """(target, met, the numbers) for each target this run measured; met is
    None where a figure is missing (not run, or n/a). Each target is judged
    on the medians in ``rows``, except "every value found", which every run
    must meet: judged on the fewest found over the raw ``results``, a failed
    run missing it."""
    by_label = {r.label: r for r in rows}
    out: list[tuple[str, bool | None, str]] = []

    def every_run_finds_all(n: int) -> None:
        what = f"every value found (N={n})"
        outcomes = results["workload"].get(f"kadnode/{n}", [])
        if not outcomes:
            out.append((what, None, "not measured in this run"))
            return
        found = [o.result.get("found") if o.result is not None else None for o in outcomes]
        good = [f for f in found if f is not None]
        failed = len(found) - len(good)
        mine = f"n/a in {failed} of {len(found)} runs" if failed else f"{min(good):,.0f}"
        met = not failed and min(good) >= args.values
        out.append((what, met, f"kadnode {mine} against {args.values:,}"))

    def against(what: str, label: str, other: str | None, bound_of, me: str = "kadnode") -> None:
        row = by_label.get(label)
        mine = row.values.get(me) if row else None
        base = row.values.get(other) if row and other else None
        if mine is None or (other and base is None):
            out.append((what, None, "not measured in this run"))
            return
        bound = bound_of(base)
        met = mine <= bound if row.better == "lower" else mine >= bound
        out.append((what, met, f"{TITLES[me]} {significant(mine)} against {significant(bound)}"))

    for n in (n for n in TARGET_SIZES if n in args.sizes):
        for op in ("put", "get"):
            against(
                f"{op} p50 no slower than OpenDHT's (N={n})",
                f"{op} p50 ms (N={n})",
                "opendht",
                lambda b: b,
            )
        if "kadnode8" in ran(args):
            against(
                f"put p50 with 8 replicas no slower than OpenDHT's (N={n})",
                f"put p50 ms (N={n})",
                "opendht",
                lambda b: b,
                me="kadnode8",
            )
        against(
            f"put p50 at least {BMULLER_PUT_FACTOR}x faster than bmuller's (N={n})",
            f"put p50 ms (N={n})",
            "bmuller",
            lambda b: b / BMULLER_PUT_FACTOR,
        )
    if 1000 in args.sizes:
        every_run_finds_all(1000)
    for n in args.sizes:
        against(
            f"peak memory per node no more than bmuller's (N={n})",
            f"peak memory per node KiB (N={n})",
            "bmuller",
            lambda b: b,
        )
    find_node = next((r for r in rows if r.label.startswith("FIND_NODE")), None)
    if find_node is not None:
        against(
            f"one node serves {FIND_NODE_TARGET:,} FIND_NODE requests/s",
            find_node.label,
            None,
            lambda _: FIND_NODE_TARGET,
        )
    return out


def render_targets(targets: list[tuple[str, bool | None, str]]) -> str:
    word = {True: "met", False: "missed", None: "n/a"}
    return "\n".join(f"- {what}: **{word[met]}** ({numbers})" for what, met, numbers in targets)


# ---- the report ----------------------------------------------------------------------


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_facts() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                cpu,
            )
    except OSError:
        pass
    mem_gib = 0.0
    with contextlib.suppress(ValueError, OSError):
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_gib, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "loop": loop.name(),
        "versions": {i: version(d) for i, d in DISTRIBUTIONS.items()},
        "replicas": REPLICAS,
        "load_start": os.getloadavg()[0],
        "own_netns": own_netns_works(),
        "git": git_revision(),
    }


def render_report(
    rows, targets, facts, args, command: str, started: str, wall_s: float, no_plot
) -> str:
    v = facts["versions"]
    replicas = ", ".join(f"{TITLES[i]} {n}" for i in IMPLS if (n := facts["replicas"].get(i)))
    counted = (
        "Each workload run has a network namespace of its own (loopback\n"
        "  only), so the counter counts its datagrams alone."
        if facts["own_netns"]
        else "The counter is the whole network namespace's: UDP that other\n"
        "  programs send during a run is counted too (as root, with unshare and ip,\n"
        "  each run gets a namespace of its own)."
    )
    eight = (
        "\n- **kadnode k=8** is kadnode with k = 8, OpenDHT's replica count (and\n"
        "  bucket size), its write and read quorums a majority of the 8: like with\n"
        "  like for put latency beside OpenDHT, which waits for 8 acknowledgements."
        if "kadnode8" in ran(args)
        else ""
    )
    plot_line = (
        f"![put and get p50 against N]({Path(args.plot).name})"
        if no_plot is None
        else f"(No plot: {no_plot}.)"
    )
    return f"""# Benchmarks: kadnode, bmuller/kademlia, OpenDHT

Regenerate this page and `benchmarks.png` with one command, from the
repository root, in the project's virtualenv:

    pip install -e '.[bench]'
    python bench/run.py

(`--sizes 50,200,1000 --repeats 3` are the defaults; `python bench/run.py -h`
lists the rest.)

## This run

- command: `{command}`
- date: {started} (UTC), {wall_s:.0f} s wall clock
- machine: {facts["cores"]} cores ({facts["cpu"]}), {facts["memory_gib"]} GiB, {facts["os"]};
  load average (1 min) {facts["load_start"]:.2f} at the start, {facts["load_end"]:.2f} at the end
  (other work on the machine slows every timing)
- Python {facts["python"]} ({facts["loop"]} event loop for kadnode and bmuller);
  kadnode {v["kadnode"]} at git {facts["git"]},
  kademlia (bmuller) {v["bmuller"]}, opendht {v["opendht"]}
- replicas per value (nodes a put stores on): {replicas}
- {args.repeats} repeat(s); every cell is the median across repeats; the raw
  results of every run: [{Path(args.json).name}]({Path(args.json).name})

## Results

Each ratio is kadnode's figure divided by the other's; the "better" column
says which direction wins (for "lower" rows a ratio below 1 means kadnode is
ahead, for "higher" rows a ratio above 1).

{render_table(rows, ran(args))}

## Targets

{render_targets(targets)}

Why the missed ones miss, with the profile: the performance section of
[decisions.md](decisions.md).

{plot_line}

## What is measured

- **Same workload for all three.** For each N, every implementation runs in
  a subprocess of its own (`bench/workload.py`): N nodes in that one
  process, each on its own UDP socket on 127.0.0.1, joined through the first
  node; then {args.values} puts, each from a random node, each followed by a
  get of that key from another random node, one operation at a time. The
  node choices come from one seed per repeat, shared by the three.{eight}
- **bootstrap s**: from the first join to the last node joined, not counting
  socket creation. kadnode and bmuller join in batches of 4 concurrent
  `bootstrap()` calls (one event loop hosts every node, and bmuller's
  rpcudp times out after 5 s); kadnode's bootstrap includes its own-id
  lookup and bucket refresh, bmuller's its own-id lookup. OpenDHT has no
  completion signal: a node counts as joined once it is connected (one good
  node in its routing table, OpenDHT's own `getStatus` rule); its runners
  fill their tables on their own threads afterwards.
- **put / get ms**: wall time of one `put`/`set` (until the implementation
  reports the store done) and one `get` (until the first value or the end of
  the search). A put is done once its replicas have acknowledged it, and
  the three keep different numbers of them ({replicas}):
  OpenDHT's put stores on fewer nodes, so it sends fewer STOREs and waits
  for fewer replies. Values are short strings; **values found** counts gets that
  returned exactly the value stored. Every operation is bounded (30 s).
  kadnode's and bmuller's `get` answer at once when the reading node holds
  a replica itself (about 20/(N-1) of the gets: 41 % at N=50, 10 % at
  N=200); OpenDHT's searches the network every time.
- **peak memory per node**: (VmHWM at the end - VmRSS just before the first
  node was created) / N, from /proc/self/status of that subprocess.
- **datagrams per put / get**: the mean number of UDP datagrams sent (by all
  nodes) while one operation ran, from the OutDatagrams counter in
  /proc/net/snmp: it explains the latencies, since in one process every
  datagram costs its sender and its receiver CPU time. OpenDHT works on its
  own threads, so some of its datagrams may fall outside the window they
  belong to. {counted}
- **FIND_NODE replies/s** (kadnode only): one kadnode node in a process of
  its own whose routing table holds {args.contacts} live contacts (nodes with
  ids spread over its buckets ping it first); a separate load-generator
  process sends valid `find_node` requests (random targets, built with
  `kadnode.core.codec.encode_request`) over loopback UDP, keeping 64 in flight,
  for {args.find_node_seconds:g} s, counting replies. With two cores or more the two
  processes are pinned to different cores.
- **lookups/s** (kadnode only): an N={args.lookup_nodes} kadnode network in one process;
  {args.lookup_clients} tasks run node lookups of random ids from random nodes back to
  back for {args.lookup_seconds:g} s.
- OpenDHT runs with its per-IP rate limit lifted (every node shares
  127.0.0.1, which the limit would throttle; OpenDHT's own tests do the
  same), peer discovery (multicast) off and a private network id.
- A run that fails or outlives `--timeout` ({args.timeout:g} s) shows as
  "n/a (reason)"; "(k/R runs)" marks a median over fewer than all repeats.
"""


def plot(rows: list[Row], args) -> str | None:
    """Write put/get p50 (the table's medians) against N; return why not, or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed"
    by_label = {r.label: r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, title in zip(axes, ("put", "get"), strict=True):
        for impl in IMPLS:
            points = []
            for n in args.sizes:
                med = by_label[f"{title} p50 ms (N={n})"].values.get(impl)
                if med is not None:
                    points.append((n, max(med, 1e-3)))
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=TITLES[impl])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(args.sizes, [str(n) for n in args.sizes])
        ax.minorticks_off()
        ax.set_xlabel("nodes (N)")
        ax.set_title(f"{title} latency, p50")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms (log scale)")
    axes[0].legend()
    fig.suptitle(f"{args.values} sequential puts and gets on 127.0.0.1, median of {args.repeats}")
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=100)
    plt.close(fig)
    return None


# ---- command line ---------------------------------------------------------------------


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="50,200,1000", help="comma-separated N (default %(default)s)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--values", type=int, default=200, help="puts and gets per run")
    p.add_argument("--impls", default=",".join(IMPLS), help="which to run (default: all)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per subprocess run")
    p.add_argument(
        "--quick",
        action="store_true",
        help="small kadnode-only figures (1 s each, lookups on 20 nodes): for CI",
    )
    p.add_argument("--find-node-seconds", type=float, default=None)
    p.add_argument("--contacts", type=int, default=200)
    p.add_argument("--lookup-nodes", type=int, default=None)
    p.add_argument("--lookup-clients", type=int, default=16)
    p.add_argument("--lookup-seconds", type=float, default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--plot", default=str(ROOT / "docs" / "benchmarks.png"))
    p.add_argument(
        "--json", default=None, help="write every raw result here (default: beside --out, .json)"
    )
    args = p.parse_args(argv)
    try:
        args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        p.error("--sizes takes comma-separated integers, e.g. 50,200,1000")
    if not args.sizes or min(args.sizes) < 2:
        p.error("--sizes: every N must be at least 2")
    args.impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    if not args.impls or set(args.impls) - set(IMPLS):
        p.error(f"--impls: choose from {','.join(IMPLS)}")
    if args.repeats < 1 or args.values < 1 or args.timeout <= 0:
        p.error("--repeats, --values and --timeout must be positive")
    quick = args.quick
    if args.find_node_seconds is None:
        args.find_node_seconds = 1.0 if quick else 5.0
    if args.lookup_nodes is None:
        args.lookup_nodes = 20 if quick else 200
    if args.lookup_seconds is None:
        args.lookup_seconds = 1.0 if quick else 5.0
    if args.json is None:
        args.json = str(Path(args.out).with_suffix(".json"))
    return args


# What of the arguments the page shows; the JSON keeps them to render it again.
PAGE_ARGS = (
    "sizes", "repeats", "values", "seed", "timeout", "contacts", "find_node_seconds",
    "lookup_nodes", "lookup_clients", "lookup_seconds", "impls",
)  # fmt: skip


def raw_record(results: dict, args, facts: dict, run: dict) -> dict:
    """Everything the page shows, raw: each run's result (or why it has none),
    the arguments, the machine, and ``run`` (command, start, wall clock, plot)."""

    def raw(outcomes: list[Outcome]) -> list[dict]:
        return [o.result or {"error": o.reason} for o in outcomes]

    return {
        "command": run["command"],
        "started": run["started"],
        "wall_s": round(run["wall_s"], 1),
        "no_plot": run["no_plot"],
        "args": {
            **{name: getattr(args, name) for name in PAGE_ARGS},
            "plot": Path(args.plot).name,
            "json": Path(args.json).name,
        },
        "facts": facts,
        "workload": {k: raw(v) for k, v in results["workload"].items()},
        "find_node": raw(results["find_node"]),
        "lookups": raw(results["lookups"]),
    }


def render_page(raw: dict) -> tuple[list[Row], list, str]:
    """The table's rows, the targets and the whole page, from a run's raw JSON alone."""

    def outcomes(results: list[dict]) -> list[Outcome]:
        return [Outcome(None, r["error"]) if "error" in r else Outcome(r) for r in results]

    args = argparse.Namespace(**raw["args"])
    results = {
        "workload": {k: outcomes(v) for k, v in raw["workload"].items()},
        "find_node": outcomes(raw["find_node"]),
        "lookups": outcomes(raw["lookups"]),
    }
    rows = build_rows(results, args)
    targets = check_targets(rows, args, results)
    page = render_report(
        rows, targets, raw["facts"], args, raw["command"], raw["started"], raw["wall_s"],
        raw["no_plot"],
    )  # fmt: skip
    return rows, targets, page


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    t0 = time.monotonic()
    facts = machine_facts()  # before anything is written: git describe sees the code that ran
    results: dict = {"workload": {}, "find_node": [], "lookups": []}
    for n in args.sizes:
        for r in range(args.repeats):
            seed = args.seed + r
            for impl in args.impls:
                tag = f"{impl} N={n} #{r + 1}"
                say(f"{tag}: starting")
                out = run_worker(
                    [
                        "workload.py",
                        impl,
                        "--nodes",
                        str(n),
                        "--values",
                        str(args.values),
                        "--seed",
                        str(seed),
                        "--tag",
                        tag,
                    ],
                    args.timeout,
                    OWN_NETNS if facts["own_netns"] else (),
                )
                results["workload"].setdefault(f"{impl}/{n}", []).append(out)
                if out.result is None:
                    say(f"{tag}: n/a ({out.reason})")
                else:
                    res = out.result
                    say(
                        f"{tag}: join {res['join_s']:.2f} s, put p50 {res['put_ms']['p50']} ms, "
                        f"get p50 {res['get_ms']['p50']} ms, found {res['found']}/{args.values}"
                    )
    if "kadnode" in args.impls:
        for r in range(args.repeats):
            say(f"kadnode FIND_NODE throughput #{r + 1}")
            out = run_find_node(args.find_node_seconds, args.contacts, args.timeout, args.seed + r)
            results["find_node"].append(out)
            if out.result is None:
                say(f"  n/a ({out.reason})")
            say(f"kadnode lookups/s, N={args.lookup_nodes} #{r + 1}")
            out = run_worker(
                [
                    "kadload.py",
                    "lookups",
                    "--nodes",
                    str(args.lookup_nodes),
                    "--clients",
                    str(args.lookup_clients),
                    "--seconds",
                    str(args.lookup_seconds),
                    "--seed",
                    str(args.seed + r),
                ],
                args.timeout,
            )
            results["lookups"].append(out)
            if out.result is None:
                say(f"  n/a ({out.reason})")
    no_plot = plot(build_rows(results, args), args)
    wall_s = time.monotonic() - t0
    run = {"command": command, "started": started, "wall_s": wall_s, "no_plot": no_plot}
    facts["load_end"] = os.getloadavg()[0]
    raw = raw_record(results, args, facts, run)
    rows, targets, page = render_page(raw)
    for path, text in ((args.json, json.dumps(raw, indent=2) + "\n"), (args.out, page)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    say(f"wrote {args.out}, {args.json}" + ("" if no_plot else f" and {args.plot}"))
    print(render_table(rows, args.impls))
    print()
    print(render_targets(targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
