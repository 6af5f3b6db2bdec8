#!/usr/bin/env bash
# `make container-test`: the gateway's images and compose file under a real Docker engine.
#
# Uses the engine that answers; otherwise, as root on Debian, installs Debian's docker.io,
# starts dockerd for this run and stops it at the end. Builds the stand-in base images that are
# missing (standins.sh; never a pull), then runs the tests marked `container`.
# Without an engine and no way to start one it says so in one line, and fails when CI=true.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

log() { printf '== container-test: %s\n' "$*" >&2; }

# Debian's client (20.10) first: a newer client earlier on the PATH may lack the build plugin.
if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=$(command -v docker || echo docker); fi
export DOCKER GATEWAY_DOCKER=$DOCKER

engine_answers() { "$DOCKER" info >/dev/null 2>&1; }

started_pid=""
stop_started_engine() {
  if [ -n "$started_pid" ]; then
    log "stopping the dockerd this run started"
    kill "$started_pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$started_pid" 2>/dev/null || break; sleep 0.5; done
  fi
}
trap stop_started_engine EXIT

if ! engine_answers; then
  if [ "$(id -u)" != 0 ] || [ ! -r /etc/debian_version ]; then
    echo "container-test: no Docker engine answers, and one can be started only as root on Debian" >&2
    [ "${CI:-}" = true ] && exit 1
    exit 0
  fi
  if ! command -v dockerd >/dev/null || [ ! -x /usr/bin/docker ]; then
    log "installing Debian's docker.io"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    DOCKER=/usr/bin/docker GATEWAY_DOCKER=/usr/bin/docker
  fi
  log "starting dockerd"
  dockerd >/var/log/dash7-container-test-dockerd.log 2>&1 &
  started_pid=$!
  for _ in $(seq 1 60); do engine_answers && break; sleep 0.5; done
  engine_answers || { tail -20 /var/log/dash7-container-test-dockerd.log >&2; exit 1; }
fi
log "engine: $("$DOCKER" version --format 'server {{.Server.Version}}, client {{.Client.Version}}')"

"$root/tests/containers/standins.sh"
status=0
"$root/.venv/bin/python" -m pytest -m container --timeout 900 "$root/tests/containers" "$@" || status=$?
# Each build of a changed tree leaves the previous test image dangling: remove those only.
"$DOCKER" image prune -f --filter label=com.docker.compose.service=publisher-demo >/dev/null || true
exit "$status"
