#!/usr/bin/env bash
# The control API's guard, tried as a web page and an attacker would, against a
# real `kadnode run` on 127.0.0.1 (loopback only; every daemon here is started
# by this script and stopped by its pid). Output: docs/security/api-guard.txt.
#   bash docs/security/api-guard.sh > docs/security/api-guard.txt 2>&1
set -u
cd "$(dirname "$0")/../.."
KADNODE=${KADNODE:-.venv/bin/kadnode}
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
udp=$(free_port); api=$(free_port)
say() { printf '\n$'; printf ' %q' "$@"; printf '\n'; "$@"; local rc=$?; printf '\n'; return $rc; }
wait_api() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/health" && return; sleep 0.1; done; }

echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); git rev-parse HEAD: $(git rev-parse HEAD)"
echo "# a daemon with its API on loopback"
"$KADNODE" run --host 127.0.0.1 --port "$udp" --api "127.0.0.1:$api" --data-dir "$work/a" \
    > "$work/a.log" 2>&1 &
pid=$!
wait_api "$api"
base="http://127.0.0.1:$api"

echo "## a cross-site form post from a page on another site (what <form method=post> sends)"
say curl -sS -i -X POST "$base/leave" -H "Origin: http://evil.example" \
    -H "Content-Type: application/x-www-form-urlencoded" --data ""
echo "## the same without an Origin header, and without the token"
say curl -sS -i -X POST "$base/leave" -H "Content-Type: application/x-www-form-urlencoded" --data ""
echo "## a page on a DNS name re-pointed at 127.0.0.1 (rebinding) reads /info"
say curl -sS -i "$base/info" -H "Host: evil.example:$api"
echo "## a write without the token, and with a wrong one"
say curl -sS -i -X PUT "$base/values/k" -H "Content-Type: application/json" --data '{"value": "v"}'
say curl -sS -i -X PUT "$base/values/k" -H "Content-Type: application/json" \
    -H "Authorization: Bearer wrong-wrong-wrong-wrong" --data '{"value": "v"}'
echo "## still running? (pid $pid)"
say kill -0 "$pid"
echo "## the CLI reads the token from the data directory (mode $(stat -c %a "$work/a/api.token"))"
say "$KADNODE" put k v --api "127.0.0.1:$api" --data-dir "$work/a"
echo "## reads on loopback need no token"
say curl -sS -o /dev/null -w "HTTP %{http_code}\n" "$base/info"
kill "$pid"; wait "$pid"

echo "# an API beyond loopback"
echo "## without a token the operator chose"
say "$KADNODE" run --host 127.0.0.1 --port "$udp" --api "0.0.0.0:$api" --data-dir "$work/b"
echo "exit status $?; data directory left behind: $(test -e "$work/b" && echo yes || echo no)"
echo "## with KADNODE_API_TOKEN set"
KADNODE_API_TOKEN=chosen-by-the-operator-1234 "$KADNODE" run --host 127.0.0.1 --port "$udp" \
    --api "0.0.0.0:$api" --data-dir "$work/b" > "$work/b.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "control api" "$work/b.log" && break; sleep 0.1; done
say curl -sS -i "$base/info"
say curl -sS -o /dev/null -w "HTTP %{http_code}\n" "$base/info" \
    -H "Authorization: Bearer chosen-by-the-operator-1234"
