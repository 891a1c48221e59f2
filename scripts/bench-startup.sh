#!/usr/bin/env bash
# Time from exec to /-/ready answering 200, on an empty data directory (the issue's < 1 s
# target), and the time a SIGTERM takes to exit. Prints each run and the median.
# Usage: scripts/bench-startup.sh [RUNS]   (builds the release binary first)
set -euo pipefail
runs=${1:-10}
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/tidemark
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ms() { echo $(( $(date +%s%N) / 1000000 )); }
starts=(); stops=()
for i in $(seq "$runs"); do
  rm -rf "$tmp/data"
  t0=$(ms)
  "$bin" run --data-dir "$tmp/data" --listen "127.0.0.1:$port" --log-level warn &
  pid=$!
  until curl -fs -o /dev/null "http://127.0.0.1:$port/-/ready"; do sleep 0.005; done
  t1=$(ms)
  kill -TERM "$pid"; wait "$pid"
  t2=$(ms)
  starts+=($((t1 - t0))); stops+=($((t2 - t1)))
  echo "run $i: ready in $((t1 - t0)) ms, SIGTERM to exit $((t2 - t1)) ms"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median of $runs: ready in $(median "${starts[@]}") ms on an empty data dir, exit in $(median "${stops[@]}") ms"
