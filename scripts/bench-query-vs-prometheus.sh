#!/usr/bin/env bash
# Times the same PromQL range queries over the same day of data in tidemark and in Prometheus,
# both answering through their HTTP API, and compares their peak memory while they answer.
#
# The day is benches/support/query_data.rs (10,000 series at 15 s for 24 h, 57.6M samples:
# 9,000 counters `x`, 1,000 histogram buckets `h_bucket`), written as OpenMetrics text, loaded
# by `tidemark import` and `promtool tsdb create-blocks-from openmetrics`, both into one 24h
# block (a recent full UTC day, placed so that it fills one block on both sides).
# Each query covers the day at a 60 s step; runs alternate between the two servers, and each
# result is the median of RUNS runs after one warm-up run. Peak RSS is VmHWM, reset through
# /proc/PID/clear_refs just before the queries (and again before each query, for its own peak
# above the RSS it started from), so it shows what answering them costs.
# The answers are compared point by point. Expect a few `sum_rate` points in the first five
# minutes to differ by ~1e-6: Debian's Prometheus 2.42 applies rate()'s "do not extrapolate
# below zero" limit before the extrapolation threshold, Prometheus 3 (and tidemark) after it,
# which matters for a counter whose first sample is small.
#
# Usage: scripts/bench-query-vs-prometheus.sh
# Environment:
#   RUNS=5            timed runs per query and server
#   WORK=DIR          working directory (default: a new one under ${TMPDIR:-/tmp}); with
#                     KEEP=1 it is kept, and a later run with the same WORK reuses its stores
#   KEEP=1            keep WORK
#   TIDEMARK=PATH     tidemark binary (default: target/release/tidemark, built if missing)
#   PROMETHEUS=PATH   prometheus binary (default: prometheus); PROMTOOL likewise
# Needs curl and python3. Not run by CI: it needs ~4 GB of disk for the text and minutes.

set -euo pipefail

RUNS=${RUNS:-5}
PROMETHEUS=${PROMETHEUS:-prometheus}
PROMTOOL=${PROMTOOL:-promtool}
root=$(cd "$(dirname "$0")/.." && pwd)
TIDEMARK=${TIDEMARK:-$root/target/release/tidemark}

# shellcheck source=scripts/bench-common.sh
source "$root/scripts/bench-common.sh"

need curl python3 rustc "$PROMETHEUS" "$PROMTOOL"
ensure_tidemark
make_work tidemark-query-bench

# --- data --------------------------------------------------------------------------------
gen=$WORK/gen-query-data
rustc --edition 2024 -O -o "$gen" "$root/scripts/gen-query-data.rs"

day_ms=86400000
# promtool cuts blocks at multiples of the largest of its ranges (2h, 6h, 18h, 54h…) that fits
# --max-block-duration: with 54h, the newest full UTC day that lies inside one 54h window
# becomes one block, as `tidemark import --block-duration 24h` makes it one block.
window_ms=$(( 54 * 3600000 ))
now_ms=$(( $(date +%s) * 1000 ))
start_ms=$(( now_ms / day_ms * day_ms - day_ms ))
while (( start_ms % window_ms + day_ms > window_ms )); do start_ms=$(( start_ms - day_ms )); done
end_ms=$(( start_ms + day_ms ))
if [[ -f $WORK/start_ms && $(cat "$WORK/start_ms") != "$start_ms" ]]; then
    log "stores in $WORK hold another day; regenerating"
    rm -rf "$WORK/tidemark" "$WORK/prometheus" "$WORK/day.om"
fi
echo "$start_ms" > "$WORK/start_ms"

if [[ ! -d $WORK/tidemark || ! -d $WORK/prometheus ]]; then
    rm -rf "$WORK/tidemark" "$WORK/prometheus"
    log "generating the day from $(date -u -d @$((start_ms / 1000)) +%FT%TZ)..."
    t0=$(date +%s%N)
    "$gen" data "$start_ms" "$WORK/day.om"
    log "  $(du -h "$WORK/day.om" | cut -f1) in $(since "$t0") s"

    import_both "$WORK/day.om" 24h 54h
fi
tm_bytes=$(du -sb "$WORK/tidemark" | cut -f1)
prom_bytes=$(du -sb "$WORK/prometheus" | cut -f1)

# --- servers -----------------------------------------------------------------------------
# Neither scrapes anything: the stores hold only the day.
printf 'scrape_configs: []\n' > "$WORK/tidemark.yml"
printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$WORK/prometheus.yml"

tm_port=$(free_port)
"$TIDEMARK" run --config "$WORK/tidemark.yml" --data-dir "$WORK/tidemark" \
    --listen "127.0.0.1:$tm_port" --retention-time 0 >"$WORK/tidemark.log" 2>&1 &
