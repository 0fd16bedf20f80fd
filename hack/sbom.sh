#!/usr/bin/env bash
# A CycloneDX SBOM (JSON) of an image's Python packages: the image's own pip lists what is
# installed in it (so the SBOM is of the image, not of this checkout), cyclonedx-py turns the
# list into CycloneDX with package URLs.
# Usage: hack/sbom.sh ENGINE IMAGE OUT.json   (ENGINE: docker or buildah)
set -euo pipefail
engine=${1:?engine} image=${2:?image} out=${3:?output file}
cyclonedx=${CYCLONEDX:-cyclonedx-py}
read -r -a BUILDAH_OPTS <<<"${BUILDAH_OPTS_LINE:-$(hack/image-engine.sh --buildah-opts)}"
frozen=$(mktemp)
trap 'rm -f "$frozen"' EXIT
freeze=(python3 -m pip --no-cache-dir freeze --all --disable-pip-version-check)
case $engine in
  docker) docker run --rm --network none --entrypoint "${freeze[0]}" "$image" "${freeze[@]:1}" > "$frozen" ;;
  buildah)
    ctr=$(buildah "${BUILDAH_OPTS[@]}" from --pull=never -q "$image")
    # (chroot isolation has only the host's network; pip freeze does not use it)
    buildah "${BUILDAH_OPTS[@]}" run --isolation chroot "$ctr" -- "${freeze[@]}" > "$frozen" \
      || { buildah "${BUILDAH_OPTS[@]}" rm "$ctr" >/dev/null; exit 1; }
    buildah "${BUILDAH_OPTS[@]}" rm "$ctr" >/dev/null ;;
  *) echo "sbom: unknown engine $engine" >&2; exit 2 ;;
esac
[[ -s $frozen ]] || { echo "sbom: $image lists no Python packages" >&2; exit 1; }
"$cyclonedx" requirements --output-format JSON --output-file "$out" "$frozen"
echo "sbom: $out: $(grep -c '"purl"' "$out") components of $image"
