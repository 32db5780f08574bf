"""Every protocol constant in one place, each with its source. No I/O.

A :class:`Config` instance carries them into the core, so tests and the
simulator can shrink intervals without monkeypatching.
"""

from __future__ import annotations

from dataclasses import dataclass

# Kademlia paper (Maymounkov & Mazieres 2002), section 2.2 and 4: k = 20.
K = 20
# Kademlia paper, section 2.3: alpha = 3 concurrent requests per lookup.
ALPHA = 3
# A node lookup ends once the beta nearest it knows have answered (the k
# nearest must all answer only where each one's write token is needed):
# go-libp2p-kad-dht's DefaultResiliency = 3, "the number of peers closest to
# a target that must have responded in order for a given query path to
# complete".
BETA = 3
# Kademlia paper, section 4.1: a replacement cache beside each bucket.
# Size: go-ethereum p2p/discover uses 10 (maxReplacements).
REPLACEMENT_CACHE = 10
# "Dropped after several consecutive failures, not one": the paper (4.1)
# suggests 5 failed RPCs mark a contact stale; libtorrent and Mainline DHT
# use 2 to 3. We drop on the 3rd consecutive failure.
STALE_LIMIT = 3
# BEP 5 (Mainline DHT): a node heard from in the last 15 minutes is "good";
# a full bucket whose oldest contact is good needs no ping-before-evict.
GOOD_FOR = 900.0

# Kademlia paper, section 2.3 / 2.5: intervals in seconds.
REFRESH_INTERVAL = 3600.0  # a bucket with no lookup in this long is refreshed
REPLICATE_INTERVAL = 3600.0  # replicas re-send what they hold hourly
REPUBLISH_INTERVAL = 86400.0  # the original publisher re-publishes daily
EXPIRE_AFTER = 86400.0  # a value lives this long after publication
# bmuller/kademlia ForgetfulStorage keeps values 604800 s; we follow the paper.

# Chord (Stoica et al. 2001), section 4.6: a successor list of length
# r = log2 N survives any r-1 failures; 16 covers networks of ~65,000 nodes.
SUCCESSORS = 16
# Chord's stabilize / check_predecessor period. The paper leaves it to the
# deployment; 15 s costs one small request per node per period.
STABILIZE_INTERVAL = 15.0
# A ring query names the view it already holds from the node it asks by an
# 8-byte digest, and the same view is answered "unchanged" (at most 60 bytes
# on the wire, tests/core/test_ring.py, instead of ~700 with 16 successors):
# in a quiet network the ring's replies were most of a node's idle bytes
# (docs/sim/before/README.md: 54 of 70 bytes a second). 64 bits:
# a collision (a changed view taken for the old one) is as likely as 1 in
# 2^64 per query, and the next change of view corrects it.
RING_DIGEST_BYTES = 8
# Chord routing takes about 1/2 log2 N hops; a route longer than this has
# looped through inconsistent views and is abandoned.
MAX_ROUTE_HOPS = 64

# Anti-entropy (seed 001's "anti-entropy between replicas"): every interval
# a node syncs with one random neighbour among its k nearest, so each pair
# meets about every k minutes. Keys split into 64 buckets by their last bits
# (SHA-1: uniform); a bucket hash is 8 bytes, so a digest is ~600 bytes.
ANTI_ENTROPY_INTERVAL = 60.0
AE_BUCKETS = 64
AE_HASH_BYTES = 8
# Keys per kn_keys datagram: 200 x ~31 bytes stays under rpcudp's 8 KiB.
# Whole buckets go together, so a list is as long as its largest bucket needs.
AE_KEYS_PER_DATAGRAM = 200

# Quorum (seed 001; Dynamo, DeCandia et al. 2007, section 4.5). N is the
# replica set: the k = 20 closest. W = R = 11 is a majority, so R + W > N and
# every read quorum meets every write quorum: a read sees the latest acked
# write. Kademlia already asks all k, so this costs no extra messages, only
# availability: a write fails when 10 of its 20 replicas are unreachable.
# In a network with fewer than k nodes the quorum is a majority of the
# replicas found (two majorities of one set still intersect).
WRITE_QUORUM = 11
READ_QUORUM = 11
# Signed peer records (issue: registration nobody can forge): a record lives
# 6 hours and its owner re-signs it with a higher sequence every 3 hours, and
# at once when its address changes.
REGISTER_LIFETIME = 6 * 3600.0

