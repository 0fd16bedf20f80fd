#!/usr/bin/env bash
# `make demo`: the local cluster, the CRDs, the operator (local executor) and the example
# Strategy + Backtest; waits for the Backtest to succeed and shows its results. Everything
# keeps running until `make down`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
KUBECTL=("$TRADEBOT_TOOLS_BIN/kubectl" --kubeconfig .local/kubeconfig \
  --cache-dir .local/kubectl-cache)  # discovery of this cluster only, not of others on its port
export KUBECONFIG=$PWD/.local/kubeconfig

"${KUBECTL[@]}" apply -f crds/ >/dev/null
"${KUBECTL[@]}" wait --for=condition=Established --timeout=60s crd -l app.kubernetes.io/part-of=tradebot-operator >/dev/null
echo "CRDs installed: $(ls crds | tr '\n' ' ')"

pidfile=.local/run/operator.pid
if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "operator already running (pid $(cat "$pidfile"))"
else
  mkdir -p .local/run .local/logs
  TRADEBOT_EXECUTOR=local \
  TRADEBOT_LOCAL_STATE_DIR="$PWD/.local/operator" \
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
cat <<EOT

The cluster and the operator keep running. Try:
  export KUBECONFIG=$PWD/.local/kubeconfig PATH=$TRADEBOT_TOOLS_BIN:\$PATH
  kubectl get tradebot
  kubectl describe bt ema-rsi-sample
Stop everything: make down
EOT
