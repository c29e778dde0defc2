# Build: docker build --build-arg REVISION="$(git rev-parse HEAD)" -t idaas-sync-exporter .
# Run:   docker run -p 10129:10129 idaas-sync-exporter serve --demo
# Plain Dockerfile syntax only, so BuildKit, Docker's legacy builder, kaniko and podman all build it.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The runtime stage copies this venv whole; both stages share the base, so its interpreter path holds.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install -r requirements.txt
COPY README.md ./
COPY exporter ./exporter
RUN pip install --no-deps . \
    && pip uninstall -y pip

FROM python:3.11-slim-bookworm
# The source revision, shown in idaas_exporter_build_info{revision}. Declared before the first RUN so
# that a new revision rebuilds this stage's few cheap layers: buildah's layer cache (podman 4.3) does
# not compare build-argument values for LABEL or ENV, only for RUN. The build stage stays cached.
ARG REVISION=unknown
RUN groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid exporter --home-dir /var/lib/idaas-sync-exporter --no-create-home exporter \
    && mkdir -p /var/lib/idaas-sync-exporter \
    && chown 10001:10001 /var/lib/idaas-sync-exporter
COPY --from=build /opt/venv /opt/venv
LABEL org.opencontainers.image.title="idaas-sync-exporter" \
      org.opencontainers.image.revision="${REVISION}"
# No IDAAS_EXPORTER_STATE_PATH: the default is /var/lib/idaas-sync-exporter/state.sqlite3 when that
# directory exists, as here, and `serve --demo` then keeps its state in memory instead of writing
# the volume a real tenant's state will use.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    IDAAS_EXPORTER_LOG_FORMAT=json \
    IDAAS_EXPORTER_REVISION=${REVISION}
USER 10001:10001
VOLUME ["/var/lib/idaas-sync-exporter"]
EXPOSE 10129
# The probe reads the same settings as serve (IDAAS_EXPORTER_LISTEN_ADDRESS, the web config's TLS),
# so another port or TLS needs no change here.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["idaas-sync-exporter", "healthcheck"]
ENTRYPOINT ["idaas-sync-exporter"]
CMD ["serve"]
