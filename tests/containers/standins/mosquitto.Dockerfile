# STAND-IN for eclipse-mosquitto:2.0.20, built only where that image is absent and no registry
# can be reached (tests/containers/standins.sh): Debian bookworm's mosquitto 2.0.11 and its
# clients on a debootstrap minbase, with the official image's layout (/mosquitto/config,
# /mosquitto/data, /mosquitto/log) and command. Differences: 2.0.11 instead of 2.0.20, glibc
# instead of musl, no entrypoint script.
FROM dash7-standin/debian:bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      mosquitto mosquitto-clients \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log \
 && printf 'listener 1883\nallow_anonymous true\n' > /mosquitto/config/mosquitto.conf \
 && chown -R mosquitto:mosquitto /mosquitto/data /mosquitto/log
EXPOSE 1883
LABEL dash7.standin="eclipse-mosquitto:2.0.20" \
      org.opencontainers.image.description="STAND-IN built from Debian packages for the project's container tests; not the official image"
CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
