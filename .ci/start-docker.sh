#!/usr/bin/env bash
# Start a Docker engine for CI and make sure the offline sandbox image exists.
#
# Idempotent: an engine that already answers `docker info` is reused, an existing image is
# not rebuilt. When no engine can start (no root, no kernel support, no package mirror) it
# prints the reason and exits 0, so CI goes on and the docker tests skip with that reason.
#
# Env: AGENTOPT_SANDBOX_IMAGE   image tag to ensure   (default agentopt/sandbox-cpu:0.1)
#      AGENTOPT_DOCKER_LOG      dockerd log file      (default /tmp/agentopt-dockerd.log)
#      AGENTOPT_DOCKER_STORAGE  storage driver: auto (default), vfs, overlay2. auto uses overlay2
#                               when an overlay mount works on /var/lib/docker (container create
#                               ~0.1 s) and vfs otherwise (works anywhere, but every container
#                               create copies the whole image: seconds per cold start).
#      AGENTOPT_SKIP_IMAGE=1    start the engine only
set -uo pipefail

START=$(date +%s)
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${AGENTOPT_SANDBOX_IMAGE:-agentopt/sandbox-cpu:0.1}"
LOG="${AGENTOPT_DOCKER_LOG:-/tmp/agentopt-dockerd.log}"
STORAGE="${AGENTOPT_DOCKER_STORAGE:-auto}"

say() { echo "[start-docker] $*"; }
elapsed() { echo "$(( $(date +%s) - START ))s"; }
give_up() { say "docker unavailable: $* (docker tests will skip) [$(elapsed)]"; exit 0; }

engine_up() { docker info >/dev/null 2>&1; }

overlay_works() {
    local probe
    mkdir -p /var/lib/docker 2>/dev/null || return 1
    probe="$(mktemp -d /var/lib/docker/.agentopt-ovl.XXXXXX 2>/dev/null)" || return 1
    mkdir -p "$probe"/{l,u,w,m}
    if mount -t overlay overlay -o "lowerdir=$probe/l,upperdir=$probe/u,workdir=$probe/w" "$probe/m" 2>/dev/null; then
        umount "$probe/m"; rm -rf "$probe"; return 0
    fi
    rm -rf "$probe"; return 1
}

start_dockerd() {  # $1 = storage driver
    say "starting dockerd (storage=$1, no iptables, no bridge), log: $LOG"
    # --bridge=none: containers get network_mode none (our default) or host only.
    nohup dockerd --iptables=false --bridge=none --storage-driver="$1" >"$LOG" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 60); do
        engine_up && return 0
        kill -0 "$DOCKERD_PID" 2>/dev/null || return 1
        sleep 1
    done
    return 1
}

if ! engine_up; then
    if ! command -v dockerd >/dev/null 2>&1; then
        [[ $(id -u) -eq 0 ]] || give_up "dockerd not installed and not root to apt-get it"
        say "installing docker.io"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/tmp/agentopt-apt-docker.log 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
                 apt-get install -y -q docker.io >/tmp/agentopt-apt-docker.log 2>&1; } \
            || give_up "apt-get install docker.io failed (see /tmp/agentopt-apt-docker.log)"
    fi
    [[ $(id -u) -eq 0 ]] || give_up "not root: cannot start dockerd"
    if pgrep -x dockerd >/dev/null 2>&1; then
        say "dockerd is running but not answering yet; waiting"
        for _ in $(seq 1 60); do engine_up && break; sleep 1; done
    else
        if [[ "$STORAGE" == "auto" ]]; then
            if overlay_works; then STORAGE=overlay2; else STORAGE=vfs; fi
        fi
        if ! start_dockerd "$STORAGE" && [[ "$STORAGE" != "vfs" ]]; then
            say "dockerd failed with storage=$STORAGE: $(tail -n 1 "$LOG" 2>/dev/null); retrying with vfs"
            kill "$DOCKERD_PID" 2>/dev/null; sleep 2
            start_dockerd vfs
        fi
    fi
    engine_up || give_up "dockerd did not answer within 60s: $(tail -n 1 "$LOG" 2>/dev/null)"
fi
say "engine up: $(docker info --format '{{.ServerVersion}} storage={{.Driver}}' 2>/dev/null) [$(elapsed)]"

if [[ "${AGENTOPT_SKIP_IMAGE:-0}" == "1" ]]; then
    exit 0
fi
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "image $IMAGE present [$(elapsed)]"
    exit 0
fi
say "building offline image $IMAGE"
if ! bash "$REPO/sandboxes/build_rootfs.sh" "$IMAGE"; then
    say "offline image build failed; docker tests needing $IMAGE will skip [$(elapsed)]"
    exit 0
fi
say "image $IMAGE built [$(elapsed)]"