# Request timeouts: RFC 6298 (TCP RTO) estimator, with a floor for loopback
# and LAN where the RTT is far below what scheduling noise adds.
RTO_INITIAL = 1.0  # RFC 6298 section 2.1: 1 s before any sample
RTO_FLOOR = 0.25
RTO_CEIL = 5.0  # rpcudp's fixed wait_timeout is 5 s
RTO_K = 4  # RFC 6298: RTO = SRTT + 4 * RTTVAR
RTO_ALPHA = 1 / 8
RTO_BETA = 1 / 4
# Sends per request, with the same message id. A lookup's request is sent
# again at its first timeout (the lookup asks the next contact meanwhile) and
# then once a timeout, 4 sends in all: at 20 % loss a request and its reply
# both arrive 64 % of the time, and 4 sends lose a contact 1.7 % of the time
# (0.36 ** 4). `kadnode sim latency`, N = 2,000 (docs/sim/latency.md, and
# docs/sim/before/README.md: one send, among issue 14's other changes): the
# true nearest node found by 100 % of lookups at 5 % loss (84 % before); the
# exact k closest by 99 % at 5 % (7 %). Ping and store retransmit once,
# backed off.
LOOKUP_ATTEMPTS = 4
REQUEST_ATTEMPTS = 2
# On a lossier path, more: a node keeps the share of its answered requests
# that needed a second send (an average over ~LOSS_WINDOW replies; a late
# reply counts as a lost one) and sends a lookup's request until a live
# contact would be missed less than LOOKUP_MISS of the time (share ** sends
# <= LOOKUP_MISS), up to LOOKUP_ATTEMPTS_MAX: at 20 % loss each way (a share
# of 0.36) 7, where 4 sends miss a live contact 1.7 % of the time: the true
# nearest found by 98.3 % of lookups at 20 % loss (96.3 % with 4 sends at
# eec4c10; docs/sim/README.md). Never
# fewer than LOOKUP_ATTEMPTS: on a clean path 2 sends would give up sooner
# on dead contacts, but on slow live ones too (`kadnode sim churn` with 2:
# 99.7-99.8 % of lookups reached their live target in 5 of 12 ten-minute
# windows, against 100 % with 4; docs/sim/before/churn-two-sends.txt).
LOOKUP_ATTEMPTS_MAX = 7
LOOKUP_MISS = 0.001
LOSS_WINDOW = 64

# Sizes. rpcudp refuses to send a request body over 8 KiB; we accept up to
# that plus the 21-byte header, and refuse to send replies over it.
MAX_DATAGRAM = 8192 + 21
# What crosses the internet whole: QUIC's 1,200 bytes (RFC 9000, section
# 14: any path carries it; IPv6's minimum MTU is 1,280, RFC 8200), IP and UDP
# headers included. A larger datagram travels as IP fragments, each of which
# can be lost or filtered. Every message fits this with IPv4 contacts
# (tests/core/test_codec.py::test_every_message_at_its_largest_fits_1200_bytes_on_the_wire)
# except two, sent whole: those carrying a shared value (up to MAX_SIBLINGS
# versions, each with its clock) and anti-entropy key lists (~31 bytes a key,
# whole buckets together: over 1,200 bytes once two replicas differ by more
# than ~35 keys), both bounded by MAX_DATAGRAM.
WIRE_DATAGRAM = 1200
# Internet paths: keep what we originate near the 1200-byte QUIC minimum MTU.
MAX_VALUE_BYTES = 1000
MAX_KEY_BYTES = 512
# Bound on outstanding requests one node keeps (memory bound under load).
MAX_PENDING_REQUESTS = 4096
# Bound on concurrent client operations (lookups, puts) one node runs.
MAX_OPERATIONS = 1024

