#!/usr/bin/env bash
# Which container engine builds and runs the images here, and how buildah is called.
#   hack/image-engine.sh                 docker (its daemon answers) or buildah
#   hack/image-engine.sh --buildah-opts  buildah's global options (storage in the image cache)
#   hack/image-engine.sh --has ENGINE IMAGE   exit 0 when ENGINE holds IMAGE
set -euo pipefail
cache=${TRADEBOT_IMAGE_CACHE:-$HOME/.cache/tradebot/images}
# vfs: works on any file system without fuse or overlay privileges; its store lives in the
# cache so layers survive between runs (and CI can cache it).
opts="--storage-driver vfs --root $cache/storage --runroot ${XDG_RUNTIME_DIR:-/tmp}/tradebot-buildah-$(id -u)"
case ${1:-} in
  --buildah-opts) echo "$opts" ;;
  --has)
    if [[ $2 == docker ]]; then docker image inspect "$3" >/dev/null 2>&1
    else read -r -a o <<<"$opts"; buildah "${o[@]}" inspect --type image "$3" >/dev/null 2>&1; fi ;;
  "")
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then echo docker
    elif command -v buildah >/dev/null; then echo buildah
    else echo "image-engine: neither a docker daemon nor buildah: make deps installs buildah" >&2; exit 1
    fi ;;
  *) echo "usage: $0 [--buildah-opts | --has ENGINE IMAGE]" >&2; exit 2 ;;
esac
