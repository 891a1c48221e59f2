# Helpers shared by the scripts/bench-*.sh comparisons; sourced, not run. They expect WORK (the
# working directory, where each server's log is WORK/NAME.log).

log() { printf '%s\n' "$*" >&2; }

# Exits unless every named command is installed.
need() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || { log "missing: $t"; exit 1; }
    done
}

# Builds the release binary (cargo build ARGS...) unless TIDEMARK is already executable; the
# script sets `root` (the project) and TIDEMARK.
ensure_tidemark() {
    [[ -x $TIDEMARK ]] && return
    log "building tidemark (release)..."
    (cd "$root" && cargo build --release --quiet "$@")
}

# Sets up WORK: as given (created if missing), or a new NAME.XXXXXX under TMPDIR. At exit each
# process listed in `pids` is killed and WORK removed, unless KEEP=1.
make_work() {
    if [[ -n ${WORK:-} ]]; then
        mkdir -p "$WORK"
    else
        WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    fi
    pids=()
    trap remove_work EXIT
}
remove_work() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
    done
    if [[ ${KEEP:-0} != 1 ]]; then rm -rf "$WORK"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until URL answers 200, or the process PID dies, or 120 s pass.
wait_ready() {
    local url=$1 pid=$2 name=$3
    for _ in $(seq 1 1200); do
        if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited before it was ready; its log:"; tail -20 "$WORK/$name.log" >&2; exit 1
        fi
        sleep 0.1
    done
    log "$name not ready after 120 s"; exit 1
}

# Loads the OpenMetrics file $1 into tidemark (`import`, blocks of $2) and into Prometheus
# (`promtool tsdb create-blocks-from openmetrics --max-block-duration=$3`) under $WORK/tidemark
# and $WORK/prometheus, each timed, then deletes the file.
import_both() {
    local file=$1 t0
    log "tidemark import..."
    t0=$(date +%s%N)
    "$TIDEMARK" import --data-dir "$WORK/tidemark" --block-duration "$2" "$file" >&2
    log "  took $(since "$t0") s"
    log "promtool tsdb create-blocks-from openmetrics..."
    t0=$(date +%s%N)
    "$PROMTOOL" tsdb create-blocks-from openmetrics --max-block-duration="$3" \
        "$file" "$WORK/prometheus" >&2
    log "  took $(since "$t0") s"
    rm -f "$file"
}

# Seconds since a `date +%s%N` reading.
since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

# A field of /proc/PID/status in KiB (VmRSS, VmHWM).
kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

# CPU time process PID has used so far (exited threads included), in milliseconds.
cpu_ms() {
    sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$(getconf CLK_TCK)" '{ print ($12 + $13) * 1000 / hz }'
}

# Runs one range query at BASE (start, end and step in seconds) and prints the seconds it took;
# the answer goes to OUT and must be a success.
range_query() {
    local base=$1 query=$2 out=$3 start=$4 end=$5 step=$6 secs
    secs=$(curl -sS -o "$out" -w '%{time_total}' "$base/api/v1/query_range" \
        --data-urlencode "query=$query" -d "start=$start" -d "end=$end" -d "step=$step")
    if ! grep -q '"status":"success"' "$out"; then
        log "query failed at $base: $query"; head -c 600 "$out" >&2; echo >&2; exit 1
    fi
    echo "$secs"
}

# The median of the numbers on stdin, one a line, times SCALE (default 1), printed with FORMAT
# (default %.3f); nothing for no input.
median() {
    sort -g | awk -v s="${1:-1}" -v f="${2:-%.3f}" \
        '{ a[NR] = $1 } END { if (NR) printf f, s * ((NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}

# The median of the seconds on stdin, one a line, in milliseconds.
median_ms() { median 1000 %.1f; }

# Compares two query_range answers point by point (relative difference above 1e-9 counts) and
# prints one line: "agree (...)" or what differs.
compare_answers() {
    python3 - "$1" "$2" <<'PY'
import json, math, sys
a, b = (json.load(open(p))["data"]["result"] for p in sys.argv[1:3])
def index(r):
    return {tuple(sorted(s["metric"].items())): {t: float(v) for t, v in s["values"]} for s in r}
a, b = index(a), index(b)
if a.keys() != b.keys():
    print(f"differ: {len(a)} vs {len(b)} series, {len(a.keys() & b.keys())} in both")
    sys.exit()
worst, points, missing, off = 0.0, 0, 0, 0
for k in a:
    x, y = a[k], b[k]
    missing += len(x.keys() ^ y.keys())
    for t in x.keys() & y.keys():
        points += 1
        u, v = x[t], y[t]
        if u == v or (math.isnan(u) and math.isnan(v)):
            continue
        d = abs(u - v) / max(abs(u), abs(v))
        d = math.inf if math.isnan(d) else d
        worst = max(worst, d)
        off += d > 1e-9
if missing == 0 and off == 0:
    print(f"agree ({len(a)} series, {points} points, max rel diff {worst:.1e})")
else:
    print(f"{off} of {points} points differ by >1e-9 (max {worst:.1e}), {missing} on one side only")
PY
}
