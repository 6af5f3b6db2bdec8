# STAND-IN for python:3.11-slim-bookworm, built only where that image is absent and no registry
# can be reached (tests/containers/standins.sh). Debian bookworm's own python3.11 on a
# debootstrap minbase, shaped like the official image where the project's Dockerfile relies on
# it: `pip` installs into the system interpreter (no EXTERNALLY-MANAGED marker), `python` exists,
# no compiler. Differences: Python 3.11.2 from Debian in /usr/bin (the official image builds
# 3.11.x from source into /usr/local), and the build host's extra CA certificates are trusted
# (SSL_CERT_FILE for uv), for machines whose egress to PyPI passes a TLS-inspecting proxy.
FROM dash7-standin/debian:bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3.11 python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED \
 && ln -s /usr/bin/python3 /usr/local/bin/python
COPY extra-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
ENV LANG=C.UTF-8 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
LABEL dash7.standin="python:3.11-slim-bookworm" \
      org.opencontainers.image.description="STAND-IN built from Debian packages for the project's container tests; not the official image"
CMD ["python3"]
