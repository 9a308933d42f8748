#!/usr/bin/env bash
# Times Q1-Q9 of the executor issue as whole `tsq query` processes (open, parse, evaluate,
# print), median of 5 runs each, on databases made by `tsq bench ingest --into DIR`.
#
#   cargo build --release -p tsq-cli
#   target/release/tsq bench ingest --dataset devops --into /tmp/b-dv
#   target/release/tsq bench ingest --dataset workload --days 8 --into /tmp/b-wl
#   benches/queries.sh target/release/tsq /tmp/b-dv /tmp/b-wl
set -euo pipefail
tsq=${1:?path to tsq}; dv=${2:?devops db}; wl=${3:?workload db}

run() { # name db args...
  local name=$1 db=$2; shift 2
  local times=()
  for _ in 1 2 3 4 5; do
    local s e
    s=$(date +%s%N)
    "$tsq" --db "$db" query --format csv "$@" > /tmp/tsq-q.out
    e=$(date +%s%N)
    times+=( $(( (e - s) / 1000 )) )
  done
  local med
  med=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
  printf '%-8s %8.1f ms  %6d rows\n' "$name" "$(echo "$med / 1000" | bc -l)" "$(( $(wc -l < /tmp/tsq-q.out) - 1 ))"
}

D0=2026-01-01T00:00:00Z; D1=2026-01-02T00:00:00Z
run Q1 "$dv" --start 2026-01-01T12:00:00Z --end 2026-01-01T13:00:00Z --step 1m 'max_over_time(cpu_usage_user{hostname="host_0"}[1m])'
run Q2 "$dv" --start 2026-01-01T12:00:00Z --end $D1 --step 1h 'avg by (hostname) (avg_over_time(cpu_usage_user[1h]))'
run Q3 "$dv" --time $D1 'max_over_time(cpu_usage_user[12h]) > 90'
run Q4 "$dv" --time $D1 'cpu_usage_user'
run Q5 "$dv" --start 2026-01-01T16:00:00Z --end $D1 --step 1h 'max by (hostname) (max_over_time({__name__=~"cpu_.*", hostname=~"host_[0-7]"}[1h]))'
W0=2026-01-08T00:00:00Z; W1=2026-01-09T00:00:00Z
run Q6-avg "$wl" --start $W0 --end $W1 --step 5m 'avg_over_time(request_latency_seconds[1d])'
run Q6-sd "$wl" --start $W0 --end $W1 --step 5m 'stddev_over_time(request_latency_seconds[1d])'
run Q7 "$wl" --start $W0 --end $W1 --step 1m 'sum by (service) (rate(http_requests_total[5m]))'
run Q8 "$wl" --start $W0 --end $W1 --step 1h 'quantile_over_time(0.99, request_latency_seconds[1h])'
run Q9 "$wl" --start $W0 --end $W1 --step 5m 'request_latency_seconds - avg_over_time(request_latency_seconds[1h] offset 7d)'
: "$D0"
