# syntax=docker/dockerfile:1
# One image for every gateway service; the service is chosen by the command
# (gateway-ingest, gateway-decoder, gateway-publisher, gateway-sim, gatewayctl).
# Multi-arch: docker buildx build --platform linux/arm64,linux/amd64 -t dash7-gateway .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
RUN pip install --no-cache-dir 'uv==0.13.9'
WORKDIR /src
# Dependencies first, from the lockfile only: this layer is reused until uv.lock changes.
COPY uv.lock pyproject.toml ./
COPY packages/common/pyproject.toml packages/common/
COPY packages/ctl/pyproject.toml packages/ctl/
COPY services/ingest/pyproject.toml services/ingest/
COPY services/decoder/pyproject.toml services/decoder/
COPY services/publisher/pyproject.toml services/publisher/
COPY services/simulator/pyproject.toml services/simulator/
RUN uv sync --frozen --no-dev --all-packages --no-install-workspace
# Then the project itself, installed into the virtualenv (not editable: the source stays here).
COPY packages packages
COPY services services
RUN uv sync --frozen --no-dev --all-packages --no-editable

# ---------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_LOG_FORMAT=json
USER 10001:10001
CMD ["gateway-ingest"]
