#!/usr/bin/env bash
# Starts or stops a one-machine Ray cluster on loopback with the project's warm shard workers, for
# `python -m sim.run ... multi --executor ray --address 127.0.0.1:$PORT`.
#   scripts/ray.sh start [sim.run options, e.g. --world data/world]   the cluster, then `ray-pool start`
#   scripts/ray.sh stop|status
# Port: $BOTIFY_RAY_PORT (default 6380); CPUs: $BOTIFY_RAY_CPUS (default all); Python: $PYTHON
# (default python). Ray's session files live in /tmp/botify-ray-$PORT (its sockets need a short
# path) until `stop`; the pidfile and the log in $BOTIFY_RAY_DIR (default data/ray/). Several
# machines: run `ray start` yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${BOTIFY_RAY_PORT:-6380}"
CPUS="${BOTIFY_RAY_CPUS:-$(nproc)}"
PYTHON="${PYTHON:-python}"
DIR="$(realpath -m "${BOTIFY_RAY_DIR:-data/ray}")"
PIDFILE="$DIR/ray-$PORT.pid"
LOG="$DIR/ray-$PORT.log"
ADDRESS="127.0.0.1:$PORT"
SESSIONS="/tmp/botify-ray-$PORT"  # Ray's session files (sockets, its logs): removed by stop
# Loopback only (Ray otherwise listens on every interface), workers at normal priority, token auth.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_worker_niceness=0 RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "${1:-}" in
    start)
        shift
        if running; then echo "ray: already running on $ADDRESS (pid $(cat "$PIDFILE"))"; else
            mkdir -p "$DIR"
            # --block keeps one process that owns the cluster: stopping it stops every Ray process it started.
            nohup "$PYTHON" -m ray.scripts.scripts start --head --block --port "$PORT" --num-cpus "$CPUS" \
                --include-dashboard false --disable-usage-stats --temp-dir "$SESSIONS" >"$LOG" 2>&1 &
            echo $! >"$PIDFILE"
            for _ in $(seq 600); do
                grep -q "Ray runtime started" "$LOG" && break
                running || { echo "ray: did not start; see $LOG" >&2; exit 1; }
                sleep 0.1
            done
            grep -q "Ray runtime started" "$LOG" || { echo "ray: not up after 60 s; see $LOG" >&2; exit 1; }
            echo "ray: running on $ADDRESS (pid $(cat "$PIDFILE"), $CPUS CPUs)"
        fi
        "$PYTHON" -m sim.run "$@" ray-pool start --address "$ADDRESS" ;;
    stop)
        if ! running; then echo "ray: not running on port $PORT"; exit 0; fi
        "$PYTHON" -m sim.run ray-pool stop --address "$ADDRESS" || true
        pid="$(cat "$PIDFILE")"
        kill "$pid"
        for _ in $(seq 300); do
            kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; rm -rf "$SESSIONS"; echo "ray: stopped"; exit 0; }
            sleep 0.1
        done
        echo "ray: pid $pid did not stop" >&2; exit 1 ;;
    status)
        if running; then echo "ray: running on $ADDRESS (pid $(cat "$PIDFILE"))"; "$PYTHON" -m sim.run ray-pool status --address "$ADDRESS"
        else echo "ray: not running on port $PORT"; exit 3; fi ;;
    *)
        echo "usage: $0 start [sim.run options]|stop|status" >&2; exit 2 ;;
esac
