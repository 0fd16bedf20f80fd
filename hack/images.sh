#!/usr/bin/env bash
# `make images`: builds the operator and runner images as localhost/tradebot-operator:dev and
# localhost/tradebot-runner:dev with docker where its daemon answers, else with buildah
# (vfs storage and chroot isolation: no daemon, no cgroups, no user namespaces needed). Where
# the pinned base cannot be pulled, a stand-in built from Debian's packages is passed as BASE
# (hack/image-base.sh). Then each image's CycloneDX SBOM and its size against its budget.
# Everything slow is cached outside the checkout, under $TRADEBOT_IMAGE_CACHE
# (~/.cache/tradebot/images): buildah's storage (layers: an unchanged step is not run again),
# the stand-in's root file system, and a stamp per image of the inputs it was built from.
# Usage: hack/images.sh [engine]      prints "engine=... base=..." and the sizes
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${TRADEBOT_IMAGE_CACHE:-$HOME/.cache/tradebot/images}
export TRADEBOT_IMAGE_CACHE=$cache
mkdir -p "$cache/sbom"
PINNED=python:3.11.11-slim-bookworm
# Budgets (MB): the operator has no Freqtrade; the runner carries it and its numeric stack.
declare -A BUDGET_MB=([operator]=300 [runner]=1500)

engine=${1:-$(hack/image-engine.sh)}
# The children (image-base.sh, sbom.sh) read the same options from the environment.
export BUILDAH_OPTS_LINE
BUILDAH_OPTS_LINE=$(hack/image-engine.sh --buildah-opts)
read -r -a BUILDAH_OPTS <<<"$BUILDAH_OPTS_LINE"

pull_pinned() {
  case $engine in
    docker) timeout 120 docker pull -q "$PINNED" >/dev/null 2>&1 ;;
    buildah) buildah "${BUILDAH_OPTS[@]}" inspect --type image "docker.io/library/$PINNED" >/dev/null 2>&1 \
      || timeout 60 buildah "${BUILDAH_OPTS[@]}" pull -q "docker.io/library/$PINNED" >/dev/null 2>&1 ;;
  esac
}
if [[ -n ${TRADEBOT_IMAGE_BASE:-} ]]; then
  base=$TRADEBOT_IMAGE_BASE
elif pull_pinned; then
  base=pinned
else
  echo "images: $PINNED cannot be pulled here; building on a stand-in from Debian's packages" >&2
  base=$(hack/image-base.sh "$engine")
fi
echo "images: engine=$engine base=$base"

size_mb() {
  local bytes
  case $engine in
    docker) bytes=$(docker image inspect -f '{{.Size}}' "$1") ;;
    buildah) bytes=$(buildah "${BUILDAH_OPTS[@]}" images --format '{{.Size}}' --noheading "$1" | head -1) ;;
  esac
  # buildah prints a human size ("512 MB"); docker bytes.
  python3 - "$bytes" <<'PY'
import re, sys
v = sys.argv[1].strip()
m = re.fullmatch(r"([\d.]+)\s*([kKMGT]?B)", v)
print(round(float(m[1]) * {"B": 1e-6, "kB": 1e-3, "KB": 1e-3, "MB": 1, "GB": 1e3, "TB": 1e6}[m[2]]) if m else round(int(v) / 1e6))
PY
}

# buildah keeps every build's layers (vfs: whole copies) and the working containers of builds
# that were interrupted: on a machine that builds often they fill the disk. Those containers
# go; when the storage passes TIDY_GB, untagged images go too (the next build of a changed
# dependency layer is then cold).
TIDY_GB=${TRADEBOT_IMAGE_TIDY_GB:-20}
tidy() {
  [[ $engine == buildah ]] || return 0
  buildah "${BUILDAH_OPTS[@]}" rm --all >/dev/null 2>&1 || true
  local gb
  gb=$(du -s --block-size=1G "$cache/storage" 2>/dev/null | cut -f1)
  if (( ${gb:-0} > TIDY_GB )); then
    echo "images: the build storage holds ${gb} GB (over ${TIDY_GB}): removing untagged images"
    buildah "${BUILDAH_OPTS[@]}" rmi --prune >/dev/null 2>&1 || true
  fi
}
tidy

failed=0
for name in operator runner; do
  tag="localhost/tradebot-$name:dev"
  # The inputs of the image: a stamp per image skips even the engine's cache lookup.
  inputs=$( (cat "images/$name/Dockerfile" .dockerignore pyproject.toml README.md; echo "$base";
             git ls-files -s operator; [[ $name == runner ]] && git ls-files -s user_data
             git diff HEAD -- operator user_data) | sha256sum | cut -c1-16)
  stamp="$cache/$name.$engine.stamp"
  sbom="$cache/sbom/$name.cdx.json"
  start=$SECONDS
  if [[ -f $stamp && $(cat "$stamp") == "$inputs" && -f $sbom ]] \
     && hack/image-engine.sh --has "$engine" "$tag"; then
    echo "images: $tag up to date"
  else
    case $engine in
      docker) docker build -q -f "images/$name/Dockerfile" --build-arg "BASE=$base" -t "$tag" . >/dev/null ;;
      buildah) buildah "${BUILDAH_OPTS[@]}" bud --isolation chroot --layers -q \
                 -f "images/$name/Dockerfile" --build-arg "BASE=$base" -t "$tag" . >/dev/null ;;
    esac
    echo "images: built $tag in $((SECONDS - start)) s"
    CYCLONEDX=${CYCLONEDX:-$PWD/.venv/bin/cyclonedx-py} hack/sbom.sh "$engine" "$tag" "$sbom"
    echo "$inputs" > "$stamp"
  fi
  mb=$(size_mb "$tag")
  if (( mb > BUDGET_MB[$name] )); then
    echo "images: $tag is $mb MB, OVER its budget of ${BUDGET_MB[$name]} MB" >&2; failed=1
  else
    echo "images: $tag is $mb MB (budget ${BUDGET_MB[$name]} MB)"
  fi
done
echo "images: SBOMs in $cache/sbom"
tidy
exit $failed
