#!/usr/bin/env bash
# `make tools`: builds the local platform's pinned binaries from the Go module proxy into a
# cache outside the checkout. A binary already built for these versions is kept, so a second
# run is a no-op. Prints what it builds and how long each step took.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
source "$here/tools/versions.env"
bin_dir=$("$here/hack/tools-dir.sh")
mkdir -p "$bin_dir"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

command -v go >/dev/null || { echo "make tools: Go is not installed (need Go >= 1.23 on PATH)" >&2; exit 1; }

k8s_minor=${KUBERNETES_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}
# Without these the API server reports v0.0.0-master+$Format:%H$, which kubectl cannot
# parse and helm's kubeVersion checks reject.
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=${KUBERNETES_VERSION} -X $pkg.gitMajor=1"
  k8s_ldflags+=" -X $pkg.gitMinor=${k8s_minor} -X $pkg.gitTreeState=clean"
  k8s_ldflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

total_start=$SECONDS
built=0
# build NAME STAMP -- go build/install args...: skips when NAME exists with the same stamp.
build() {
  local name=$1 stamp=$2; shift 3
  if [[ -x "$bin_dir/$name" && "$(cat "$bin_dir/.$name.stamp" 2>/dev/null)" == "$stamp" ]]; then
    echo "  $name $stamp: cached"
    return
  fi
  local start=$SECONDS
  echo "  $name $stamp: building ..."
  "$@"
  echo "$stamp" > "$bin_dir/.$name.stamp"
  echo "  $name $stamp: built in $((SECONDS - start)) s"
  built=$((built + 1))
}

echo "make tools: into $bin_dir"
k8s_build() {
  (cd "$here/tools/k8s" && go build -trimpath -ldflags "-s -w $k8s_ldflags" -o "$bin_dir/$1" "$2")
}
build etcd "$ETCD_VERSION" -- bash -c "cd '$here/tools/k8s' && go build -trimpath -ldflags '-s -w' -o '$bin_dir/etcd' go.etcd.io/etcd/server/v3"
for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build "$c" "$KUBERNETES_VERSION" -- k8s_build "$c" "k8s.io/kubernetes/cmd/$c"
done
build kwok "$KWOK_VERSION" -- env GOBIN="$bin_dir" go install -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
build helm "$HELM_VERSION" -- env GOBIN="$bin_dir" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
actionlint_dir=$("$here/hack/lint-tool-dir.sh" actionlint)
mkdir -p "$actionlint_dir"
build_into() {  # like build, for a tool with a directory of its own
  local dir=$1; shift
  bin_dir_saved=$bin_dir; bin_dir=$dir; build "$@"; bin_dir=$bin_dir_saved
}
build_into "$actionlint_dir" actionlint "$ACTIONLINT_VERSION" -- env GOBIN="$actionlint_dir" \
  go install -trimpath -ldflags "-s -w -X main.version=${ACTIONLINT_VERSION}" \
  "github.com/rhysd/actionlint/cmd/actionlint@${ACTIONLINT_VERSION}"
echo "make tools: $built built, done in $((SECONDS - total_start)) s; add $bin_dir to PATH or use 'make up'"