# Values a node holds for others: bound the store (memory and disk bound).
MAX_STORED_VALUES = 100_000
# Bytes of values held for others: OpenDHT's default storage limit
# (include/opendht/callbacks.h STORAGE_LIMIT_DEFAULT, 64 MiB). A /24 (/48)
# may hold a sixteenth of each (kadnode.core.quotas): filling a node takes
# sixteen subnets, and the heaviest one's oldest values go first.
MAX_STORED_BYTES = 64 * 1024 * 1024
MAX_VALUES_PER_SUBNET = MAX_STORED_VALUES // 16
MAX_BYTES_PER_SUBNET = MAX_STORED_BYTES // 16

# Request rate limits (kadnode.core.limits), per second with a burst of one
# second's worth. OpenDHT's network engine answers at most 8 x 1024 requests a
# second in all and an eighth of that per IP (src/dht.cpp MAX_REQUESTS_PER_SEC,
# max_peer_req_per_sec; "global limiting should be triggered by at least 8
# different IPs"). A /24 (/48) gets two IPs' worth: more than one honest host
# behind it, far less than 256 attacking ones. Exempt ranges (a LAN, loopback
# test networks) skip the per-IP and per-subnet limits, not the total.
REQUESTS_PER_IP = 1024.0
REQUESTS_PER_SUBNET = 2048.0
REQUESTS_TOTAL = 8192.0

# Routing-table admission (go-ethereum p2p/discover table.go: bucketIPLimit 2,
# tableIPLimit 10, per /24): at most this many contacts of one /24 (/48 for
# IPv6) in a bucket, and in the whole table; lookups take at most the bucket
# number from one subnet among their candidates. Exempt ranges skip both.
PER_SUBNET_BUCKET = 2
PER_SUBNET_TABLE = 10

# A local test network (kadnode demo, the benchmark, the test suite) puts every
# node on one address: it lifts the per-address and per-subnet limits there
# (LOCAL_TEST, below), and says so.
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")

# Write tokens (BEP 5): "tokens up to ten minutes old are accepted": a secret
# changes every five minutes and the previous one stays valid. A writer uses
# a cached token for half that long, then fetches a fresh one with a ping.
TOKEN_ROTATE = 300.0
TOKEN_FRESH = 150.0
TOKEN_BYTES = 8  # BEP 5 leaves the length open; 64 bits of HMAC-SHA1
TOKEN_MEMO = 4096  # hosts whose token is memoized, per secret

# Endpoint proof (kadnode.core.proof). Until a host has proven it receives at
# its address (it answered our request, or echoed our token), what its
# requests make a node send it stays within 3x the bytes it sent: QUIC's
# anti-amplification limit (RFC 9000 section 8), below the 3.8x measured for
# Mainline DHT. A proof lasts an hour from the last one (go-ethereum's discv4
# keeps a bond 24 h; an hour bounds what a reassigned address inherits).
AMPLIFICATION = 3.0
PROOF_LIFETIME = 3600.0
MAX_TRACKED_HOSTS = 65536
# A native request to a node that has not proven us yet is padded to this
# many bytes, so that 3x it covers the largest reply (a value of
# MAX_VALUE_BYTES, or k = 20 contacts: ~1,100 bytes on the wire). A token the
# node gave us proves us instead and costs 8 bytes.
PROOF_PAD_TO = 380
MAX_PROOF_BYTES = 512
# Unproven senders are pinged back (one datagram, no larger than their
# request) to prove them; at most this many dial-backs are outstanding, one
# per host, with a few more senders from that host (NAT) waiting on each.
MAX_DIAL_BACKS = 1024
DIAL_BACK_WAITING = 16
# A kadnode node new to us on an address already proven (another node behind
# it answered us) is pinged back this long after its first request, unless it
# has echoed our reply's token by then: a put's STORE, a lookup's next query
# do within a round trip, and cost no ping.
WELCOME_DELAY = 2.0

