#!/usr/bin/env bash
# Make sure the base images the project names exist in the local engine, without a registry.
#
# For each image the project pins (the Dockerfile's PYTHON_IMAGE, docker-compose.yml's redis and
# eclipse-mosquitto) that the engine does not have, build a STAND-IN under the same tag from
# Debian's own packages: a debootstrap minbase of bookworm imported as dash7-standin/debian,
# then standins/<name>.Dockerfile on top. An image that exists and is not one of ours (no
# `dash7.standin` label) is the real one and is never touched. Nothing is pulled.
#
# Usage: standins.sh            (DOCKER names the client, default: docker)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
DOCKER=${DOCKER:-docker}
BASE=dash7-standin/debian:bookworm

log() { printf '== standins: %s\n' "$*" >&2; }

pinned() { # the image tags the project's own files name
  sed -n 's/^ARG PYTHON_IMAGE=//p' "$root/Dockerfile"
  sed -n 's/^ *image: *\(redis:[^ ]*\).*/\1/p; s/^ *image: *\(eclipse-mosquitto:[^ ]*\).*/\1/p' \
    "$root/docker-compose.yml"
}

recipe_for() { # tag -> stand-in Dockerfile
  case "$1" in
    python:*) echo "$here/standins/python.Dockerfile" ;;
    redis:*) echo "$here/standins/redis.Dockerfile" ;;
    eclipse-mosquitto:*) echo "$here/standins/mosquitto.Dockerfile" ;;
    *) echo "no stand-in recipe for $1" >&2; return 1 ;;
  esac
}

recipe_hash() { sha256sum "$(recipe_for "$1")" | cut -c1-16; }

standin_label() { "$DOCKER" image inspect --format '{{index .Config.Labels "dash7.standin"}}' "$1" 2>/dev/null; }

build_base() {
  if "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then return 0; fi
  command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  local work
  work=$(mktemp -d /var/tmp/dash7-standin.XXXXXX)
  log "debootstrap --variant=minbase bookworm (about 30 s)"
  debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/log" 2>&1 \
    || { tail -20 "$work/log" >&2; rm -rf "$work"; return 1; }
  tar -C "$work/rootfs" -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'LABEL dash7.standin=debian:bookworm' \
    - "$BASE" >/dev/null
  rm -rf "$work"
  log "built $BASE"
}

build_standin() { # tag
  local tag=$1 recipe context
  recipe=$(recipe_for "$tag")
  build_base
  context=$(mktemp -d)
  mkdir -p "$context/extra-ca"
  # The build host's own extra CAs (a TLS-inspecting egress proxy); none on most machines.
  find /usr/local/share/ca-certificates -name '*.crt' -exec cp {} "$context/extra-ca/" \; 2>/dev/null || true
  log "building stand-in $tag from $(basename "$recipe")"
  DOCKER_BUILDKIT=1 "$DOCKER" build --quiet --label "dash7.standin.recipe=$(recipe_hash "$tag")" \
    -t "$tag" -f "$recipe" "$context" >/dev/null
  rm -rf "$context"
}

for tag in $(pinned); do
  label=$(standin_label "$tag" || true)
  if "$DOCKER" image inspect "$tag" >/dev/null 2>&1; then
    if [ -z "$label" ]; then log "$tag: the real image is present, used as it is"; continue; fi
    built_from=$("$DOCKER" image inspect --format '{{index .Config.Labels "dash7.standin.recipe"}}' "$tag")
    if [ "$built_from" = "$(recipe_hash "$tag")" ]; then log "$tag: stand-in present"; continue; fi
    log "$tag: stand-in built from an older recipe"
  fi
  build_standin "$tag"
done