tm_pid=$!
pids+=("$tm_pid")
prom_port=$(free_port)
"$PROMETHEUS" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus" \
    --storage.tsdb.retention.time=30d --web.listen-address="127.0.0.1:$prom_port" \
    >"$WORK/prometheus.log" 2>&1 &
prom_pid=$!
pids+=("$prom_pid")
tm=http://127.0.0.1:$tm_port
prom=http://127.0.0.1:$prom_port
wait_ready "$tm/-/ready" "$tm_pid" tidemark
wait_ready "$prom/-/ready" "$prom_pid" prometheus

tm_rss0=$(kib "$tm_pid" VmRSS)
prom_rss0=$(kib "$prom_pid" VmRSS)
hwm_note="reset before the queries"
for p in "$tm_pid" "$prom_pid"; do
    { echo 5 > "/proc/$p/clear_refs"; } 2>/dev/null || hwm_note="since start: clear_refs refused"
done

# --- queries -----------------------------------------------------------------------------
timed() { range_query "$1" "$2" "$3" "$((start_ms / 1000))" "$((end_ms / 1000))" 60; }

results=()
while IFS=$'\t' read -r name query; do
    log "timing $name: $query"
    # Each query's own peak: VmHWM reset before its first run, read after its last.
    for p in "$tm_pid" "$prom_pid"; do
        { echo 5 > "/proc/$p/clear_refs"; } 2>/dev/null || true
    done
    tm_base=$(kib "$tm_pid" VmRSS)
    prom_base=$(kib "$prom_pid" VmRSS)
    timed "$tm" "$query" "$WORK/$name.tidemark.json" >/dev/null
    timed "$prom" "$query" "$WORK/$name.prometheus.json" >/dev/null
    tm_times=() prom_times=()
    for _ in $(seq 1 "$RUNS"); do
        tm_times+=("$(timed "$tm" "$query" "$WORK/$name.tidemark.json")")
        prom_times+=("$(timed "$prom" "$query" "$WORK/$name.prometheus.json")")
    done
    tm_peak=$(( $(kib "$tm_pid" VmHWM) - tm_base )); (( tm_peak > 0 )) || tm_peak=0
    prom_peak=$(( $(kib "$prom_pid" VmHWM) - prom_base )); (( prom_peak > 0 )) || prom_peak=0
    tm_ms=$(printf '%s\n' "${tm_times[@]}" | median_ms)
    prom_ms=$(printf '%s\n' "${prom_times[@]}" | median_ms)
    agree=$(compare_answers "$WORK/$name.tidemark.json" "$WORK/$name.prometheus.json")
    results+=("$name"$'\t'"$tm_ms"$'\t'"$prom_ms"$'\t'"$tm_peak"$'\t'"$prom_peak"$'\t'"$agree")
done < <("$gen" queries)

tm_hwm=$(kib "$tm_pid" VmHWM)
prom_hwm=$(kib "$prom_pid" VmHWM)

# --- report ------------------------------------------------------------------------------
mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
echo
echo "Range queries over 24h at 60s step (1,441 steps), 10,000 series, 57.6M samples;"
echo "median of $RUNS runs through each HTTP API; $(nproc) CPUs; $($PROMETHEUS --version 2>&1 | head -1)"
echo
printf '%-20s %14s %16s %8s %14s %16s  %s\n' query "tidemark ms" "prometheus ms" ratio \
    "tidemark peak" "prometheus peak" results
for r in "${results[@]}"; do
    IFS=$'\t' read -r name tm_ms prom_ms tm_peak prom_peak agree <<<"$r"
    ratio=$(awk -v a="$tm_ms" -v b="$prom_ms" 'BEGIN { printf "%.2f", a / b }')
    printf '%-20s %14s %16s %8s %14s %16s  %s\n' "$name" "$tm_ms" "$prom_ms" "$ratio" \
        "$(mib "$tm_peak")" "$(mib "$prom_peak")" "$agree"
done
echo "(peak: VmHWM while the query's runs were answered, above RSS just before them)"
echo
printf '%-46s %14s %16s\n' "" tidemark prometheus
printf '%-46s %14s %16s\n' "RSS before the queries" "$(mib "$tm_rss0")" "$(mib "$prom_rss0")"
printf '%-46s %14s %16s\n' "peak RSS (VmHWM, $hwm_note)" "$(mib "$tm_hwm")" "$(mib "$prom_hwm")"
printf '%-46s %14s %16s\n' "store on disk" "$(mib $((tm_bytes / 1024)))" "$(mib $((prom_bytes / 1024)))"
