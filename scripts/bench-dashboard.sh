#!/usr/bin/env bash
# Times a Grafana-like dashboard's range queries in tidemark, Prometheus and VictoriaMetrics,
# each answering the same data through its HTTP API, and checks that the answers agree.
#
# The data is benches/support/dashboard_data.rs: 15 instances of a demo web service (CPU
# counters by mode, memory gauges, filesystem and disk figures, request counters by path and
# code, request-duration histograms by path with 12 buckets), 2,505 series scraped every 15 s
# for 6 h (3.6M samples), in the last full 6 h window before now (one block on each side).
# It is written once as OpenMetrics (loaded by `tidemark import` and `promtool tsdb
# create-blocks-from openmetrics`) and once as Prometheus text with millisecond timestamps
# (POSTed to VictoriaMetrics' /api/v1/import/prometheus, then /internal/force_flush).
# VictoriaMetrics runs with -search.disableCache, so its result cache does not answer repeats.
#
# Each panel runs over the 6 h at a 60 s step (361 steps). Runs alternate between the servers;
# each figure is the median of RUNS runs after one warm-up run. The table gives milliseconds,
# ratios to Prometheus, the CPU time each server used per run (read from /proc/PID/stat around
# each request: on a loaded machine a server that spreads a query over threads gets a larger
# share of the CPUs, so the latency ratio and the CPU ratio tell different things), and whether tidemark's and VictoriaMetrics' answers agree with
# Prometheus's point by point (relative difference at most 1e-9). VictoriaMetrics' MetricsQL
# differs from PromQL by design (rate() without extrapolation, other lookback rules), so its
# answers are expected to differ; tidemark's are not.
#
# Usage: scripts/bench-dashboard.sh
# Environment:
#   RUNS=5            timed runs per query and server
#   WORK=DIR          working directory (default: a new one under ${TMPDIR:-/tmp}); with
#                     KEEP=1 it is kept, and a later run with the same WORK reuses its stores
#                     while they hold the same 6 h window
#   KEEP=1            keep WORK
#   ONLY=REGEX        time only the panels whose name matches
#   TIDEMARK=PATH     tidemark binary (default: target/release/tidemark, built if missing)
#   PROMETHEUS=PATH   prometheus binary (default: prometheus); PROMTOOL and VICTORIA likewise
#                     (default: promtool, victoria-metrics); VICTORIA= (empty) leaves it out
# Needs curl, python3 and rustc; about 1.5 GB of disk while loading. Not run by CI.

set -euo pipefail

RUNS=${RUNS:-5}
PROMETHEUS=${PROMETHEUS:-prometheus}
PROMTOOL=${PROMTOOL:-promtool}
VICTORIA=${VICTORIA-victoria-metrics}
ONLY=${ONLY:-.}
root=$(cd "$(dirname "$0")/.." && pwd)
TIDEMARK=${TIDEMARK:-$root/target/release/tidemark}

# shellcheck source=scripts/bench-common.sh
source "$root/scripts/bench-common.sh"

need curl python3 rustc "$PROMETHEUS" "$PROMTOOL" ${VICTORIA:+"$VICTORIA"}
ensure_tidemark
make_work tidemark-dashboard-bench

# --- data --------------------------------------------------------------------------------
gen=$WORK/gen-query-data
rustc --edition 2024 -O -o "$gen" "$root/scripts/gen-query-data.rs"

span_ms=$(( 6 * 3600000 ))
start_ms=$(( $(date +%s) * 1000 / span_ms * span_ms - span_ms ))
end_ms=$(( start_ms + span_ms ))
stores=("$WORK/tidemark" "$WORK/prometheus")
if [[ -n $VICTORIA ]]; then stores+=("$WORK/victoria"); fi
if [[ -f $WORK/start_ms && $(cat "$WORK/start_ms") != "$start_ms" ]]; then
    log "stores in $WORK hold another window; regenerating"
    rm -rf "$WORK/tidemark" "$WORK/prometheus" "$WORK/victoria"
fi
echo "$start_ms" > "$WORK/start_ms"
window="$(date -u -d @$((start_ms / 1000)) +%FT%TZ) to $(date -u -d @$((end_ms / 1000)) +%FT%TZ)"

