# syntax=docker/dockerfile:1
# Build: docker build --build-arg REVISION="$(git rev-parse HEAD)" -t idaas-sync-exporter .
# Run:   docker run -p 10129:10129 idaas-sync-exporter serve --demo

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip wheel --wheel-dir /wheels -r requirements.txt
COPY README.md ./
COPY exporter ./exporter
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# The source revision, shown in idaas_exporter_build_info{revision}.
ARG REVISION=unknown
LABEL org.opencontainers.image.title="idaas-sync-exporter" \
      org.opencontainers.image.revision="${REVISION}"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    IDAAS_EXPORTER_STATE_PATH=/var/lib/idaas-sync-exporter/state.sqlite3 \
    IDAAS_EXPORTER_LOG_FORMAT=json \
    IDAAS_EXPORTER_REVISION=${REVISION}
# The only index is /wheels, built above from this source tree, so versions are fixed by construction.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels idaas-sync-exporter \
    && groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid exporter --home-dir /var/lib/idaas-sync-exporter --no-create-home exporter \
    && mkdir -p /var/lib/idaas-sync-exporter \
    && chown 10001:10001 /var/lib/idaas-sync-exporter
USER 10001:10001
VOLUME ["/var/lib/idaas-sync-exporter"]
EXPOSE 10129
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:10129/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["idaas-sync-exporter"]
CMD ["serve"]
