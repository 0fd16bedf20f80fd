#!/usr/bin/env bash
# The second Python of the matrix (3.12, the ROCm runner's): a virtualenv with the package and
# its dev and runner extras, kept outside the checkout (~/.cache/tradebot/venvs, keyed by the
# Python version and pyproject.toml) so only a dependency change rebuilds it; the checkout is
# re-linked into it (editable, no deps) on every run. Then the unit and contract layers.
# Usage: hack/python-matrix.sh [VERSION] [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-3.12}; shift || true

find_python() {
  local candidate
  # GitHub's setup-python puts pythonX.Y on PATH; pyenv keeps it under its versions.
  for candidate in "$(command -v "python$version" 2>/dev/null || true)" \
                   "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version"*/bin/"python$version"; do
    [[ -n $candidate && -x $candidate ]] || continue
    "$candidate" -c 'import sys' 2>/dev/null && { echo "$candidate"; return; }
  done
  echo "python-matrix: Python $version not found (PATH or ~/.pyenv/versions)" >&2
  return 1
}

python=$(find_python)
key=$(cat pyproject.toml <("$python" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-12)
venv="${TRADEBOT_VENV_CACHE:-$HOME/.cache/tradebot/venvs}/py$version-$key"
if [[ ! -f $venv/.installed ]]; then
  echo "python-matrix: creating $venv with $("$python" --version)"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip setuptools wheel
  "$venv/bin/pip" install -q '.[dev,runner,ui]'
  touch "$venv/.installed"
fi
"$venv/bin/pip" install -q --no-deps --no-build-isolation -e .
echo "python-matrix: $("$venv/bin/python" --version) in $venv"
exec "$venv/bin/pytest" -m "unit or contract" -p no:cacheprovider "$@"
