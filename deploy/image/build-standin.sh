#!/usr/bin/env bash
# Builds a stand-in for python:3.11-slim-bookworm from Debian packages and tags it under that name,
# for machines that cannot pull from a container registry (CI): the Dockerfile is then built as it
# is, with --pull=never. Like the official image, Python 3.11, pip and installed scripts live in
# /usr/local/bin on Debian bookworm. Needs root, debootstrap and podman.
#
#   bash deploy/image/build-standin.sh           # does nothing when the base image is present
#   bash deploy/image/build-standin.sh --force   # bootstraps it again
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/image/podman.sh
. deploy/image/podman.sh

if [[ ${1:-} != --force ]] && podman image exists "$BASE_IMAGE"; then
    echo "build-standin: $BASE_IMAGE is present; nothing to do (--force to bootstrap it again)"
    exit 0
fi

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
root=$workdir/rootfs

# The machine's own Debian mirror: it is the one known to be reachable from here.
mirror=""
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [[ -z $mirror && -f /etc/apt/sources.list ]]; then
    mirror=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}

# passwd for useradd in the Dockerfile; minbase does not promise it.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
    bookworm "$root" "$mirror" >"$workdir/debootstrap.log" 2>&1 \
    || { tail -n 20 "$workdir/debootstrap.log" >&2; exit 1; }
# Commands in the root see only its own configuration: this machine's PIP_* variables may name
# files that are not there. Proxy variables pass, as podman passes them to builds.
in_root() {
    local pass=() name
    for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        if [[ -n ${!name:-} ]]; then pass+=("$name=${!name}"); fi
    done
    env -i PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        "${pass[@]}" chroot "$root" "$@"
}
# The official image's Python is not Debian-managed: pip may install into it.
rm -f "$root/usr/lib/python3.11/EXTERNALLY-MANAGED"
# A venv at /usr/local gives the official layout: python, pip and scripts in /usr/local/bin.
in_root python3 -m venv /usr/local

# pip inside the build must reach PyPI the way this machine does: with this machine's trust store
# (a proxy on the way may re-sign TLS) and its package index, when one is set. Settings that name
# this machine's own files (find-links, file:// indexes, constraints) mean nothing inside a build
# and are left out.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
pip_config() {
    # `pip config list` prints key='value' per line, from the files (global.…, site.…, user.…) and
    # from PIP_* variables (:env:.…), which win in pip: printed last, they win below too.
    local pip listed
    for pip in ".venv/bin/python -m pip" "python3 -m pip"; do
        if listed=$($pip config list 2>/dev/null); then
            grep -v '^:env:' <<<"$listed" || true
            grep '^:env:' <<<"$listed" || true
            return
        fi
    done
}
{
    echo "[global]"
    echo "cert = /etc/ssl/certs/ca-certificates.crt"
    pip_config | sed -nE "s/^[^.]*\.(index-url|extra-index-url|trusted-host|proxy|timeout|default-timeout)='(.*)'$/\1 \2/p" \
        | while read -r key value; do
            if [[ $key == default-timeout ]]; then key=timeout; fi
            case $key in
                *index-url)
                    value=$(tr ' ' '\n' <<<"$value" | grep -E '^https?://' | tr '\n' ' ' || true)
                    value=${value% }
                    ;;
            esac
            if [[ -n $value ]]; then echo "$key = $value"; fi
        done | awk '{ last[$1] = $0 } END { for (key in last) print last[key] }'
} >"$root/etc/pip.conf"
# Debian's pip 23.0 cannot build sdists (alibabacloud-tea) without wheel; the official image's pip can.
in_root pip install -q --disable-pip-version-check -U pip setuptools wheel

tar -C "$root" -c . | podman import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$STANDIN_IMAGE" >/dev/null
podman tag "$STANDIN_IMAGE" "$BASE_IMAGE"
echo "build-standin: tagged $STANDIN_IMAGE as $BASE_IMAGE"
