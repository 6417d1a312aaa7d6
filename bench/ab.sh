#!/usr/bin/env bash
# Two portcullis builds, measured against each other in one run: the same tiny nginx upstream,
# wrk rounds interleaved (A B, B A, A B, …) so that whatever else the machine does falls on both
# alike. Two rows: `public` (a public route, forwarded: the path every request takes) and
# `expired` (a protected route with an expired RS256 bearer token, refused with 401: what a
# flood of stale tokens costs). For a change on such a path, where the full benchmark
# (bench/run.sh) measures one build.
#
#   bash bench/ab.sh A_BIN B_BIN [ROUNDS] [SECONDS] [CONNECTIONS]
#
# e.g. a release build of main against one of a branch:
#   git worktree add /tmp/base main && (cd /tmp/base && cargo build --release)
#   cargo build --release && bash bench/ab.sh /tmp/base/target/release/portcullis target/release/portcullis
#
# Prints each round, the medians and B/A. Needs wrk, nginx and curl (Debian packages). Every
# process it starts is ended by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

a_bin=$(realpath "${1:?A_BIN: the baseline portcullis binary}")
b_bin=$(realpath "${2:?B_BIN: the portcullis binary to compare}")
rounds="${3:-5}"
seconds="${4:-5}"
connections="${5:-32}"
for tool in wrk nginx curl openssl node; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
    echo "ab: needs $tool (apt-get install -y wrk nginx curl openssl nodejs)" >&2
    exit 2
  }
done

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_setup ab
start_upstream 512

# A token issuer of our own (RSA), and one of its tokens that expired an hour ago.
expired=$(issuer_token RS256 -3600)
declare -A port
for side in a b; do
  port[$side]=$(free_port)
  portcullis_config "${port[$side]}" "$run/$side.toml"
done
declare -A pid
"$a_bin" run --config "$run/a.toml" >"$run/a.log" 2>&1 &
pid[a]=$!
pids+=($!)
"$b_bin" run --config "$run/b.toml" >"$run/b.log" 2>&1 &
pid[b]=$!
pids+=($!)
wait_for "http://127.0.0.1:${port[a]}/public"
wait_for "http://127.0.0.1:${port[b]}/public"

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system, in clock ticks
measure() { # side row -> "requests/s cpu-µs-per-request"
  local before after out args=()
  [ "$2" = expired ] && args=(-H "Authorization: Bearer $expired")
  local path=/public
  [ "$2" = expired ] && path=/api
  before=$(cpu_ticks "${pid[$1]}")
  out=$(wrk -t2 -c"$connections" -d"${seconds}s" "${args[@]}" "http://127.0.0.1:${port[$1]}$path")
  after=$(cpu_ticks "${pid[$1]}")
  echo "$out" | awk -v t=$((after - before)) -v hz="$ticks" '
    / requests in / {n = $1}
    /^Requests\/sec/ {rps = $2}
    END {printf "%s %.1f\n", rps, t / hz * 1e6 / n}'
}
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $expired" "http://127.0.0.1:${port[a]}/api")" = 401 ] || {
  echo "ab: the expired token was not refused with 401" >&2
  exit 1
}
declare -A rps cpu
echo "A: $a_bin"
echo "B: $b_bin"
echo "wrk -t2 -c$connections -d${seconds}s, $rounds rounds, interleaved"
for r in $(seq 1 "$rounds"); do
  order="a b"
  [ $((r % 2)) -eq 0 ] && order="b a"
  for row in public expired; do
    for side in $order; do
      read -r one_rps one_cpu < <(measure "$side" "$row")
      rps[$row$side]="${rps[$row$side]:-} $one_rps"
      cpu[$row$side]="${cpu[$row$side]:-} $one_cpu"
      echo "round $r $row $side: $one_rps req/s, $one_cpu CPU µs/request"
    done
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
for row in public expired; do
  ra=$(echo "${rps[${row}a]}" | median)
  rb=$(echo "${rps[${row}b]}" | median)
  ca=$(echo "${cpu[${row}a]}" | median)
  cb=$(echo "${cpu[${row}b]}" | median)
  echo "$row: median A $ra req/s, $ca CPU µs/request; median B $rb req/s, $cb CPU µs/request"
  awk -v row="$row" -v ra="$ra" -v rb="$rb" -v ca="$ca" -v cb="$cb" \
    'BEGIN {printf "%s: B/A %.3f × the requests/s, %.3f × the CPU per request\n", row, rb / ra, cb / ca}'
done
