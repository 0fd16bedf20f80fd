#!/usr/bin/env bash
# Prints the directory holding the pinned tool binaries (TRADEBOT_TOOLS_DIR overrides).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
source "$here/tools/versions.env"
version="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
echo "${TRADEBOT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tradebot/tools/$version/bin}"
