#!/usr/bin/env bash
# Prints the directory holding one lint tool's binary: hack/lint-tool-dir.sh actionlint.
# Kept apart from hack/tools-dir.sh: its name (the Kubernetes build's cache key) must not
# change when a lint tool's version does.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
source "$here/tools/versions.env"
tool=${1:?usage: lint-tool-dir.sh TOOL}
var="$(echo "$tool" | tr '[:lower:]-' '[:upper:]_')_VERSION"
version=${!var:?no $var in tools/versions.env}
echo "${XDG_CACHE_HOME:-$HOME/.cache}/tradebot/lint-tools/$tool-$version/bin"
