#!/usr/bin/env bash
# Build the agentopt CPU sandbox image WITHOUT an image registry.
#
# Why: CI machines and air-gapped hosts often reach a Debian package mirror but no
# Docker registry, so `FROM python:3.11-slim` cannot be pulled. We debootstrap a minimal
# Debian rootfs holding python3 + python3-numpy (all the guest side needs: the runner and
# evaluators use the stdlib and numpy only) and `docker import` it as an image.
#
# Usage: sandboxes/build_rootfs.sh TAG
# Env:   AGENTOPT_DEBIAN_SUITE   (default: bookworm)
#        AGENTOPT_DEBIAN_MIRROR  (default: http://deb.debian.org/debian)
#        AGENTOPT_ROOTFS_CACHE   (default: ~/.cache/agentopt) keeps the rootfs tarball so that
#                                a fresh engine (e.g. a CI runner restart) imports in seconds.
#        AGENTOPT_ROOTFS_REBUILD=1 ignores the cached tarball.
# Needs: root (debootstrap chroots), debootstrap (apt-get install -y debootstrap), docker CLI.
set -euo pipefail

TAG="${1:?usage: build_rootfs.sh TAG}"
SUITE="${AGENTOPT_DEBIAN_SUITE:-bookworm}"
MIRROR="${AGENTOPT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE_DIR="${AGENTOPT_ROOTFS_CACHE:-${HOME:-/root}/.cache/agentopt}"
TARBALL="$CACHE_DIR/rootfs-cpu-$SUITE.tar"

log() { echo "[build_rootfs] $*" >&2; }

if [[ "${AGENTOPT_ROOTFS_REBUILD:-0}" != "1" && -s "$TARBALL" ]]; then
    log "using cached rootfs $TARBALL"
else
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
    fi
    mkdir -p "$CACHE_DIR"
    WORK="$(mktemp -d /tmp/agentopt-rootfs.XXXXXX)"
    trap 'rm -rf "$WORK"' EXIT
    ROOT="$WORK/root"
    log "debootstrap $SUITE from $MIRROR (minbase + python3, python3-numpy)"
    DBLOG="$WORK/debootstrap.log"
    if ! debootstrap --variant=minbase --include=python3,python3-numpy \
        "$SUITE" "$ROOT" "$MIRROR" >"$DBLOG" 2>&1; then
        tail -n 20 "$DBLOG" >&2
        log "debootstrap failed"
        exit 1
    fi
    # Trim what a sandbox never needs: package lists, caches, docs, man pages, locales.
    rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/var/cache/debconf/*-old \
        "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
        "$ROOT"/usr/share/locale/* "$ROOT"/var/log/* "$ROOT"/tmp/* \
        "$ROOT"/usr/lib/python3*/test "$ROOT"/usr/lib/python3/dist-packages/numpy/*/tests
    # Mount points the docker backend binds into (guest paths; see docker_backend.py).
    mkdir -p "$ROOT"/agentopt "$ROOT"/work
    chmod 1777 "$ROOT"/work
    tar -C "$ROOT" --numeric-owner -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    log "rootfs tarball: $(du -h "$TARBALL" | cut -f1)"
fi

docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
    --change 'WORKDIR /work' \
    --change 'CMD ["python3"]' \
    --change 'LABEL org.agentopt.image=cpu org.agentopt.build=offline' \
    "$TARBALL" "$TAG" >&2
log "imported $TAG"
echo "$TAG"
