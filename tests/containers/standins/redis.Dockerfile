# STAND-IN for redis:7.2.11-alpine, built only where that image is absent and no registry can be
# reached (tests/containers/standins.sh): Debian bookworm's redis-server 7.0 on a debootstrap
# minbase. Like the official image it runs as the user `redis` in /data (a volume there starts
# owned by it) and leaves protected mode off, so other containers of the network may connect.
# Differences: Redis 7.0 instead of 7.2, glibc instead of musl, no entrypoint script.
FROM dash7-standin/debian:bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data \
 && printf '#!/bin/sh\nexec /usr/bin/redis-server "$@" --protected-mode no\n' \
      > /usr/local/bin/redis-server \
 && chmod 0755 /usr/local/bin/redis-server
USER redis
WORKDIR /data
VOLUME /data
EXPOSE 6379
LABEL dash7.standin="redis:7.2.11-alpine" \
      org.opencontainers.image.description="STAND-IN built from Debian packages for the project's container tests; not the official image"
CMD ["redis-server"]