if [[ ! -d $WORK/tidemark || ! -d $WORK/prometheus ]]; then
    rm -rf "$WORK/tidemark" "$WORK/prometheus"
    log "generating $window..."
    "$gen" dashboard-data "$start_ms" "$WORK/dash.om" openmetrics

    # promtool cuts blocks at multiples of the largest of its ranges (2h, 6h, …) that fits
    # --max-block-duration: with 6h the window is one block, as tidemark's is.
    import_both "$WORK/dash.om" 6h 6h
fi

# --- servers -----------------------------------------------------------------------------
# None scrapes anything: the stores hold only the window.
printf 'scrape_configs: []\n' > "$WORK/tidemark.yml"
printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$WORK/prometheus.yml"

names=(tidemark prometheus)
tm_port=$(free_port)
"$TIDEMARK" run --config "$WORK/tidemark.yml" --data-dir "$WORK/tidemark" \
    --listen "127.0.0.1:$tm_port" --retention-time 0 >"$WORK/tidemark.log" 2>&1 &
pids+=($!)
tm_pid=$!
prom_port=$(free_port)
"$PROMETHEUS" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus" \
    --storage.tsdb.retention.time=30d --web.listen-address="127.0.0.1:$prom_port" \
    >"$WORK/prometheus.log" 2>&1 &
pids+=($!)
prom_pid=$!
urls=("http://127.0.0.1:$tm_port" "http://127.0.0.1:$prom_port")
wait_ready "${urls[0]}/-/ready" "$tm_pid" tidemark
wait_ready "${urls[1]}/-/ready" "$prom_pid" prometheus

if [[ -n $VICTORIA ]]; then
    names+=(victoria)
    vm_port=$(free_port)
    "$VICTORIA" -storageDataPath="$WORK/victoria" -httpListenAddr="127.0.0.1:$vm_port" \
        -retentionPeriod=1y -search.disableCache >"$WORK/victoria.log" 2>&1 &
    pids+=($!)
    vm_pid=$!
    vm=http://127.0.0.1:$vm_port
    urls+=("$vm")
    wait_ready "$vm/health" "$vm_pid" victoria
    # Debian's build reports no version of its own; its package does.
    vm_version=$(dpkg-query -W -f '${Version}' victoria-metrics 2>/dev/null || echo unknown)
    count_at_end() {
        curl -sS "$vm/api/v1/query" --data-urlencode 'query=count({__name__=~".+"})' \
            -d "time=$((end_ms / 1000))" | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else 0)'
    }
    if [[ $(count_at_end) != 2505 ]]; then
        log "generating $window for VictoriaMetrics..."
        "$gen" dashboard-data "$start_ms" "$WORK/dash.prom" prometheus
        log "VictoriaMetrics /api/v1/import/prometheus..."
        t0=$(date +%s%N)
        curl -sS --fail -X POST -T "$WORK/dash.prom" "$vm/api/v1/import/prometheus"
        curl -sS --fail "$vm/internal/force_flush"
        rm -f "$WORK/dash.prom"
        for _ in $(seq 1 600); do
            [[ $(count_at_end) == 2505 ]] && break
            sleep 0.1
        done
        log "  took $(since "$t0") s; $(count_at_end) series visible"
    fi
fi

# --- queries -----------------------------------------------------------------------------
timed() { range_query "$1" "$2" "$3" "$((start_ms / 1000))" "$((end_ms / 1000))" 60; }

load_before=$(uptime)
results=()
while IFS=$'\t' read -r name query; do
    [[ $name =~ $ONLY ]] || continue
    log "timing $name: $query"
    for i in "${!names[@]}"; do
        timed "${urls[$i]}" "$query" "$WORK/$name.${names[$i]}.json" >/dev/null
    done
    declare -A times=() cpu=()
    for i in "${!names[@]}"; do cpu[$i]=0; done
    for _ in $(seq 1 "$RUNS"); do
        for i in "${!names[@]}"; do
            c0=$(cpu_ms "${pids[$i]}")
            times[$i]+="$(timed "${urls[$i]}" "$query" "$WORK/$name.${names[$i]}.json") "
            cpu[$i]=$(awk -v a="${cpu[$i]}" -v b="$c0" -v c="$(cpu_ms "${pids[$i]}")" 'BEGIN { print a + c - b }')
        done
    done
    row="$name"
    for i in "${!names[@]}"; do
        row+=$'\t'"$(printf '%s\n' ${times[$i]} | median_ms)"
        row+=$'\t'"$(awk -v c="${cpu[$i]}" -v n="$RUNS" 'BEGIN { printf "%.1f", c / n }')"
    done
    row+=$'\t'"$(compare_answers "$WORK/$name.tidemark.json" "$WORK/$name.prometheus.json")"
    if [[ -n $VICTORIA ]]; then
        row+=$'\t'"$(compare_answers "$WORK/$name.victoria.json" "$WORK/$name.prometheus.json")"
    fi
    results+=("$row")
    unset times cpu
