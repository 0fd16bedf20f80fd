#!/usr/bin/env bash
# `make demo`: the local cluster, the CRDs, the local exchange double (the cluster's exchange:
# there is none reachable here), the operator (local executor) and the example Strategy +
# Backtest + dry-run LiveBot; waits for the Backtest to succeed and the bot to trade against
# the double, and shows both, and serves the fleet page (`tradebot ui`, printed as `fleet page:
# URL`). Everything keeps running until `make down`, which stops every process with a pid
# file in .local/run (the double, the operator and the fleet page included).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
KUBECTL=("$TRADEBOT_TOOLS_BIN/kubectl" --kubeconfig .local/kubeconfig \
  --cache-dir .local/kubectl-cache)  # discovery of this cluster only, not of others on its port
export KUBECONFIG=$PWD/.local/kubeconfig

"${KUBECTL[@]}" apply -f crds/ >/dev/null
"${KUBECTL[@]}" wait --for=condition=Established --timeout=60s crd -l app.kubernetes.io/part-of=tradebot-operator >/dev/null
echo "CRDs installed: $(ls crds | tr '\n' ' ')"

# The pid file is named after the module: `make down` stops a process only if its name is in
# the command line (its guard against a reused pid).
double_pid=.local/run/exchange_double.pid
double_url_file=.local/run/exchange_double.url
mkdir -p .local/run .local/logs
if [[ -f $double_pid ]] && kill -0 "$(cat "$double_pid")" 2>/dev/null && [[ -f $double_url_file ]]; then
  echo "exchange double already running (pid $(cat "$double_pid"), $(cat "$double_url_file"))"
else
  port=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  setsid "$BIN/python" -m tradebot_testing.exchange_double --port "$port" \
    >> .local/logs/exchange-double.log 2>&1 < /dev/null &
  echo $! > "$double_pid"
  echo "http://127.0.0.1:$port" > "$double_url_file"
  for _ in $(seq 50); do
    "$BIN/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/api/v3/ping', timeout=1)" 2>/dev/null && break
    sleep 0.2
  done
  echo "exchange double started (pid $(cat "$double_pid"), http://127.0.0.1:$port, log .local/logs/exchange-double.log)"
fi
DOUBLE_URL=$(cat "$double_url_file")

pidfile=.local/run/operator.pid
if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "operator already running (pid $(cat "$pidfile"))"
else
  TRADEBOT_EXECUTOR=local \
  TRADEBOT_LOCAL_STATE_DIR="$PWD/.local/operator" \
  TRADEBOT_EXCHANGE_DOUBLE_URL="$DOUBLE_URL" \
    setsid "$BIN/tradebot" operator >> .local/logs/operator.log 2>&1 < /dev/null &
  echo $! > "$pidfile"
  echo "operator started (pid $!, log .local/logs/operator.log, local executor, records .local/operator/records.db: \`tradebot report\` reads them)"
fi

"${KUBECTL[@]}" apply -f examples/strategy.yaml -f examples/backtest.yaml
echo "waiting for Backtest ema-rsi-sample to finish (real Freqtrade on the bundled data) ..."
deadline=$((SECONDS + 300))
while :; do
  phase=$("${KUBECTL[@]}" get bt ema-rsi-sample -o jsonpath='{.status.phase}')
  [[ $phase == Succeeded || $phase == Failed ]] && break
  if ((SECONDS > deadline)); then
    echo "timed out; phase '$phase'. Operator log: .local/logs/operator.log" >&2
    exit 1
  fi
  if [[ -f $pidfile ]] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "the operator exited; see .local/logs/operator.log:" >&2
    tail -20 .local/logs/operator.log >&2
    exit 1
  fi
  sleep 2
done

