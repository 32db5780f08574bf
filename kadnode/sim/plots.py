"""One figure per scenario, drawn from its :class:`~kadnode.sim.report.Report`. I/O: writes a PNG.

matplotlib is imported inside :func:`plot` only, so the simulator runs (and
its reports render) without it.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from kadnode.sim.oracle import hop_model, one_bit_bound
from kadnode.stats import gini, percentile

if TYPE_CHECKING:
    from kadnode.sim.report import Report


def can_plot() -> bool:
    """Whether matplotlib imports here (:func:`plot` needs it)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot(report: Report, path: Path) -> None:
    """Write the scenario's PNG (matplotlib, imported here only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = _PLOTS[report.scenario](report, plt)
    fig.text(0.99, 0.005, f"{report.command()}  digest {report.digest[:12]}", ha="right",
             fontsize=7, color="gray")  # fmt: skip
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_hops(report: Report, plt):
    rows = report.rows
    n = [r["n"] for r in rows]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    ax.plot(n, [r["mean"] for r in rows], "o-", color="C0", label="Kademlia, measured mean")
    ax.fill_between(
        n, [1 for _ in rows], [r["p95"] for r in rows], color="C0", alpha=0.12, label="up to p95"
    )
    ax.plot(n, [r["max"] for r in rows], "v", color="C0", alpha=0.5, label="max")
    c, k = report.series["c"], report.series["k"]
    dense = [2 ** (x / 8) for x in range(int(8 * math.log2(n[0])), int(8 * math.log2(n[-1])) + 1)]
    ax.plot(dense, [hop_model(x, k, c) for x in dense], "--", color="C1",
            label=f"log_k(N/k) + {c:.2f}  (2^b = k = {k})")  # fmt: skip
    ax.plot(dense, [one_bit_bound(x, k) for x in dense], ":", color="C3",
            label="log2(N/k) + 1  (b = 1)")  # fmt: skip
    ax.plot(dense, [math.log2(x) for x in dense], ":", color="gray", label="log2 N")
    if "chord" in rows[0]:
        ax.plot(n, [r["chord"] for r in rows], "s-", color="C2", label="Chord routing, measured")
        ax.plot(dense, [0.5 * math.log2(x) for x in dense], "--", color="C2", alpha=0.6,
                label="1/2 log2 N")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("nodes N")
    ax.set_ylabel("hops")
    ax.set_title("Lookup hops against network size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax2.plot(n, [100 * r["nearest"] for r in rows], "o-", label="found the nearest node")
    ax2.plot(n, [100 * r["exact"] for r in rows], "s--", label="exact k closest")
    ax2.set_xscale("log", base=2)
    ax2.set_ylim(min(90, min(100 * r["exact"] for r in rows) - 2), 100.5)
    ax2.set_xlabel("nodes N")
    ax2.set_ylabel("% of lookups")
    ax2.set_title("Lookup success")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    return fig


def _plot_failure(report: Report, plt):
    rows = report.rows
    k = report.params.get("k", 20)
    p = [r["p"] for r in rows]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax.plot(p, [100 * x for x in p], ":", color="gray", label="y = p")
    ax.plot(p, [100 * r["primary_lost"] for r in rows], "o--", color="C3",
            label="no replication: value's node failed (Chord fig. 11)")  # fmt: skip
    ax.plot(p, [100 * r["lookup_fail"] for r in rows], "s-", color="C0",
            label="kadnode lookups: nearest live node missed")  # fmt: skip
    ax.plot(p, [100 * r["get_fail"] for r in rows], "^-", color="C2",
            label=f"kadnode gets failed (k={k})")  # fmt: skip
    if "get_fail_after" in rows[0]:
        ax.plot(p, [100 * r["get_fail_after"] for r in rows], "v-", color="C4",
                label="gets failed after one replication round")  # fmt: skip
    ax.set_xlabel("fraction of nodes failed at once, p")
    ax.set_ylabel("% failed")
    ax.set_title("Failures after a mass failure")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax2.plot(p, [r["replicas"] for r in rows], "^:", color="gray",
             label="surviving holders, anywhere")  # fmt: skip
    ax2.plot(p, [r["near"] for r in rows], "o-", label="k nearest live holding it, right after")
    if "near_after" in rows[0]:
        ax2.plot(p, [r["near_after"] for r in rows], "s-",
                 label="k nearest live holding it, one replication round later")  # fmt: skip
    ax2.plot(p, [k * (1 - x) for x in p], ":", color="gray", label="k (1 - p)")
    ax2.set_xlabel("p")
    ax2.set_ylabel("live replicas per value")
    ax2.set_ylim(0, k + 2)
    ax2.set_title("Replicas per value")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    return fig


def _plot_churn(report: Report, plt):
    rows = report.rows
    t = [r["minute"] for r in rows]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    ax.plot(t, [100 * r["lookup_ok"] for r in rows], "o-", label="lookups reaching the node")
    ax.plot(t, [100 * r["get_ok"] for r in rows], "s-", label="gets finding the value")
    ax.set_ylabel("% successful")
    ax.set_ylim(min(80, min(100 * min(r["lookup_ok"], r["get_ok"]) for r in rows) - 2), 100.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    axn = ax.twinx()
    axn.bar(t, [r["departures"] for r in rows], width=(t[1] - t[0]) * 0.4 if len(t) > 1 else 5,
            color="gray", alpha=0.25, label="departures in bucket")  # fmt: skip
    axn.set_ylabel("departures per bucket")
    axn.legend(fontsize=8, loc="lower right")
    ax.set_title(report.title)
    ax2.plot(t, [r["lookup_p50_ms"] for r in rows], "o-", label="lookup p50")
    ax2.plot(t, [r["lookup_p95_ms"] for r in rows], "o--", label="lookup p95")
    ax2.plot(t, [r["get_p50_ms"] for r in rows], "s-", label="get p50")
    ax2.set_xlabel("minutes of churn")
    ax2.set_ylabel("latency, ms")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="upper left")
    if "dead" in rows[0]:
        axd = ax2.twinx()
        axd.plot(t, [100 * r["dead"] for r in rows], "^:", color="C3",
                 label="dead contacts in tables")  # fmt: skip
        axd.set_ylabel("% of table entries dead")
        axd.set_ylim(0, max(5, max(100 * r["dead"] for r in rows) * 1.3))
        axd.legend(fontsize=8, loc="lower right")
    return fig


def _plot_partition(report: Report, plt):
    timeline = report.series["timeline"]
    split_for = report.series["split_for"]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    t = [r["t"] / 60 for r in timeline]
    ax.plot(t, [100 * r["span"] for r in timeline], "-", color="C0",
            label="nodes with contacts in the other half")  # fmt: skip
    ax.plot(t, [200 * r["cross_share"] for r in timeline], "-", color="C4",
            label="contacts in the other half (x2: 100 = half of them)")  # fmt: skip
    ax.plot(t, [100 * r["neighbours"] for r in timeline], "-", color="C1",
            label="true k nearest neighbours known")  # fmt: skip
    if timeline[0].get("ring_ok") is not None:
        ax.plot(t, [100 * r["ring_ok"] for r in timeline], "-", color="C2",
                label="right ring successor")  # fmt: skip
    probes = [r for r in timeline if "cross_ok" in r]
    ax.plot([r["t"] / 60 for r in probes], [100 * r["cross_ok"] for r in probes], ".", ms=5,
            color="C3", label="cross-half probe lookups reaching the node")  # fmt: skip
    ax.axvspan(0, split_for / 60, color="C3", alpha=0.07, label="split")
    styles = {"lookups": ("k", "--"), "ring": ("C2", ":"), "neighbours": ("C1", ":")}
    for name, seconds in report.series["back"].items():
        if seconds is not None:
            color, ls = styles[name]
            ax.axvline((split_for + seconds) / 60, color=color, ls=ls, lw=1,
                       label=f"{name} back {seconds:.0f} s after the heal")  # fmt: skip
    ax.set_xlabel("minutes since the split")
    ax.set_ylabel("%")
    ax.set_ylim(-2, 104)
    ax.set_title(report.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def _plot_load(report: Report, plt):
    counts = report.series["counts"]
    primaries = report.series["primaries"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax.hist(counts, bins=40, color="C0", alpha=0.8)
    ax.axvline(statistics.median(counts), color="k", ls="--", lw=1, label="median")
    ax.axvline(percentile(counts, 99), color="C3", ls=":", lw=1, label="p99")
    ax.set_xlabel("values held by a node")
    ax.set_ylabel("nodes")
    ax.set_title("Values per node")
    ax.legend(fontsize=8)
    for data, label in ((counts, "replicas held"), (primaries, "keys owned (nearest)")):
        ordered = sorted(data)
        total = sum(ordered) or 1
        cum, acc = [0.0], 0
        for v in ordered:
            acc += v
            cum.append(acc / total)
        xs = [i / len(ordered) for i in range(len(ordered) + 1)]
        ax2.plot(xs, cum, label=f"{label}, Gini {gini(data):.2f}")
    ax2.plot([0, 1], [0, 1], ":", color="gray", label="equal")
    ax2.set_xlabel("share of nodes (fewest first)")
    ax2.set_ylabel("share of values")
    ax2.set_title("Lorenz curve")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    return fig


def _plot_latency(report: Report, plt):
    rows = report.rows
    losses = [100 * r["loss"] for r in rows]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for key, label in (("lookup_ms", "lookup"), ("put_ms", "put"), ("get_ms", "get")):
        ax.plot(losses, [r[key] for r in rows], "o-", label=f"{label} p50")
    ax.set_xlabel("datagrams lost (%)")
    ax.set_ylabel("simulated ms")
    ax.set_title(f"Time to complete, N={report.nodes}")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    for key, label in (("nearest", "found the nearest"), ("exact", "exact k closest")):
        ax2.plot(losses, [100 * r[key] for r in rows], "o-", label=label)
    ax2.set_xlabel("datagrams lost (%)")
    ax2.set_ylabel("lookups (%)")
    ax2.set_title("Lookup results against the truth")
    ax2.set_ylim(0, 102)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    return fig


def _plot_delete(report: Report, plt):
    rows = [r for r in report.series["timeline"] if r["phase"] == "healed"]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    t = [r["t"] for r in rows]
    ax.plot(t, [r["tombstones"] for r in rows], "o-", color="C2", label="tombstones held")
    ax.plot(t, [r["stale"] for r in rows], "o-", color="C3", label="old versions on replicas")
    ax.plot(t, [r["elsewhere"] for r in rows], "o-", color="C1", ms=3,
            label="old versions elsewhere (never win a read)")  # fmt: skip
    ax.plot(
        t, [r["live_reads"] for r in rows], "x", color="k", label="reads returning a deleted value"
    )
    ax.set_xlabel("seconds since the heal")
    ax.set_ylabel("copies / reads")
    ax.set_title(report.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _plot_skew(report: Report, plt):
    rows = report.rows
    labels = [f"{r['max_skew_s']:g}" for r in rows]
    x = range(len(rows))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for key, marker, label in (
        ("records_found", "o-", "plain values found"),
        ("expiry_found_before", "s--", "TTL value found at T - S - 60 s (should: all)"),
        ("expiry_found_after", "v:", "TTL value found at T + S + 60 s (should: none)"),
        ("peer_records_verified", "^-.", "peer records verified"),
    ):
        ax.plot(x, [100 * _share(r[key]) for r in rows], marker, label=label, alpha=0.8)
    ax.set_xticks(list(x), labels)
    ax.set_xlabel("max clock offset S, s")
    ax.set_ylabel("% of reads")
    ax.set_ylim(-3, 103)
    ax.set_title(f"Reads against clock skew, N={report.nodes}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    lifetime = report.series["lifetime"] / 3600
    last = labels[-1]
    seen = report.series["pairs"][next(reversed(report.series["pairs"]))]
    ok = [ahead / 3600 for ahead, good in seen if good]
    bad = [ahead / 3600 for ahead, good in seen if not good]
    bins = 26
    ax2.hist([ok, bad], bins=bins, stacked=True, color=["C2", "C3"],
             label=["verified", "not verified"])  # fmt: skip
    ax2.axvline(lifetime, color="k", ls="--", lw=1, label=f"record lifetime {lifetime:.3g} h")
    ax2.set_xlabel("reader's clock ahead of the signer's, h")
    ax2.set_ylabel("(signer, reader) pairs")
    ax2.set_title(f"Peer records at S = {last} s")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    return fig


def _share(fraction: str) -> float:
    """ "x/y" as x / y."""
    x, y = fraction.split("/")
    return int(x) / max(1, int(y))


_PLOTS = {
    "hops": _plot_hops,
    "failure": _plot_failure,
    "churn": _plot_churn,
    "partition": _plot_partition,
    "load": _plot_load,
    "latency": _plot_latency,
    "delete": _plot_delete,
    "skew": _plot_skew,
}
