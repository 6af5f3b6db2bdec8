# One image for every gateway service; docker-compose.yml picks the command (gateway-ingest,
# gateway-decoder, gateway-publisher, gateway-console, gateway-sim, gatewayctl,
# gateway-healthcheck).
#
# Multi-arch (a Pi 3/4/5 on a 64-bit OS is linux/arm64), from a workstation:
#   docker buildx build --platform linux/arm64,linux/amd64 -t REGISTRY/dash7-gateway:TAG --push .
# 32-bit ARM (linux/arm/v7) is not supported: msgpack and pydantic-core would have to be compiled.
#
# tests/test_image_install.py runs this file's build-stage steps as plain commands in CI.

# The Python minor of development (requires-python = ">=3.11,<3.12"). Both stages use the same
# image, so the virtualenv's interpreter link (/usr/local/bin/python3.11) exists at run time.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
# The uv of the Makefile; the slim image has no compiler, so every dependency comes as a wheel.
RUN pip install --no-cache-dir 'uv==0.13.9'
WORKDIR /src
# Dependencies first, from the lockfile only: this layer is reused until uv.lock changes.
COPY uv.lock pyproject.toml ./
COPY packages/dash7/pyproject.toml packages/dash7/
COPY packages/common/pyproject.toml packages/common/
COPY packages/ctl/pyproject.toml packages/ctl/
COPY services/ingest/pyproject.toml services/ingest/
COPY services/decoder/pyproject.toml services/decoder/
COPY services/publisher/pyproject.toml services/publisher/
COPY services/simulator/pyproject.toml services/simulator/
COPY services/console/pyproject.toml services/console/
COPY packages/devkit/pyproject.toml packages/devkit/
# gateway-devkit (the test kit, the bench, the demo) is dev-only: never installed here; its
# sources are not even in the build context. uv would still install a dependency of its own, so
# it has none the services lack (pytest is its extra, which --all-packages does not install).
RUN uv sync --frozen --no-dev --all-packages --no-install-workspace \
    --no-install-package gateway-devkit
# Then the workspace members, installed as wheels (not editable: the source stays in this stage).
COPY packages packages
COPY services services
RUN uv sync --frozen --no-dev --all-packages --no-editable --no-install-package gateway-devkit

# ---------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --no-create-home --shell /usr/sbin/nologin gateway
# Only the virtualenv: no uv, no source, no build tools. Owned by root, read-only for the services.
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_LOG_FORMAT=json
USER 10001:10001
CMD ["gatewayctl", "status"]
