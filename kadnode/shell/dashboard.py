"""GET /dashboard: one self-contained page (no CDN, no external asset) that
draws the node from its own API, every 2 s: the routing table's buckets and
how full each is, the ring (this node, its predecessor, successors and
fingers on a circle), and traffic and operation latencies over time (from
/metrics). No I/O here: the page is a string; the browser does the fetching.

Each bucket bar is an SVG ``rect.bucket`` with ``data-index`` and
``data-count``, each ring node a ``circle.ring-node`` with ``data-id`` and
``data-role``, so a test can read what was drawn (tests/shell/test_dashboard.py).
"""

from __future__ import annotations

from kadnode.config import K

REFRESH_MS = 2000
HISTORY = 90  # points kept per series: three minutes at one every 2 s

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kadnode dashboard</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.2em 0 .3em}
#panels{display:grid;grid-template-columns:minmax(420px,1fr) minmax(420px,1fr);gap:1.5em}
svg{background:#fafafa;border:1px solid #ddd}.bucket{fill:#4a7fb5}.full{fill:#b5504a}
.label{font:11px ui-monospace,monospace;fill:#555}.ring{fill:none;stroke:#bbb}
.ring-node{stroke:#fff;stroke-width:1}.self{fill:#222}.predecessor{fill:#b5504a}
.successor{fill:#4a7fb5}.finger{fill:#6aa84f}.line{fill:none;stroke-width:1.5}
#error{color:#b5504a}
</style></head><body>
<h1>kadnode <span id="id"></span></h1>
<div id="summary"></div><div id="error"></div>
<div id="panels">
<section><h2>Routing table: contacts per bucket (k = @K@)</h2>
<svg id="buckets" width="460" height="340"></svg></section>
<section><h2>Ring: predecessor, successors, fingers</h2>
<svg id="ring" width="460" height="340"></svg></section>
<section><h2>Datagrams a second (in, out)</h2>
<svg id="traffic" width="460" height="160"></svg></section>
<section><h2>Mean operation latency, ms (lookup, put, get, find_peer)</h2>
<svg id="latency" width="460" height="160"></svg></section>
</div>
<script>
"use strict";
const K = @K@, EVERY = @REFRESH_MS@, HISTORY = @HISTORY@, SPACE = 1n << 160n;
const NS = "http://www.w3.org/2000/svg";
const OPS = ["lookup", "put", "get", "find_peer"];
const COLOURS = ["#4a7fb5", "#b5504a", "#6aa84f", "#a67c00"];
const history = {t: [], dgIn: [], dgOut: [], ops: OPS.map(() => [])};
let last = null;

function el(parent, name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  parent.appendChild(node);
  return node;
}
function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }
async function get(path, json) {
  const reply = await fetch(path, {headers: {Accept: json ? "application/json" : "text/plain"}});
  if (!reply.ok) throw new Error(path + ": HTTP " + reply.status);
  return json ? reply.json() : reply.text();
}
function bucketOf(self, id) {  // the index of the highest bit in which the ids differ
  let d = self ^ id, i = -1;
  while (d > 0n) { d >>= 1n; i += 1; }
  return i;
}

function drawBuckets(self, peers) {
  const svg = document.getElementById("buckets"), counts = new Map();
  clear(svg);
  for (const p of peers) {
    const b = bucketOf(self, BigInt("0x" + p.id));
    counts.set(b, (counts.get(b) || 0) + 1);
  }
  const rows = [...counts.entries()].sort((a, b) => b[0] - a[0]);
  const h = Math.max(6, Math.min(22, 320 / Math.max(rows.length, 1)));
  rows.forEach(([index, count], row) => {
    const y = 10 + row * h;
    el(svg, "text", {x: 6, y: y + h * 0.7, class: "label"}, "bucket " + index);
    el(svg, "rect", {x: 90, y: y, height: h - 2, width: Math.max(2, 330 * count / K),
      class: "bucket" + (count >= K ? " full" : ""), "data-index": index, "data-count": count});
    el(svg, "text", {x: 96 + 330 * count / K, y: y + h * 0.7, class: "label"}, count + "/" + K);
  });
}

function drawRing(ring) {
  const svg = document.getElementById("ring"), cx = 230, cy = 170, r = 140;
  clear(svg);
  el(svg, "circle", {cx, cy, r, class: "ring"});
  // Drawn largest first, so that a node in several roles shows each as a ring.
  const nodes = ring.fingers.map(f => [f, "finger"]);
  for (const s of ring.successors) nodes.push([s, "successor"]);
  if (ring.predecessor) nodes.push([ring.predecessor, "predecessor"]);
  nodes.push([ring.self, "self"]);
  const radius = {finger: 10, successor: 7, predecessor: 4.5, self: 7}, seen = new Set();
  ["self", "predecessor", "successor", "finger"].forEach((role, i) => {
    el(svg, "circle", {cx: 12, cy: 14 + 16 * i, r: 5, class: role});
    el(svg, "text", {x: 22, y: 18 + 16 * i, class: "label"}, role);
  });
  for (const [c, role] of nodes) {
    const key = c.id + role;
    if (seen.has(key)) continue;
    seen.add(key);
    const turn = Number(BigInt("0x" + c.id) * 3600n / SPACE) / 3600 * 2 * Math.PI - Math.PI / 2;
    const x = cx + r * Math.cos(turn), y = cy + r * Math.sin(turn);
    el(svg, "circle", {cx: x, cy: y, r: radius[role], class: "ring-node " + role,
      "data-id": c.id, "data-role": role}).appendChild(
      document.createElementNS(NS, "title")).textContent = role + " " + c.id;
  }
}

function metric(text, name, labels) {
  const want = name + (labels ? "{" + labels + "}" : "") + " ";
  const line = text.split("\\n").find(l => l.startsWith(want));
  return line ? Number(line.slice(want.length)) : 0;
}
function drawSeries(id, series, names) {
  const svg = document.getElementById(id), w = 460, h = 160;
  clear(svg);
  const top = Math.max(1e-9, ...series.flat());
  el(svg, "text", {x: 4, y: 12, class: "label"}, "max " + top.toPrecision(3));
  names.forEach((name, i) => el(svg, "text", {x: 120 + 80 * i, y: 12, class: "label",
    fill: COLOURS[i], style: "fill:" + COLOURS[i]}, name));
  series.forEach((points, i) => {
    const xy = points.map((v, j) => (w * j / Math.max(points.length - 1, 1)).toFixed(1) + "," +
      (h - 4 - (h - 20) * v / top).toFixed(1));
    el(svg, "polyline", {points: xy.join(" "), class: "line", stroke: COLOURS[i]});
  });
}
function record(text, uptime) {
  const now = performance.now() / 1000;
  const sample = {t: now, dgIn: metric(text, "kadnode_datagrams_in_total"),
    dgOut: metric(text, "kadnode_datagrams_out_total"),
    ops: OPS.map(op => [metric(text, "kadnode_operation_seconds_sum", 'operation="' + op + '"'),
      metric(text, "kadnode_operation_seconds_count", 'operation="' + op + '"')])};
  // The first point is the average since the node started, then each interval's.
  const prev = last || {t: sample.t - uptime, dgIn: 0, dgOut: 0, ops: OPS.map(() => [0, 0])};
  const dt = Math.max(1e-3, sample.t - prev.t);
  const push = (list, v) => { list.push(v); if (list.length > HISTORY) list.shift(); };
  push(history.dgIn, (sample.dgIn - prev.dgIn) / dt);
  push(history.dgOut, (sample.dgOut - prev.dgOut) / dt);
  sample.ops.forEach(([sum, n], i) => {
    const [s0, n0] = prev.ops[i];
    push(history.ops[i], n > n0 ? 1000 * (sum - s0) / (n - n0) : 0);
  });
  last = sample;
  drawSeries("traffic", [history.dgIn, history.dgOut], ["in", "out"]);
  drawSeries("latency", history.ops, OPS);
}

async function refresh() {
  try {
    const [info, peers, ring, metrics] = await Promise.all(
      [get("/info", true), get("/peers", true), get("/ring", true), get("/metrics", false)]);
    document.getElementById("id").textContent = info.id;
    document.getElementById("summary").textContent = info.peers + " contacts, " + info.values +
      " values, udp " + info.host + ":" + info.port + ", up " + Math.round(info.uptime_s) + " s";
    drawBuckets(BigInt("0x" + info.id), peers.peers);
    drawRing(ring);
    record(metrics, info.uptime_s);
    document.getElementById("error").textContent = "";
    document.body.dataset.drawn = String(Number(document.body.dataset.drawn || 0) + 1);
  } catch (e) {
    document.getElementById("error").textContent = String(e);
  }
}
refresh();
setInterval(refresh, EVERY);
</script></body></html>
"""


def page() -> str:
    return (
        PAGE.replace("@K@", str(K))
        .replace("@REFRESH_MS@", str(REFRESH_MS))
        .replace("@HISTORY@", str(HISTORY))
    )
