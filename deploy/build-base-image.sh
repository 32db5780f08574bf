#!/usr/bin/env bash
# Build a Debian bookworm base image without any container registry:
# debootstrap (minbase + python3, python3-venv and libfaketime, which
# chaos/run.py skew preloads to set a node's clock) from Debian's packages,
# then `docker import`. deploy/Dockerfile builds kadnode FROM it with
#   --build-arg BASE=kadnode-base:bookworm
#
#   deploy/build-base-image.sh [TAG]      # default TAG: kadnode-base:bookworm
#
# Reuses an existing image of that tag (REBUILD=1 forces a new one). Needs root,
# debootstrap and a running docker engine. DEBIAN_MIRROR overrides the mirror
# debootstrap uses (its default otherwise). Takes 1-5 minutes.
set -euo pipefail

tag="${1:-kadnode-base:bookworm}"
packages="python3,python3-venv,libfaketime"
# An image of that tag built with another package list is rebuilt.
held="$(docker image inspect -f '{{index .Config.Labels "kadnode.base.packages"}}' "$tag" 2>/dev/null || true)"
if [ -z "${REBUILD:-}" ] && [ "$held" = "$packages" ]; then
  echo "base image $tag exists (REBUILD=1 to rebuild)"
  exit 0
fi
command -v debootstrap >/dev/null || {
  echo "debootstrap is missing: apt-get install debootstrap" >&2
  exit 2
}

root="$(mktemp -d /var/tmp/kadnode-rootfs.XXXXXX)"
trap 'rm -rf "$root"' EXIT
start=$SECONDS
echo "debootstrap --variant=minbase bookworm into $root ..."
# shellcheck disable=SC2086  # DEBIAN_MIRROR is one optional word
debootstrap --variant=minbase --include="$packages" bookworm "$root" \
  ${DEBIAN_MIRROR:-} >"$root.log" 2>&1 || {
  tail -20 "$root.log" >&2
  echo "debootstrap failed (full log: $root.log)" >&2
  exit 1
}
rm -f "$root.log"
# What an image does not need: package caches and lists, documentation.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/locale/* "$root"/var/cache/debconf/*-old
tar -C "$root" -c . | docker import \
  -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' -c "LABEL kadnode.base.packages=$packages" \
  -m "debootstrap --variant=minbase bookworm + $packages" - "$tag" >/dev/null
echo "built $tag in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
