#!/usr/bin/env bash
# Builds the Dockerfile with podman as CI does, from the base image already present (never pulled):
#   bash deploy/image/build.sh [TAG]        # default idaas-sync-exporter:ci
# REVISION (default: the checked-out commit) becomes idaas_exporter_build_info{revision}.
# The Docker format keeps the HEALTHCHECK, which the OCI format drops.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/image/podman.sh
. deploy/image/podman.sh
tag=${1:-idaas-sync-exporter:ci}
revision=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
podman build --pull=never --format docker "${ULIMITS[@]}" --network host \
    --build-arg REVISION="$revision" -t "$tag" .
