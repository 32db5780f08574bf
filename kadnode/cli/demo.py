"""``kadnode demo``: a local network on loopback, shown working. I/O.

Starts N nodes in this process, each on its own UDP socket on 127.0.0.1,
joins them through the first one, stores values from random nodes and reads
every one back from other nodes. It succeeds only if everything was found.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from kadnode.config import LOCAL_TEST, K
from kadnode.shell.library import Server
from kadnode.stats import mean, percentiles_ms

JOIN_BATCH = 4  # one process hosts every node: keep the loop backlog under the RTO floor


@dataclass(frozen=True, slots=True)
class DemoReport:
    nodes: int
    stored: int
    found: int
    replicas_mean: float
    join_s: float
    put_ms: dict[str, float]
    get_ms: dict[str, float]
    lookups: int
    lookups_exact: int
    datagrams: int
    bad_datagrams: int
    timeouts: int

    @property
    def ok(self) -> bool:
        return self.found == self.stored and self.lookups_exact == self.lookups

    def as_json(self) -> dict:
        return {
            "nodes": self.nodes,
            "stored": self.stored,
            "found": self.found,
            "ok": self.ok,
            "replicas_mean": round(self.replicas_mean, 2),
            "join_s": round(self.join_s, 3),
            "put_ms": self.put_ms,
            "get_ms": self.get_ms,
            "lookups": self.lookups,
            "lookups_exact": self.lookups_exact,
            "datagrams": self.datagrams,
            "bad_datagrams": self.bad_datagrams,
            "timeouts": self.timeouts,
        }


async def run_demo(nodes: int, values: int, seed: int | None = None, progress=None) -> DemoReport:
    rng = random.Random(seed)
    say = progress or (lambda _msg: None)
    servers: list[Server] = []
    try:
        t0 = time.perf_counter()
        for _ in range(nodes):
            servers.append(await Server.start("127.0.0.1", 0, config=LOCAL_TEST))
        first = servers[0].address
        reported = 0
        for start in range(1, nodes, JOIN_BATCH):
            batch = servers[start : start + JOIN_BATCH]
            await asyncio.gather(*(s.bootstrap([first]) for s in batch))
            joined = min(start + JOIN_BATCH, nodes)
            if joined * 4 // nodes > reported or joined == nodes:  # each quarter
                reported = joined * 4 // nodes
                say(f"joined {joined}/{nodes} nodes")
        join_s = time.perf_counter() - t0

        put_times, get_times, replicas = [], [], []
        found = 0
        for i in range(values):
            key, value = f"demo-key-{i}", f"value {i} from the kadnode demo"
            writer, reader = rng.sample(servers, 2) if nodes > 1 else (servers[0], servers[0])
            t = time.perf_counter()
            put = await writer.put(key, value)
            put_times.append(time.perf_counter() - t)
            # acknowledged, or still being written when W had acknowledged
            replicas.append(put.acks + put.pending)
            t = time.perf_counter()
            got = await reader.get(key)
            get_times.append(time.perf_counter() - t)
            found += got.found and got.value == value
            if (i + 1) % 50 == 0:
                say(f"stored and read back {i + 1}/{values} values")

        # Lookups of node ids from other nodes, checked against the truth.
        ids = sorted(s.id for s in servers)
        lookups = min(values, nodes)
        exact = 0
        for _ in range(lookups):
            asker, target = rng.sample(servers, 2) if nodes > 1 else (servers[0], servers[0])
            result = await asker.lookup(target.id)
            truth = sorted((i for i in ids if i != asker.id), key=lambda i: i ^ target.id)
            exact += [c.node_id for c in result.closest] == truth[: len(result.closest)] and (
                result.peer is not None or nodes == 1
            )

        stats = [s.core.stats for s in servers]
        return DemoReport(
            nodes=nodes,
            stored=values,
            found=found,
            replicas_mean=mean(replicas),
            join_s=join_s,
            put_ms=percentiles_ms(put_times),
            get_ms=percentiles_ms(get_times),
            lookups=lookups,
            lookups_exact=exact,
            datagrams=sum(s["datagrams_out"] for s in stats),
            bad_datagrams=sum(s["bad_datagrams"] for s in stats),
            timeouts=sum(s["timeouts"] for s in stats),
        )
    finally:
        for s in servers:
            s.close()


def render(report: DemoReport) -> str:
    verdict = "OK" if report.ok else "FAILED"
    return "\n".join(
        [
            f"kadnode demo: {report.nodes} nodes on 127.0.0.1, joined in {report.join_s:.2f} s",
            f"  stored  {report.stored} values, each written to {report.replicas_mean:.1f} "
            f"replicas on average (k={K})",
            f"  found   {report.found}/{report.stored} values, each read from a different node",
            f"  lookups {report.lookups_exact}/{report.lookups} node lookups returned exactly "
            "the true closest nodes",
            f"  put     p50 {report.put_ms['p50']:.2f} ms   p99 {report.put_ms['p99']:.2f} ms",
            f"  get     p50 {report.get_ms['p50']:.2f} ms   p99 {report.get_ms['p99']:.2f} ms",
            f"  traffic {report.datagrams} datagrams, {report.timeouts} timeouts, "
            f"{report.bad_datagrams} bad datagrams",
            "  limits  every node shares 127.0.0.1, so the per-address and per-subnet limits"
            " are lifted for loopback (kadnode run --exempt)",
            f"{verdict}",
        ]
    )
