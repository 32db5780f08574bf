"""The daemon's Prometheus metrics, on prometheus-client. No network I/O.

Every family has HELP and TYPE lines and is present from the start (a counter
at 0 before its first increment): the node's counters are declared here, each
with what it counts (a test holds every ``stats["..."]`` in the code to this
list), and read from the node when scraped; operation latencies are
histograms; the process's CPU, memory and open files come from
prometheus-client's process collector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "kadnode"

# What each of the node's counters counts (kadnode.core and the shell's
# transport and store keep them in their ``stats``).
COUNTERS: dict[str, str] = {
    "datagrams_in": "Datagrams received.",
    "datagrams_out": "Datagrams sent.",
    "requests_in": "Requests received (a request claiming our own id is a bad datagram).",
    "requests_out": "Requests sent, each once (sending it again is a retransmit).",
    "responses_in": "Replies received that matched a request in flight.",
    "retransmits": "Requests sent again after a timeout without a reply.",
    "timeouts": "Requests that failed: every send went unanswered.",
    "stalls": "Requests still unanswered at their soft timeout (sent again then).",
    "unexpected_responses": "Replies that matched no request in flight (late or forged).",
    "bad_datagrams": "Datagrams that could not be decoded, dropped unanswered.",
    "foreign_datagrams": "Datagrams of another network (--network-id), dropped undecoded.",
    "bad_replies": "Replies of the wrong shape for their request, dropped.",
    "requests_limited": "Requests dropped by the per-IP, per-subnet or total rate limit.",
    "requests_refused": "Requests not sent: as many in flight as the node allows.",
    "replies_cut": "Replies cut to fit what an unproven address may be sent.",
    "replies_withheld": "Replies not sent: an unproven address had no credit left.",
    "replies_too_large": "Replies not sent: larger than the datagram limit.",
    "dial_backs": "Pings sent back to a new sender to prove its address.",
    "contacts_refused": "Contacts the routing table's admission limits turned away.",
    "contacts_dropped": "Contacts dropped from the routing table after failing.",
    "evicted": "Stored values evicted to make room (the heaviest subnet's oldest first).",
    "bucket_refreshes": "Lookups run to refresh a stale bucket.",
    "routes_abandoned": "Chord routes abandoned (a loop, or too many hops).",
    "goodbyes": "Goodbyes received from departing nodes.",
    "goodbyes_refused": "Goodbyes refused (not from the contact's address, or no valid token).",
    "unsolicited_in": "Requests from hosts this node had not sent to lately (strangers).",
    "nat_detected": "Times a peer first saw this node at an address that is none of its own.",
    "mode_changes": "Switches between server and client mode.",
    "readdressed": "Times the adopted observed address became the first registered one.",
    "observe_rounds": "Rounds of pings asking peers where they see this node.",
    "reach_checks": "Reachability checks started (dial-backs asked of helpers).",
    "reach_served": "Dial-backs asked of a contact for another node (as a helper).",
    "reach_refused": "Dial-back requests refused (not vouched, throttled, no dialer).",
    "dials_sent": "Dial-back datagrams sent for a helper.",
    "dials_refused": "Dial requests refused (not vouched, or throttled).",
    "dialed_in": "Dial-backs that proved this node reachable.",
    "relays_changed": "Times a client's set of relays (named in its record) changed.",
    "dialed_ignored": "Dial-backs that proved nothing (no check, or from a host it contacted).",
    "puts_in": "Native writes (peer records, shared values) received.",
    "puts_refused": "Native writes refused.",
    "stores_in": "Plain value STOREs received.",
    "stores_refused": "Plain value STOREs refused in all.",
    "stores_refused_kind": "STOREs refused: the key holds another kind of value.",
    "stores_refused_quota": "STOREs refused: the sender's subnet is over its quota.",
    "stores_refused_size": "STOREs refused: the value is over the size limit.",
    "stores_refused_token": "STOREs refused: no valid write token for the sender's address.",
    "stores_refused_unproven": "STOREs refused: the sender's address is not proven.",
    "read_repairs": "Stale replicas a quorum read wrote the newest version back to.",
    "replicated": "Values sent again to their current k closest (the replicate round).",
    "republished": "Values this node republished.",
    "reregistered": "Times this node re-signed and stored its own peer record.",
    "expired": "Values dropped when their lifetime ended.",
    "keys_handed_on_join": "Keys handed to a newcomer among their k closest.",
    "ae_syncs": "Anti-entropy exchanges this node started with a neighbour.",
    "ae_pushed": "Records anti-entropy pushed to a neighbour.",
    "ae_bytes": "Bytes of the records anti-entropy pushed.",
    "ae_busy": "Anti-entropy rounds a neighbour answered busy.",
    "ae_busy_replies": "Anti-entropy requests answered busy (the digest was not ready).",
    "ae_jobs_refused": "Anti-entropy jobs refused (over the per-neighbour or queue limit).",
    "syncs_refused_far": "Anti-entropy requests refused: the sender is not a neighbour.",
    "syncs_refused_unproven": "Anti-entropy requests refused: the sender is not proven.",
    "background_records": "Records the background jobs (hand-over, anti-entropy) looked at.",
    "socket_errors": "Errors the UDP socket reported.",
    "send_errors": "Datagrams the UDP socket failed to send.",
    "internal_errors": "Datagrams whose handling raised an unexpected error (logged).",
    "fault_delayed": "Datagrams delayed by fault injection.",
    "fault_dropped": "Datagrams dropped by fault injection.",
    "corrupt_records": "Stored records that failed to load from disk (never served).",
    "watch_reads": "Reads the watch streams made (each one a read of its kind).",
}
# What each gauge is: the service reads their values when scraped.
GAUGES: dict[str, str] = {
    "peers": "Contacts in the routing table.",
    "values": "Values held, this node's own and others'.",
    "stored_bytes": "Bytes of the values held, packed.",
    "pending_requests": "Requests in flight, awaiting a reply.",
    "watch_streams": "Watch streams open, each reading its value every few seconds.",
}
# Operations whose latency is a histogram (seconds), named as the API's routes.
OPERATIONS = ("lookup", "put", "get", "find_peer")
# From a loopback call (~1 ms) to a lookup over lossy paths (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Node(Collector):
    """The node's counters and gauges, read when scraped."""

    def __init__(
        self, counters: Callable[[], Mapping[str, int]], gauges: Callable[[], Mapping[str, float]]
    ):
        self.counters, self.gauges = counters, gauges

    def collect(self) -> Iterator[Metric]:
        values = self.gauges()
        for name, text in GAUGES.items():
            yield GaugeMetricFamily(f"{PREFIX}_{name}", text, value=values[name])
        counts = self.counters()
        for name, text in COUNTERS.items():
            yield CounterMetricFamily(f"{PREFIX}_{name}", text, value=counts.get(name, 0))


class Metrics:
    """One node's registry: ``counters()`` and ``gauges()`` give the values of
    COUNTERS and GAUGES by name."""

    def __init__(
        self, counters: Callable[[], Mapping[str, int]], gauges: Callable[[], Mapping[str, float]]
    ):
        self.registry = CollectorRegistry()
        self.registry.register(_Node(counters, gauges))
        ProcessCollector(namespace=PREFIX, registry=self.registry)
        self.latency = Histogram(
            f"{PREFIX}_operation_seconds",
            "Time an operation asked through the API took, by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        for operation in OPERATIONS:
            self.latency.labels(operation)  # present, at 0, before the first one

    def observe(self, operation: str, seconds: float) -> None:
        self.latency.labels(operation).observe(seconds)

    def render(self) -> str:
        return generate_latest(self.registry).decode()
