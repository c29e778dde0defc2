# Sourced by the scripts beside it: podman as it works on CI machines, and the image names.
# crun fails there; runc with cgroupfs works when the ulimits are given explicitly.
# shellcheck shell=bash disable=SC2034
BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
STANDIN_IMAGE=localhost/python-standin:3.11
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
podman() {
    command podman --runtime runc --cgroup-manager cgroupfs "$@"
}
