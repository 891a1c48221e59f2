#!/usr/bin/env bash
# The scrape footprint side by side: tidemark, Prometheus (server mode, with its local TSDB) and
# vmagent (forwarding only) scrape the same targets, one scraper at a time in one run, and each is
# measured from /proc over a fixed window after a warm-up:
#   CPU-s per million scraped samples = (utime + stime over the window) / samples in the window
#   RSS per active series             = VmRSS at the end of the window / (targets x series)
# The targets are scripts/scrape-targets.py: node_exporter-shaped bodies (507 series) whose values
# move on every request, each target on its own 127.0.0.1 port, all in one Python process; a port
# of the same process drops vmagent's remote writes. The samples in the window are counted, not
# assumed: the sum of scrape_samples_scraped over the window, read through each scraper's own
# metrics (tidemark and Prometheus: their query API; vmagent: its /metrics).
#
# Usage: scripts/bench-scrape-vs-peers.sh [SHAPE...]    SHAPE is TARGETSxINTERVAL, e.g. 50x1s
#        (default: 50x1s 200x5s, the two shapes of issue 13), or TARGETSxSERIESxINTERVAL for
#        bodies of SERIES series instead of the fixture's 507 (1000x1000x15s: 1M active series)
# Environment:
#   WARMUP=30 WINDOW=60   seconds of warm-up, then of measurement, per scraper and shape
#   ONLY="tidemark prometheus vmagent"   which scrapers to run
#   TIDEMARK=PATH PROMETHEUS=PATH VMAGENT=PATH   binaries (defaults: target/release/tidemark,
#                         built if missing; prometheus and vmagent from PATH, Debian packages)
# Not run by CI: it takes (WARMUP + WINDOW) x scrapers x shapes, ~9 minutes by default. Load from
# anything else on the machine skews every figure; the load average is printed with them.

set -euo pipefail

WARMUP=${WARMUP:-30}
WINDOW=${WINDOW:-60}
ONLY=${ONLY:-tidemark prometheus vmagent}
PROMETHEUS=${PROMETHEUS:-prometheus}
VMAGENT=${VMAGENT:-vmagent}
root=$(cd "$(dirname "$0")/.." && pwd)
TIDEMARK=${TIDEMARK:-$root/target/release/tidemark}
fixture=$root/../shared/fixtures/exposition/node_exporter-1.5.0.prom
shapes=("$@")
[[ ${#shapes[@]} -gt 0 ]] || shapes=(50x1s 200x5s)

[[ -r $fixture ]] || { echo "missing $fixture (../shared beside the project)" >&2; exit 1; }
# shellcheck source=scripts/bench-common.sh
source "$root/scripts/bench-common.sh"

need curl python3
for s in $ONLY; do
    case $s in
    prometheus) need "$PROMETHEUS" ;;
    vmagent) need "$VMAGENT" ;;
    esac
done
ensure_tidemark
WORK=
make_work tidemark-scrape-bench

# utime + stime of PID in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

# The sum over targets of scrape_samples_scraped summed over the scrapes in the last WINDOW
# seconds, through a PromQL API (tidemark, Prometheus).
api_samples() {
    local api=$1
    curl -fsS "$api/api/v1/query" --data-urlencode \
        "query=sum(sum_over_time(scrape_samples_scraped{job=\"bench\"}[${WINDOW}s]))" |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'
}
# vmagent counts the samples it scraped in vm_promscrape_scraped_samples_sum (a summary).
vm_samples_total() {
    curl -fsS "$1/metrics" | awk '$1 == "vm_promscrape_scraped_samples_sum" { print $2 }'
}

printf '%-10s %-9s %-8s %14s %12s %12s %10s\n' scraper shape series "cpu-s/Msample" "rss B/series" samples "load avg"
for shape in "${shapes[@]}"; do
    n=${shape%%x*}
    interval=${shape##*x}
    series=$(grep -c '^[^#]' "$fixture")
    [[ $shape == *x*x* ]] && series=${shape#*x} && series=${series%x*}
    portfile=$WORK/ports.$shape
    python3 "$root/scripts/scrape-targets.py" "$fixture" "$n" "$portfile" "$series" &
    targets_pid=$!
    pids+=("$targets_pid")
    for _ in $(seq 1 300); do [[ -s $portfile ]] && break; sleep 0.1; done
    read -r sink_port ports <"$portfile" || true
    read -r -a target_ports <<<"$ports"
    active=$((n * series))
    list=$(printf '"127.0.0.1:%s",' "${target_ports[@]}")
    timeout=$interval
    cat >"$WORK/scrape-$shape.yml" <<EOF
global:
  scrape_interval: $interval
  scrape_timeout: $timeout
scrape_configs:
  - job_name: bench
    static_configs:
      - targets: [${list%,}]
EOF
    for s in $ONLY; do
        port=$(free_port)
        data=$WORK/data-$s-$shape
        case $s in
        tidemark)
            "$TIDEMARK" run --config "$WORK/scrape-$shape.yml" --data-dir "$data" \
                --listen "127.0.0.1:$port" --log-level warn >"$WORK/$s.log" 2>&1 &
            ;;
        prometheus)
            "$PROMETHEUS" --config.file="$WORK/scrape-$shape.yml" --storage.tsdb.path="$data" \
                --web.listen-address="127.0.0.1:$port" --log.level=warn >"$WORK/$s.log" 2>&1 &
            ;;
        vmagent)
            "$VMAGENT" -promscrape.config="$WORK/scrape-$shape.yml" -remoteWrite.tmpDataPath="$data" \
                -remoteWrite.url="http://127.0.0.1:$sink_port/api/v1/write" \
                -httpListenAddr="127.0.0.1:$port" -loggerLevel=WARN >"$WORK/$s.log" 2>&1 &
            ;;
        esac
        pid=$!
        pids+=("$pid")
        ready=/-/ready
        [[ $s == vmagent ]] && ready=/health
        wait_ready "http://127.0.0.1:$port$ready" "$pid" "$s"
        sleep "$WARMUP"
        t0=$(ticks "$pid")
        [[ $s == vmagent ]] && v0=$(vm_samples_total "http://127.0.0.1:$port")
        sleep "$WINDOW"
        t1=$(ticks "$pid")
        rss=$(rss_kib "$pid")
        if [[ $s == vmagent ]]; then
            v1=$(vm_samples_total "http://127.0.0.1:$port")
            samples=$(awk -v a="$v0" -v b="$v1" 'BEGIN { printf "%d", b - a }')
        else
            samples=$(api_samples "http://127.0.0.1:$port")
        fi
        load=$(cut -d' ' -f1 /proc/loadavg)
        awk -v s="$s" -v shape="$shape" -v active="$active" -v dt=$((t1 - t0)) -v hz="$hz" \
            -v samples="$samples" -v rss="$rss" -v load="$load" 'BEGIN {
                cpu = dt / hz
                per = samples > 0 ? cpu / (samples / 1e6) : 0
                printf "%-10s %-9s %-8d %14.2f %12d %12d %10s\n", s, shape, active, per, rss * 1024 / active, samples, load
            }'
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
    kill "$targets_pid"
    wait "$targets_pid" 2>/dev/null || true
done