# Work budgets of upkeep (kadnode.core.upkeep): how much one timer tick or one
# newcomer may make a node do. Today's budgets are sized never to bind in the
# simulator's scenarios (they are bounds, not yet limits): due records per
# timer tick; held records examined for one newcomer's join handoff; buckets
# refreshed per tick (all 160 at most).
DUE_BATCH = 64
HANDOFF_SCAN = MAX_STORED_VALUES
REFRESH_BUCKETS = 160
# Work that grows with the store runs off the datagram path, a slice at a time
# (kadnode.core.background): at most this many records per slice, one slice
# every 10 ms (a quarter of one core at ~10 us a record), at most this many
# jobs queued. An anti-entropy peer whose digest is not ready is told "busy".
BACKGROUND_BUDGET = 256
BACKGROUND_PAUSE = 0.01
MAX_JOBS = 256
AE_DIGESTS_KEPT = 256  # peers whose digest a node keeps, computed in the background
# Anti-entropy jobs (each may scan the store) a neighbour may start per
# interval: a digest and the pushes of its key lists (200 keys a datagram);
# neighbours served are tracked up to a bound (only the 2k nearest qualify).
AE_JOBS_PER_ROUND = 8
AE_PEERS_TRACKED = 256


@dataclass(frozen=True, slots=True)
class Config:
    k: int = K
    alpha: int = ALPHA
    beta: int = BETA
    replacement_cache: int = REPLACEMENT_CACHE
    stale_limit: int = STALE_LIMIT
    good_for: float = GOOD_FOR
    successors: int = SUCCESSORS
    stabilize_interval: float = STABILIZE_INTERVAL
    max_route_hops: int = MAX_ROUTE_HOPS
    anti_entropy_interval: float = ANTI_ENTROPY_INTERVAL
    write_quorum: int = WRITE_QUORUM
    read_quorum: int = READ_QUORUM
    register_lifetime: float = REGISTER_LIFETIME
    refresh_interval: float = REFRESH_INTERVAL
    replicate_interval: float = REPLICATE_INTERVAL
    republish_interval: float = REPUBLISH_INTERVAL
    expire_after: float = EXPIRE_AFTER
    rto_initial: float = RTO_INITIAL
    rto_floor: float = RTO_FLOOR
    rto_ceil: float = RTO_CEIL
    lookup_attempts: int = LOOKUP_ATTEMPTS
    request_attempts: int = REQUEST_ATTEMPTS
    max_datagram: int = MAX_DATAGRAM
    max_value_bytes: int = MAX_VALUE_BYTES
    max_pending_requests: int = MAX_PENDING_REQUESTS
    max_operations: int = MAX_OPERATIONS
    max_stored_values: int = MAX_STORED_VALUES
    max_stored_bytes: int = MAX_STORED_BYTES
    max_values_per_subnet: int = MAX_VALUES_PER_SUBNET
    max_bytes_per_subnet: int = MAX_BYTES_PER_SUBNET
    requests_per_ip: float = REQUESTS_PER_IP
    requests_per_subnet: float = REQUESTS_PER_SUBNET
    requests_total: float = REQUESTS_TOTAL
    per_subnet_bucket: int = PER_SUBNET_BUCKET
    per_subnet_table: int = PER_SUBNET_TABLE
    # CIDR ranges exempt from per-IP and per-subnet limits (none by default).
    exempt_networks: tuple[str, ...] = ()
    # A private network's name (--network-id); "" is the default network,
    # wire-compatible with bmuller/kademlia (see NETWORK_MARK).
    network_id: str = ""


# Private networks (--network-id NAME). Every datagram of a named network
# starts with NETWORK_MARK and the first 7 bytes of SHA-256("kadnode network
# " + NAME); the default network's datagrams are bmuller/kademlia's, unchanged.
# rpcudp's first byte is 0x00 (request) or 0x01 (response) and a stock node
# drops any other, so the mark keeps a named network's traffic out of every
# other network's tables, checked before anything is decoded (OpenDHT's
# --network does the same with a network id in every packet).
NETWORK_MARK = 0xFE
NETWORK_TAG_BYTES = 8
MAX_NETWORK_ID_CHARS = 64

