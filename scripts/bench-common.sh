# Helpers shared by the scripts/bench-*.sh comparisons; sourced, not run. They expect WORK (the
# working directory, where each server's log is WORK/NAME.log).

log() { printf '%s\n' "$*" >&2; }

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
