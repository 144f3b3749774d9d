#!/bin/sh
# REST GET hit throughput of meshcached at 50 connections (wrk) beside redis-server GET at 50
# connections (redis-benchmark), same machine, same run, 100-byte value, 3 interleaved
# rounds; prints both and the ratio. `make bench-rest` (installs wrk and redis if missing).
set -eu
cd "$(dirname "$0")/.."
SECS=${SECS:-8}
ROUNDS=${ROUNDS:-3}
cargo build --release -q -p meshcached
tmp=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

cat > "$tmp/meshcached.toml" <<CONF
listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
[[groups]]
name = "bench"
CONF
target/release/meshcached --config "$tmp/meshcached.toml" > "$tmp/out" 2> "$tmp/err" &
pids="$pids $!"
# Its ready line (the ports were 0): waited for with a bound.
i=0
until grep -q '^meshcached ready' "$tmp/out"; do
  i=$((i + 1)); [ "$i" -lt 300 ] || { cat "$tmp/err" >&2; exit 1; }
  sleep 0.1
done
http=$(sed -n 's/^meshcached ready .*http=\([^ ]*\).*/\1/p' "$tmp/out")
value=$(head -c 100 /dev/zero | tr '\0' 'v')
printf '%s' "$value" | curl -sf -X PUT --data-binary @- "http://$http/v1/groups/bench/keys/k"
test "$(curl -sf "http://$http/v1/groups/bench/keys/k")" = "$value"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no > "$tmp/redis.log" &
pids="$pids $!"
i=0
until redis-cli -p "$port" ping > /dev/null 2>&1; do
  i=$((i + 1)); [ "$i" -lt 300 ] || exit 1
  sleep 0.1
done
redis-cli -p "$port" set key:__rand_int__ "$value" > /dev/null

echo "REST GET hit (meshcached, wrk -t2 -c50) vs redis-server GET (redis-benchmark -c 50), 100 B, ${SECS}s each, $ROUNDS rounds"
for r in $(seq "$ROUNDS"); do
  rest=$(wrk -t2 -c50 -d"${SECS}s" "http://$http/v1/groups/bench/keys/k" | awk '/Requests\/sec/ {print $2}')
  redis=$(redis-benchmark -p "$port" -c 50 -n $((SECS * 60000)) -t get -d 100 -q 2>/dev/null \
    | tr '\r' '\n' | awk '/^GET:/ {print $2}' | tail -1)
  awk -v r="$r" -v a="$rest" -v b="$redis" \
    'BEGIN { printf "round %d: meshcached REST %.0f req/s, redis-server %.0f req/s, ratio %.2fx\n", r, a, b, a / b }'
done