# Watching a value (kadnode watch, GET /watch/...; docs/decisions.md, "Watch:
# polling, not replica notification"). The daemon the watcher talks to reads
# the value again, one read of its kind each time (a quorum read for shared
# and signed values), WATCH_POLL_MIN s after the first read and after every
# change, the wait doubling while nothing changes up to WATCH_POLL_MAX s (the
# doubling of TCP's retransmission backoff, RFC 6298 section 5.5): a watcher
# sees a version at most WATCH_POLL_MAX s plus one read after it landed, and
# an idle watch costs one read every WATCH_POLL_MAX s. 8 s: OpenDHT
# re-registers a listen every 20 s (LISTEN_EXPIRE_TIME 30 s less
# REANNOUNCE_MARGIN 10 s, include/opendht/dht.h); a watch here answers in
# well under half that, for the datagrams docs/watch-cost.txt measures.
WATCH_POLL_MIN = 1.0
WATCH_POLL_MAX = 8.0
# Watch streams the control API keeps open: each holds a connection and makes
# its node read every few seconds, so they are capped below the API's
# connection cap (kadnode.shell.httpserver.MAX_CONNECTIONS, 256; a test holds
# the relation) and per client (its remote host: on a loopback API every local
# client is one host) so one client cannot take them all. Past either, 429.
WATCH_STREAMS = 64
WATCH_STREAMS_PER_CLIENT = 16

# A restarted daemon rejoins through the contacts it saved, most recently seen
# first, this many at most (the simulator's churn scenario does the same).
REJOIN_CONTACTS = 64

# The configuration of a local test network: every node on loopback.
LOCAL_TEST = Config(exempt_networks=LOOPBACK_NETWORKS)

# Bootstrap by DNS name (kadnode.shell.dns).
# RFC 1035 section 4.2.1: DNS servers listen on port 53.
DNS_PORT = 53
# RFC 2782: an SRV owner name is _Service._Proto.Name; seeds publish
# _kadnode._udp.<name> with each node's host and UDP port.
DNS_SEED_SRV_PREFIX = "_kadnode._udp"
# Whole budget for one seed name (SRV, then A/AAAA). resolv.conf(5) waits
# 5 s per try; a daemon starting up should give up sooner and log the seed.
DNS_SEED_TIMEOUT = 3.0
# Sends per DNS question; resolv.conf(5) default "attempts" is 2.
DNS_SEED_TRIES = 2

# What the network sees of a node (kadnode.core.reach, issue 17).
# A node adopts the address peers see it at once proven peers on this many
# distinct /24s (/48s) agree, as issue 17 asks ("at least 3"): one peer, or
# one subnet of them, cannot tell it where it is. BEP 42 and libp2p identify
# report the observed address; libp2p's ObservedAddrManager also waits for
# several observers (ActivationThresh = 4) before it trusts one.
OBSERVED_QUORUM = 3
# Votes kept, one per responder subnet (the oldest is dropped), and how long
# one counts: a NAT reboot or a new DHCP lease moves the address.
OBSERVED_VOTES = 16
OBSERVED_FOR = 3600.0
# Native contacts on distinct subnets pinged to learn the observed address,
# a few seconds after the node starts and then every REACH_INTERVAL.
OBSERVE_PINGS = 6
OBSERVE_FIRST = 5.0
# Reachability, AutoNAT-style (go-libp2p p2p/host/autonat): a node that a
# peer sees at an address not its own asks REACH_HELPERS contacts on
# distinct subnets to have a node it never contacted send it one datagram.
# None arrives within REACH_WAIT (with the helpers' acknowledgements): not
# reachable, client mode. Re-checked every REACH_INTERVAL (autonat's
# AutoNATRefreshInterval is 15 minutes) and whenever the address moves.
REACH_HELPERS = 3
REACH_WAIT = 10.0
REACH_INTERVAL = 900.0
# A check that proved nothing (no helper could ask, or only hosts this node
# had sent to dialed back) is tried again sooner: autonat's retry interval.
REACH_RETRY = 90.0
# Dial-backs served, as a helper (kn_reach) and as the dialer (kn_dial), per
# minute in all: go-libp2p autonat's service throttle (30 a minute, 3 per
# peer). Past it a request is acknowledged false and nothing is sent.
DIALS_PER_MINUTE = 30
# Hosts this node sent a request to in the last NAT_MAPPING_FOR seconds: a
# dial-back from one of them proves nothing, since a port-restricted NAT lets
# it through. Linux conntrack keeps a UDP mapping 30 s, 120 s once answered
# (nf_conntrack_udp_timeout_stream); at most SENT_HOSTS are remembered.
NAT_MAPPING_FOR = 180.0
SENT_HOSTS = 4096
# A client (behind NAT) names RELAYS peers in its peer record, peers it keeps
# a NAT binding with by pinging each every RELAY_KEEPALIVE seconds: WireGuard's
# PersistentKeepalive (25 s), under the 30 s after which many NATs drop an
# idle UDP mapping (RFC 4787 REQ-5 asks for 2 minutes; not every NAT does).
RELAYS = 3
RELAY_KEEPALIVE = 25.0
# Clock offsets against peers (their ping replies' clock), one per subnet.
CLOCK_SAMPLES = 16

