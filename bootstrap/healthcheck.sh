#!/usr/bin/env bash
# Is this bootstrap node healthy? For cron, a monitoring agent, or a
# container HEALTHCHECK. Prints one line per check and exits 0 (healthy),
# 1 (unhealthy) or 2 (could not check: kadnode or python3 missing).
#
#   bootstrap/healthcheck.sh [--api HOST:PORT] [--min-peers N] [--peer HOST:PORT]...
#
# Checks: the daemon answers `kadnode info --json`; its routing table holds at
# least --min-peers contacts (default 1); each --peer (the other bootstrap
# nodes) answers `kadnode ping`. Every call is bounded by `timeout`.
set -uo pipefail

api="${KADNODE_API:-127.0.0.1:8468}"
min_peers=1
peers=()
kadnode="${KADNODE:-kadnode}"
while [ $# -gt 0 ]; do
  case "$1" in
    --api) api="$2"; shift ;;
    --min-peers) min_peers="$2"; shift ;;
    --peer) peers+=("$2"); shift ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "healthcheck: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
command -v "$kadnode" >/dev/null || { echo "UNKNOWN kadnode not found (set KADNODE)"; exit 2; }
command -v python3 >/dev/null || { echo "UNKNOWN python3 not found"; exit 2; }

field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

status=0
if ! info="$(timeout 15 "$kadnode" info --json --api "$api" 2>&1)"; then
  echo "CRIT daemon at $api: ${info##*$'\n'}"
  exit 1
fi
id="$(field id <<<"$info")"
count="$(field peers <<<"$info")"
echo "OK   daemon at $api: node $id, up $(field uptime_s <<<"$info") s"
if [ "$count" -ge "$min_peers" ]; then
  echo "OK   routing table: $count contacts (at least $min_peers)"
else
  echo "CRIT routing table: $count contacts, fewer than $min_peers"
  status=1
fi
for peer in "${peers[@]}"; do
  if reply="$(timeout 15 "$kadnode" ping --json --api "$api" "$peer" 2>&1)"; then
    echo "OK   ping $peer: id $(field id <<<"$reply"), $(field rtt_ms <<<"$reply") ms"
  else
    echo "CRIT ping $peer: no reply"
    status=1
  fi
done
exit "$status"