echo
"${KUBECTL[@]}" get tradebot
echo
echo "Results of backtest ema-rsi-sample ($phase):"
"${KUBECTL[@]}" get bt ema-rsi-sample -o go-template='{{range $k, $v := .status.results}}  {{$k}}: {{$v}}{{"\n"}}{{end}}  runId: {{.status.runId}}{{"\n"}}  configHash: {{.status.configHash}}{{"\n"}}  dataHash: {{.status.dataHash}}{{"\n"}}{{range .status.artifacts}}  artifact {{.name}} sha256 {{.sha256}}{{"\n"}}{{end}}'
[[ $phase == Succeeded ]] || { "${KUBECTL[@]}" get bt ema-rsi-sample -o jsonpath='{.status.message}{"\n"}' >&2; exit 1; }

# The fleet page (`tradebot ui`), read-only, on a free port: kept running until `make down`
# like the operator (its pid file's name is in its command line: `tradebot ui`).
ui_pid=.local/run/ui.pid
ui_url_file=.local/run/ui.url
if [[ -f $ui_pid ]] && kill -0 "$(cat "$ui_pid")" 2>/dev/null && [[ -f $ui_url_file ]]; then
  echo "fleet page already served (pid $(cat "$ui_pid"))"
else
  port=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  setsid "$BIN/tradebot" ui --host 127.0.0.1 --port "$port" \
    --dsn "sqlite:///$PWD/.local/operator/records.db" >> .local/logs/ui.log 2>&1 < /dev/null &
  echo $! > "$ui_pid"
  echo "http://127.0.0.1:$port/" > "$ui_url_file"
  for _ in $(seq 100); do
    "$BIN/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/', timeout=2)" 2>/dev/null && break
    sleep 0.3
  done
fi
UI_URL=$(cat "$ui_url_file")
echo "fleet page: $UI_URL"
echo "  (read-only; the Backtest's equity curve and trades are on it; log .local/logs/ui.log)"

echo
"${KUBECTL[@]}" apply -f examples/livebot.yaml
echo "waiting for LiveBot ema-rsi-dry (dry-run freqtrade trade against the exchange double) to report ..."
deadline=$((SECONDS + 180))
while :; do
  equity=$("${KUBECTL[@]}" get bot ema-rsi-dry -o jsonpath='{.status.equity}')
  heartbeat=$("${KUBECTL[@]}" get bot ema-rsi-dry -o jsonpath='{.status.lastHeartbeat}')
  [[ -n $equity && -n $heartbeat ]] && break
  if ((SECONDS > deadline)); then
    echo "timed out waiting for the bot's equity and heartbeat:" >&2
    "${KUBECTL[@]}" get bot ema-rsi-dry -o jsonpath='{.status.phase}: {.status.message}{"\n"}' >&2
    exit 1
  fi
  sleep 2
done
echo
"${KUBECTL[@]}" get bot
echo
echo "LiveBot ema-rsi-dry:"
"${KUBECTL[@]}" get bot ema-rsi-dry -o go-template='  phase: {{.status.phase}}{{"\n"}}  mode: {{.status.mode}}{{"\n"}}  equity: {{.status.equity}} USDT{{"\n"}}  profit: {{.status.profit}}{{"\n"}}  open trades: {{.status.openTrades}}{{"\n"}}  heartbeat: {{.status.lastHeartbeat}}{{"\n"}}'
echo "  exchange: the local exchange double at $DOUBLE_URL (prices: $DOUBLE_URL/double/state)"
echo
echo "fleet page: $UI_URL"
cat <<EOT

The cluster, the operator and the fleet page keep running. Try:
  export KUBECONFIG=$PWD/.local/kubeconfig PATH=$TRADEBOT_TOOLS_BIN:\$PATH
  kubectl get tradebot
  kubectl describe bt ema-rsi-sample
  kubectl get bot ema-rsi-dry -o yaml
  curl -s -XPOST $DOUBLE_URL/double/price -d '{"pair": "BTC/USDT", "move": -0.05}'   # move the market
  tradebot report --html report/ --dsn sqlite:///$PWD/.local/operator/records.db   # static pages
Stop everything (cluster, operator, fleet page, exchange double, bots): make down
EOT
