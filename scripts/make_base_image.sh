#!/usr/bin/env bash
# Make a local Debian bookworm base image with python3.11 + venv, for builds that cannot pull from Docker Hub
# (air-gapped clusters, or a machine that reaches only a Debian mirror and PyPI). Then:
#   docker build --network host --build-arg BASE_IMAGE=rtx-base:bookworm -t rtx .
# Usage: scripts/make_base_image.sh [IMAGE_NAME] [DEBIAN_MIRROR]   (root; needs debootstrap and a Docker daemon)
# The host's locally added CA certificates (/usr/local/share/ca-certificates) go into the image, so pip inside the
# build trusts what pip on the host trusts (e.g. a TLS-inspecting proxy in front of PyPI). Idempotent: an existing
# image of that name is kept (remove it with `docker rmi NAME` to rebuild).
set -euo pipefail
NAME="${1:-rtx-base:bookworm}"
MIRROR="${2:-http://deb.debian.org/debian}"

if docker image inspect "$NAME" >/dev/null 2>&1; then
    echo "make_base_image: $NAME exists; keeping it" >&2
    exit 0
fi
command -v debootstrap >/dev/null || { echo "make_base_image: install debootstrap (apt-get install debootstrap)" >&2; exit 1; }

ROOT="$(mktemp -d /var/tmp/rtx-base.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
debootstrap --variant=minbase --include=ca-certificates bookworm "$ROOT" "$MIRROR" >&2

security="${MIRROR%/debian}/debian-security"
cat > "$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $security bookworm-security main
EOF
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
fi
# No daemons may start inside the chroot while packages install.
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d" && chmod 755 "$ROOT/usr/sbin/policy-rc.d"
chroot "$ROOT" /usr/sbin/update-ca-certificates >&2
chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    'apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
     && apt-get clean && rm -rf /var/lib/apt/lists/*' >&2
rm -f "$ROOT/usr/sbin/policy-rc.d"
tar -C "$ROOT" -c . | docker import \
    --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$NAME" >&2
echo "$NAME"
