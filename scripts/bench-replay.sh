#!/usr/bin/env bash
# Restart cost side by side: tidemark and Prometheus each receive the same WAL shape through
# remote write (SERIES series, a sample every INTERVAL seconds over HOURS hours ending near now,
# pushed in time order by examples/remote_write_gen.rs), are stopped with SIGTERM and started
# again on the same data directory. Printed per server:
#   wal MiB        disk the WAL directory and chunks_head/ (the head chunks both memory-map)
#                  take after the stop, allocated blocks (both size chunk segments up front)
#   ingest s       time the generator took to push everything
#   rss MiB        VmRSS after ingest, when the pushes are done
#   ready s        from exec of the restart to /-/ready answering 200
#   replay hwm MiB VmHWM (peak RSS) of the restarted process when it turned ready: the replay's peak
#   ready rss MiB  VmRSS when it turned ready
# One server at a time, so their memory never adds up. Prometheus needs ~4-8 GB at 1M series.
#
# Usage: scripts/bench-replay.sh
# Environment:
#   SERIES=100000 HOURS=2 INTERVAL=15   the shape (issue 13 asks for SERIES=1000000)
#   ONLY="tidemark prometheus"          which servers to run
#   WORKDIR=/tmp/...                    where the data directories go (deleted at the end; the
#                                       1M shape needs a few GB of disk)
#   TIDEMARK=PATH PROMETHEUS=PATH       binaries (defaults: target/release/tidemark, built if
#                                       missing; prometheus from PATH, the Debian package)
#   GEN=PATH                            the generator (default: built with cargo, release)
#   RESTARTS=1                          restarts measured per server (each replays the same WAL)
#   TIDEMARK_BEFORE=PATH                another tidemark binary (say, a build before a change)
#                                       that also replays tidemark's WAL, printed as
#                                       "tm-before", each restart right before the other's
# Not run by CI. Load from anything else on the machine skews every figure; the load average is
# printed with them.

set -euo pipefail

SERIES=${SERIES:-100000}
HOURS=${HOURS:-2}
INTERVAL=${INTERVAL:-15}
ONLY=${ONLY:-tidemark prometheus}
RESTARTS=${RESTARTS:-1}
PROMETHEUS=${PROMETHEUS:-prometheus}
root=$(cd "$(dirname "$0")/.." && pwd)
TIDEMARK=${TIDEMARK:-$root/target/release/tidemark}
GEN=${GEN:-$root/target/release/examples/remote_write_gen}

# shellcheck source=scripts/bench-common.sh
source "$root/scripts/bench-common.sh"

need curl python3
if [[ " $ONLY " == *" prometheus "* ]]; then need "$PROMETHEUS"; fi
ensure_tidemark --bin tidemark
if [[ ! -x $GEN ]]; then
    echo "building the generator (release)..." >&2
    (cd "$root" && cargo build --release --quiet --example remote_write_gen)
fi

if [[ -n ${WORKDIR:-} ]]; then mkdir -p "$WORKDIR"; fi
TMPDIR=${WORKDIR:-${TMPDIR:-/tmp}} make_work tidemark-replay-bench

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Starts server $1 on data dir $2 and port $3 in the background; sets pid.
start() {
    local s=$1 data=$2 port=$3 bin=$TIDEMARK
    [[ $s == tm-before ]] && { bin=$TIDEMARK_BEFORE; s=tidemark; }
    case $s in
    tidemark)
        "$bin" run --config "$WORK/tidemark.yml" --data-dir "$data" \
            --listen "127.0.0.1:$port" --log-level warn >>"$WORK/$s.log" 2>&1 &
        ;;
    prometheus)
        "$PROMETHEUS" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$data" \
            --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver \
            --log.level=warn >>"$WORK/$s.log" 2>&1 &
        ;;
    esac
    pid=$!
    pids=("$pid")
}

stop() {
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    pids=()
}

cat >"$WORK/tidemark.yml" <<EOF
web:
  enable_remote_write_receiver: true
EOF
echo "scrape_configs: []" >"$WORK/prometheus.yml"

# One end time for every server, on the interval grid, so all receive identical samples. Both
# write a head window to a block (and drop it from the WAL) once the head spans 3 h from the
# start of its first 2 h window (Prometheus: 3 h of samples, tidemark: 3 h from the window
# start): for HOURS <= 2 the end is moved back, when needed, to the latest time at which neither
# does, so what is replayed is the whole WAL in both.
iv=$((INTERVAL * 1000)) two_h=7200000
end_ms=$(($(now_ms) / iv * iv))
start_ms=$((end_ms - (HOURS * 3600000 / iv - 1) * iv))
if ((HOURS <= 2 && end_ms - start_ms / two_h * two_h >= 3 * two_h / 2)); then
    end_ms=$(((end_ms / two_h * two_h + two_h / 2 - 1) / iv * iv))
fi
samples=$((SERIES * HOURS * 3600 / INTERVAL))
echo "shape: $SERIES series x ${HOURS} h at ${INTERVAL} s = $samples samples, ending $(date -u -d "@$((end_ms / 1000))" +%FT%TZ)"
printf '%-10s %8s %9s %9s %8s %15s %14s %9s\n' server "wal MiB" "ingest s" "rss MiB" "ready s" "replay hwm MiB" "ready rss MiB" "load avg"
for s in $ONLY; do
    data=$WORK/data-$s
    port=$(free_port)
    start "$s" "$data" "$port"
    wait_ready "http://127.0.0.1:$port/-/ready" "$pid" "$s"
    t0=$(now_ms)
    path=/api/v1/write
    "$GEN" "127.0.0.1:$port" "$path" "$SERIES" "$HOURS" "$INTERVAL" "$end_ms" >"$WORK/gen-$s.out"
    t1=$(now_ms)
    sleep 2
    rss=$(kib "$pid" VmRSS)
    stop
    wal_bytes=$(du -s -B1 "$data/wal" | cut -f1)
    if [[ -d $data/chunks_head ]]; then
        wal_bytes=$((wal_bytes + $(du -s -B1 "$data/chunks_head" | cut -f1)))
    fi
    replayers=("$s")
    [[ $s == tidemark && -n ${TIDEMARK_BEFORE:-} ]] && replayers=(tm-before tidemark)
    for _ in $(seq "$RESTARTS"); do for r in "${replayers[@]}"; do
        port=$(free_port)
        r0=$(now_ms)
        start "$r" "$data" "$port"
        # Polled often: the replay's end is what is timed.
        until curl -fsS -o /dev/null "http://127.0.0.1:$port/-/ready" 2>/dev/null; do
            if ! kill -0 "$pid" 2>/dev/null; then
                log "$r exited during replay; its log:"; tail -20 "$WORK/$s.log" >&2; exit 1
            fi
            sleep 0.02
        done
        r1=$(now_ms)
        hwm=$(kib "$pid" VmHWM)
        rrss=$(kib "$pid" VmRSS)
        load=$(cut -d' ' -f1 /proc/loadavg)
        stop
        awk -v s="$r" -v w="$wal_bytes" -v i=$((t1 - t0)) -v rss="$rss" -v r=$((r1 - r0)) \
            -v hwm="$hwm" -v rrss="$rrss" -v load="$load" 'BEGIN {
                printf "%-10s %8.0f %9.1f %9.0f %8.2f %15.0f %14.0f %9s\n", s, w / 1048576, i / 1000, rss / 1024, r / 1000, hwm / 1024, rrss / 1024, load
            }'
    done; done
    rm -rf "$data"
done
