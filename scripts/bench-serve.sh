#!/usr/bin/env bash
# Load benchmark of `kubeward serve`, on loopback only.
#
#   scripts/bench-serve.sh            # 20 s each: sustained, overload, durable (--state)
#   SECS=10 CONNS=8 PHASES="sustained durable" scripts/bench-serve.sh
#
# The load generator (crates/serve/examples/loadgen.rs) POSTs 400-event EventList batches over
# keep-alive connections, one request in flight per connection, and reports events/s
# acknowledged and the p50/p99 acknowledgement latency. Each batch holds one alerting
# ClusterRole create with a unique auditID, so every acknowledged batch must give exactly one
# alert. After each phase the script checks the server's own counts against what was
# acknowledged: events received = events acknowledged, every received event processed, one
# alert per acknowledged batch, and refused requests counted as dropped, never processed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-20}
CONNS=${CONNS:-8}
BATCH=${BATCH:-400}

cargo build --release -q -p kubeward
cargo build --release -q -p kubeward-serve --example loadgen
bin=target/release/kubeward
load=target/release/examples/loadgen
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

metric() { # metric NAME: its value in the last scrape (0 when absent)
  awk -v n="$1" '$1 == n { v = $2 } END { printf "%d\n", v + 0 }' "$tmp/metrics"
}

phase() { # phase NAME CONNECTIONS [serve options...]
  local name=$1 conns=$2; shift 2
  rm -f "$tmp/ready" "$tmp/alerts.jsonl"
  "$bin" serve --listen 127.0.0.1:0 --ready-file "$tmp/ready" --alerts-file "$tmp/alerts.jsonl" "$@" \
    2>"$tmp/serve-$name.log" &
  pid=$!
  for _ in $(seq 100); do [ -s "$tmp/ready" ] && break; sleep 0.1; done
  local addr; addr=$(cat "$tmp/ready")
  echo "== $name: $conns connections, $BATCH events per batch, ${SECS}s, serve $*"
  "$load" --addr "$addr" --connections "$conns" --seconds "$SECS" --batch "$BATCH" | tee "$tmp/load.txt"
  local acked; acked=$(sed -n 's/^acknowledged_events=//p' "$tmp/load.txt")
  # Wait for the queue to drain, then read the counts.
  for _ in $(seq 600); do
    curl -sf "http://$addr/metrics" >"$tmp/metrics"
    [ "$(metric kubeward_queue_depth)" = 0 ] && break
    sleep 0.1
  done
  kill -TERM "$pid"; wait "$pid" || true; pid=
  local received parsed dropped alerts
  received=$(metric kubeward_events_received_total)
  parsed=$(metric kubeward_events_parsed_total)
  dropped=$(metric kubeward_events_dropped_total)
  alerts=$(wc -l <"$tmp/alerts.jsonl")
  echo "server: received $received, processed $parsed, refused (dropped before acknowledgement) $dropped, alerts $alerts"
  local ok=1
  [ "$received" = "$acked" ] || { echo "MISMATCH: received $received != acknowledged $acked"; ok=0; }
  [ "$parsed" = "$received" ] || { echo "MISMATCH: processed $parsed != received $received"; ok=0; }
  [ "$alerts" = "$((acked / BATCH))" ] || { echo "MISMATCH: $alerts alerts != $((acked / BATCH)) batches"; ok=0; }
  [ "$ok" = 1 ] && echo "check: every acknowledged event processed, one alert per acknowledged batch, none lost"
  echo
}

PHASES=${PHASES:-sustained overload durable}
for p in $PHASES; do
  case $p in
    sustained) phase sustained "$CONNS" ;;
    # Overload: a small queue and twice the connections; the excess must be refused (429),
    # and what was acknowledged must still all be processed.
    overload) phase overload "$((CONNS * 2))" --queue-events 4000 ;;
    # Durable and stateful: every batch committed to the spool before its 200, every
    # RBAC change and alert to the state file.
    durable) phase durable "$CONNS" --state "$tmp/kw.db" ;;
  esac
done
