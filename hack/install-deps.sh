#!/usr/bin/env bash
# Installs the system packages the tests and the local platform need, if they are missing:
# PostgreSQL's server (the records tests start a real one), Prometheus and promtool (the alert
# rules' tests), buildah and debootstrap where no docker daemon answers (`make images`), and Go
# (builds the tools), Chromium (the fleet page's browser test).
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
# promtool and prometheus (Debian's prometheus package) test the chart's alert rules, the
# latter scraping the operator in tests/e2e/test_prometheus_alerts.py.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# Headless Chromium loads the fleet page in its browser test (tests/integration/
# test_fleet_page_browser.py): Debian's package, no browser download.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# Images: docker where its daemon answers; else buildah builds and runs them, on a base that
# debootstrap makes from Debian's packages when the pinned one cannot be pulled.
if ! { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }; then
  command -v buildah >/dev/null 2>&1 || need+=(buildah)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
fi
command -v go >/dev/null 2>&1 || { echo "install-deps: Go >= 1.23 is required on PATH to build the tools" >&2; exit 1; }
if ((${#need[@]})); then
  echo "install-deps: apt-get install ${need[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
  # Debian starts a cluster of its own on install; the tests start private servers instead.
  "${sudo_cmd[@]}" service postgresql stop >/dev/null 2>&1 || true
  # The same for Prometheus's server (it would hold port 9090); only promtool is wanted.
  "${sudo_cmd[@]}" service prometheus stop >/dev/null 2>&1 || true
else
  echo "install-deps: system packages present"
fi
