#!/usr/bin/env bash
# Build kadnode's image from this checkout.
#
#   deploy/build-image.sh [--offline] [--tag TAG] [--base IMAGE]
#
# Default: FROM python:3.11-slim (needs a registry that has it), kadnode and
# its dependencies installed with pip inside the build.
# --offline: no container registry and no network inside the build. The base
# is kadnode-base:bookworm, made by build-base-image.sh with debootstrap from
# Debian's packages (built once, then reused); the wheels of kadnode and its
# dependencies are built here on the host (pip, from PyPI or pip's cache) and
# installed with --no-index under `docker build --network none`.
# TAG defaults to kadnode:local. PYTHON picks the host interpreter for the
# wheels (it must be 3.11, as the image's is).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
tag="kadnode:local"
base=""
offline=""
while [ $# -gt 0 ]; do
  case "$1" in
    --offline) offline=1 ;;
    --tag) tag="$2"; shift ;;
    --base) base="$2"; shift ;;
    -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

start=$SECONDS
ctx="$(mktemp -d /var/tmp/kadnode-image.XXXXXX)"
trap 'rm -rf "$ctx"' EXIT
# A small build context: the classic builder would otherwise send .venv too.
mkdir -p "$ctx/deploy/wheelhouse"
cp "$repo/pyproject.toml" "$repo/README.md" "$ctx/"
cp -r "$repo/kadnode" "$ctx/kadnode"
find "$ctx/kadnode" -name __pycache__ -prune -exec rm -rf {} +
cp "$here/Dockerfile" "$here/constraints.txt" "$ctx/deploy/"
mkdir -p "$ctx/bootstrap"
cp "$repo/bootstrap/seed_dns.py" "$ctx/bootstrap/seed_dns.py"

network=()
if [ -n "$offline" ]; then
  base="${base:-kadnode-base:bookworm}"
  if [ "$base" = "kadnode-base:bookworm" ]; then
    "$here/build-base-image.sh" "$base"
  fi
  python="${PYTHON:-}"
  if [ -z "$python" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=python3; fi
  fi
  "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
    echo "build-image.sh: the wheels must be built by Python 3.11 (the image's); set PYTHON" >&2
    exit 2
  }
  echo "building wheels for kadnode and its dependencies ..."
  "$python" -m pip wheel -q --wheel-dir "$ctx/deploy/wheelhouse" -c "$ctx/deploy/constraints.txt" \
    "$ctx" >"$ctx/pip.log" 2>&1 || {
    tail -20 "$ctx/pip.log" >&2
    exit 1
  }
  network=(--network none)
fi
base="${base:-python:3.11-slim}"
echo "docker build FROM $base -> $tag ${network[*]}"
docker build -q "${network[@]}" --build-arg "BASE=$base" -f "$ctx/deploy/Dockerfile" -t "$tag" "$ctx" >/dev/null
echo "built $tag FROM $base in $((SECONDS - start)) s: $(docker run --rm --network none "$tag" --version)"
