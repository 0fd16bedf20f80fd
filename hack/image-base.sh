#!/usr/bin/env bash
# Builds the stand-in base image where the pinned base (python:3.11.11-slim-bookworm) cannot be
# pulled: a Debian bookworm root file system made by debootstrap from Debian's packages, with
# Debian's Python 3.11 and pip arranged like the python image's (python, pip, /usr/local
# site-packages on sys.path). Cached under $TRADEBOT_IMAGE_CACHE (~/.cache/tradebot/images):
# the root file system's tarball is kept, keyed by BASE_REVISION (bump it when this script's
# output changes), so a warm run only imports it. Prints the image name to use as the Dockerfiles' BASE build argument.
# Usage: hack/image-base.sh ENGINE   (ENGINE: docker or buildah; see hack/images.sh)
set -euo pipefail
engine=${1:?engine}
cache=${TRADEBOT_IMAGE_CACHE:-$HOME/.cache/tradebot/images}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_REVISION=3
key="r$BASE_REVISION"
name="localhost/tradebot-base:bookworm-$key"
tarball="$cache/base-bookworm-$key.tar"
mkdir -p "$cache"

have_image() {
  case $engine in
    docker) docker image inspect "$name" >/dev/null 2>&1 ;;
    buildah) buildah "${BUILDAH_OPTS[@]}" inspect --type image "$name" >/dev/null 2>&1 ;;
  esac
}
read -r -a BUILDAH_OPTS <<<"${BUILDAH_OPTS_LINE:-$(hack/image-engine.sh --buildah-opts)}"

if have_image; then echo "$name"; exit 0; fi

if [[ ! -f $tarball ]]; then
  command -v debootstrap >/dev/null || { echo "image-base: debootstrap missing: make deps" >&2; exit 1; }
  root=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT  # a failed debootstrap leaves nothing behind
  echo "image-base: debootstrap bookworm into $root (a few minutes)" >&2
  # passwd: the images add their user with useradd, as on the python image.
  debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates,passwd \
    bookworm "$root" "$mirror" >&2
  # Like the python image: `python`/`pip` on PATH, pip may install system-wide, and what
  # `pip install --prefix=/install` produces, copied to /usr/local by the Dockerfiles, is
  # importable. Debian's pip puts it under lib/python3/dist-packages (the "deb" layout, set
  # below; its default would add another local/), which Debian's Python does not read there.
  ln -sf python3 "$root/usr/bin/python"
  ln -sf pip3 "$root/usr/bin/pip"
  rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
  printf '%s\n' /usr/local/lib/python3.11/site-packages /usr/local/lib/python3/dist-packages \
    > "$root/usr/lib/python3/dist-packages/usr-local-site-packages.pth"
  # This machine's egress inspects TLS; its CA bundle lets pip inside builds reach PyPI.
  # (The stand-in exists only where it is built; the pinned base is what ships.)
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  # Not needed at run time (the python image drops them too).
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/*
  tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$root"
  trap - EXIT
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
ln "$tarball" "$ctx/rootfs.tar" 2>/dev/null || cp "$tarball" "$ctx/rootfs.tar"
printf 'FROM scratch\nADD rootfs.tar /\nENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin LANG=C.UTF-8 DEB_PYTHON_INSTALL_LAYOUT=deb\nCMD ["python3"]\n' > "$ctx/Containerfile"
case $engine in
  docker) docker build -q -t "$name" -f "$ctx/Containerfile" "$ctx" >&2 ;;
  buildah) buildah "${BUILDAH_OPTS[@]}" bud --isolation chroot -q -t "$name" -f "$ctx/Containerfile" "$ctx" >&2 ;;
esac
echo "$name"
