#!/usr/bin/env bash
# Build the agentopt sandbox images (cpu, cuda) WITHOUT an image registry.
#
# Why: CI machines and air-gapped hosts often reach a Debian package mirror but no
# Docker registry, so `FROM python:3.11-slim` cannot be pulled. We debootstrap a minimal
# Debian rootfs holding python3 + python3-numpy (all the guest side needs: the runner and
# evaluators use the stdlib and numpy only) and `docker import` it as an image.
#
# The cuda image is the same minimal Debian plus, from PyPI (no registry, no NVIDIA base image):
# numpy, numba and numba-cuda[cu12], whose wheels carry NVVM, libdevice and the CUDA runtime.
# The driver (libcuda.so) is never in the image: the NVIDIA container toolkit mounts the host's
# at run time when a container asks for GPUs (sandbox.gpus), which is how driver and image stay
# matched. Extra PyPI packages (e.g. cupy-cuda12x for a library baseline) via AGENTOPT_EXTRA_PIP.
#
# Usage: sandboxes/build_rootfs.sh TAG [cpu|cuda]
# Env:   AGENTOPT_DEBIAN_SUITE   (default: bookworm)
#        AGENTOPT_DEBIAN_MIRROR  (default: http://deb.debian.org/debian)
#        AGENTOPT_ROOTFS_CACHE   (default: ~/.cache/agentopt) keeps the rootfs tarball so that
#                                a fresh engine (e.g. a CI runner restart) imports in seconds.
#        AGENTOPT_ROOTFS_REBUILD=1 ignores the cached tarball.
#        AGENTOPT_EXTRA_PIP      (cuda) more PyPI requirements installed into the image
# Needs: root (debootstrap chroots), debootstrap (apt-get install -y debootstrap), docker CLI.
set -euo pipefail

TAG="${1:?usage: build_rootfs.sh TAG [cpu|cuda]}"
KIND="${2:-cpu}"
case "$KIND" in cpu|cuda) ;; *) echo "[build_rootfs] unknown kind $KIND (cpu or cuda)" >&2; exit 2 ;; esac
SUITE="${AGENTOPT_DEBIAN_SUITE:-bookworm}"
MIRROR="${AGENTOPT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE_DIR="${AGENTOPT_ROOTFS_CACHE:-${HOME:-/root}/.cache/agentopt}"
TARBALL="$CACHE_DIR/rootfs-$KIND-$SUITE.tar"
# Debian's own numpy for cpu; for cuda numpy comes from PyPI with numba (matching versions).
INCLUDE="python3,python3-numpy"
[[ "$KIND" == cuda ]] && INCLUDE="python3"

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
    log "debootstrap $SUITE from $MIRROR (minbase + $INCLUDE)"
    DBLOG="$WORK/debootstrap.log"
    if ! debootstrap --variant=minbase --include="$INCLUDE" \
        "$SUITE" "$ROOT" "$MIRROR" >"$DBLOG" 2>&1; then
        tail -n 20 "$DBLOG" >&2
        log "debootstrap failed"
        exit 1
    fi
    if [[ "$KIND" == cuda ]]; then
        # Installed with the host's pip (its index settings, its network) for the rootfs's
        # Python: /usr/local/lib/python3.X/dist-packages is on Debian's sys.path, also under -I.
        PYVER="$(chroot "$ROOT" python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        SITE="$ROOT/usr/local/lib/python$PYVER/dist-packages"
        log "pip: numpy numba numba-cuda[cu12] ${AGENTOPT_EXTRA_PIP:-} -> $SITE"
        PIP=(python3 -m pip)
        command -v pip3 >/dev/null 2>&1 && PIP=(pip3)
        # shellcheck disable=SC2086 # AGENTOPT_EXTRA_PIP is a list of requirements
        if ! "${PIP[@]}" install -q --no-compile --target "$SITE" --python-version "$PYVER" \
            --only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
            --platform manylinux_2_17_x86_64 --platform linux_x86_64 --implementation cp \
            numpy numba "numba-cuda[cu12]" ${AGENTOPT_EXTRA_PIP:-} >"$WORK/pip.log" 2>&1; then
            tail -n 20 "$WORK/pip.log" >&2
            log "pip install into the rootfs failed"
            exit 1
        fi
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

# The NVIDIA container toolkit reads these to mount the driver; only the cuda image carries them
# (the cpu image's environment stays exactly what the env-scrub tests expect).
GPU_ENV=()
[[ "$KIND" == cuda ]] && GPU_ENV=(--change 'ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility')
docker import "${GPU_ENV[@]}" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
    --change 'WORKDIR /work' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.agentopt.image=$KIND org.agentopt.build=offline" \
    "$TARBALL" "$TAG" >&2
log "imported $TAG"
echo "$TAG"