done < <("$gen" dashboard-queries)
load_after=$(uptime)

# --- report ------------------------------------------------------------------------------
echo
echo "Dashboard range queries over 6 h at 60 s step (361 steps): 2,505 series, 3.6M samples,"
echo "$window; median of $RUNS runs through each HTTP API; $(nproc) CPUs"
echo "$($PROMETHEUS --version 2>&1 | head -1)${VICTORIA:+; VictoriaMetrics $vm_version}"
echo "load before: $load_before"
echo "load after:  $load_after"
echo
# One row: NAME, then per server its median ms and mean CPU ms, then the comparisons.
printf '%-16s %9s %9s' query tidemark prometheus
[[ -n $VICTORIA ]] && printf ' %9s' victoria
printf ' %8s' tm/prom
[[ -n $VICTORIA ]] && printf ' %8s' vm/prom
printf ' | %7s %7s' "tm cpu" "prom cpu"
[[ -n $VICTORIA ]] && printf ' %7s' "vm cpu"
printf ' %8s\n' tm/prom
ratios=()
vm_ratios=()
cpu_ratios=()
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
for r in "${results[@]}"; do
    IFS=$'\t' read -r name tm_ms tm_cpu prom_ms prom_cpu rest <<<"$r"
    ratio=$(ratio "$tm_ms" "$prom_ms")
    cpu_ratio=$(ratio "$tm_cpu" "$prom_cpu")
    printf '%-16s %9s %9s' "$name" "$tm_ms" "$prom_ms"
    if [[ -n $VICTORIA ]]; then
        IFS=$'\t' read -r vm_ms vm_cpu _ <<<"$rest"
        vm_ratio=$(ratio "$vm_ms" "$prom_ms")
        printf ' %9s %8s %8s | %7s %7s %7s %8s\n' "$vm_ms" "$ratio" "$vm_ratio" \
            "$tm_cpu" "$prom_cpu" "$vm_cpu" "$cpu_ratio"
    else
        printf ' %8s | %7s %7s %8s\n' "$ratio" "$tm_cpu" "$prom_cpu" "$cpu_ratio"
    fi
    # The panels' median leaves out hq_p99, the issue's separate histogram_quantile figure.
    if [[ $name != hq_p99 ]]; then
        ratios+=("$ratio")
        cpu_ratios+=("$cpu_ratio")
        [[ -n $VICTORIA ]] && vm_ratios+=("$vm_ratio")
    fi
done
echo "(ms: median latency; cpu: CPU ms the server process used per run, from /proc/PID/stat)"
echo
if (( ${#ratios[@]} )); then
    echo "panels (all but hq_p99), median latency ratio to Prometheus: tidemark $(printf '%s\n' "${ratios[@]}" | median)${VICTORIA:+, victoria $(printf '%s\n' "${vm_ratios[@]}" | median)}; tidemark's worst $(printf '%s\n' "${ratios[@]}" | sort -g | tail -1)"
    echo "panels (all but hq_p99), median CPU ratio to Prometheus: tidemark $(printf '%s\n' "${cpu_ratios[@]}" | median); tidemark's worst $(printf '%s\n' "${cpu_ratios[@]}" | sort -g | tail -1)"
fi
echo
echo "answers compared with Prometheus's:"
for r in "${results[@]}"; do
    IFS=$'\t' read -r name _ _ _ _ rest <<<"$r"
    if [[ -n $VICTORIA ]]; then
        IFS=$'\t' read -r _ _ tm_agree vm_agree <<<"$rest"
        printf '  %-16s tidemark: %s\n  %-16s victoria: %s\n' "$name" "$tm_agree" "" "$vm_agree"
    else
        printf '  %-16s tidemark: %s\n' "$name" "$rest"
    fi
done
