#!/usr/bin/env bash
# Starts or stops the project's Redis (Debian's redis-server) on loopback, for the listen
# history shared by several botify workers (history.store: redis).
#   scripts/redis.sh start|stop|status      (port: $BOTIFY_REDIS_PORT, default 6390)
# Data, pidfile and log live in data/redis/. Nothing is persisted to disk: the history of
# sessions in flight is disposable.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${BOTIFY_REDIS_PORT:-6390}"
DIR="data/redis"
PIDFILE="$PWD/$DIR/redis-$PORT.pid"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "${1:-}" in
    start)
        if running; then echo "redis: already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; exit 0; fi
        command -v redis-server >/dev/null || { echo "redis: redis-server is missing; run ./scripts/setup.sh" >&2; exit 1; }
        mkdir -p "$DIR"
        redis-server --bind 127.0.0.1 --port "$PORT" --daemonize yes --pidfile "$PIDFILE" \
            --logfile "$PWD/$DIR/redis-$PORT.log" --dir "$PWD/$DIR" --save "" --appendonly no
        for _ in $(seq 50); do
            if redis-cli -p "$PORT" ping >/dev/null 2>&1; then echo "redis: running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; exit 0; fi
            sleep 0.1
        done
        echo "redis: did not start; see $DIR/redis-$PORT.log" >&2; exit 1 ;;
    stop)
        if ! running; then echo "redis: not running on port $PORT"; exit 0; fi
        pid="$(cat "$PIDFILE")"
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || { echo "redis: stopped"; exit 0; }; sleep 0.1; done
        echo "redis: pid $pid did not stop" >&2; exit 1 ;;
    status)
        if running; then echo "redis: running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; else echo "redis: not running on port $PORT"; exit 3; fi ;;
    *)
        echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