# Signed peer records (kadnode.core.records).
# A record may claim at most 7 days of life, bmuller/kademlia's value lifetime
# (604800 s, ForgetfulStorage): the bound on how long a record can outlive the
# node, or a leaked key, that signed it. kadnode's own records ask for far less
# (REGISTER_LIFETIME, re-signed every half of it).
MAX_RECORD_LIFETIME = 7 * 86400.0
# Addresses per record: IPv4, IPv6 and a few NAT mappings. 8 worst-case
# entries (39-character IPv6 text) keep a whole record under 600 bytes.
MAX_RECORD_ADDRESSES = 8
# Signed mutable values (kadnode.core.signed): BEP 44 bounds a salt at 64 bytes.
MAX_SALT_BYTES = 64
# Host text per address, in records and in contact entries.
MAX_HOST_CHARS = 64
# Sequences and vector-clock counters: fits msgpack's int64 as well as its uint64.
MAX_WIRE_INT = 2**63 - 1

# Vector clocks (kadnode.core.vclock, seed 001: versions and read repair).
# Dynamo (DeCandia et al. 2007, section 4.4) truncates a clock past 10 writers
# by dropping the oldest, by timestamp. Ours carry no timestamps; a write drops
# the writers with the smallest counters instead, and always keeps its own
# entry: that entry is the write's dot (Preguica et al. 2010, dotted version
# vectors), which no version that has not seen the write can cover, so dropping
# others only makes the write supersede less (siblings stay), never lose it.
# Writers are the nodes that coordinate writes of a key (about k = 20 replicas,
# plus churn): 32 leaves room. Bounds are sized so the worst case fits one
# datagram: 4 siblings of MAX_VALUE_BYTES, each with a full clock of 64-bit
# counters, pack to < 8 KiB (tests/core/test_vclock.py checks it). Riak likewise
# treats many siblings as a client writing without its read context, not as
# normal operation. A read's context merges the siblings, so it may name up to
# MAX_SIBLINGS x MAX_CLOCK_ENTRIES writers (a full clock never makes a key
# unreadable: issue 13, item 7).
MAX_CLOCK_ENTRIES = 32
MAX_SIBLINGS = 4
MAX_CONTEXT_ENTRIES = MAX_SIBLINGS * MAX_CLOCK_ENTRIES
# How far one incoming version may move a writer's counter past the highest this
# replica holds for that key (0 when it holds none), checked on writes, not on
# reads. An honest counter moves by one per write of that writer; a hostile one
# needs 2**31 accepted writes per replica to drive a counter to MAX_WIRE_INT and
# pin the key (issue 13, item 7: no pinning). The price: a replica that holds
# nothing refuses a version past 2**32, so a key a hostile writer has climbed
# that far is not copied to new replicas (docs/security.md says so).
MAX_COUNTER_STEP = 2**32
