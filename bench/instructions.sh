#!/usr/bin/env bash
# Instructions and allocations per request, counted by valgrind's callgrind: deterministic,
# unlike req/s and CPU time on a shared 2-core machine, where a change of a few percent drowns
# in the noise between wrk runs. For a change on the hot path, beside bench/ab.sh's timings.
#
#   bash bench/instructions.sh A_BIN [B_BIN] [REQUESTS]
#
# Rows: `public` (a public route, forwarded) for the minimal pingora proxy of the same build
# (examples/minimal_proxy beside A_BIN, when it is there) and each binary; `cookie` (a session
# cookie, its identity forwarded; the session is sealed by examples/mint_session beside A_BIN,
# when it is there) and `bearer` (a remembered ES256 token, its identity forwarded) for each
# binary. Build all three with
#   cargo build --release --bin portcullis --example minimal_proxy --example mint_session
# Each binary runs under callgrind with one tiny nginx upstream; after a warm-up, the counters are zeroed, ApacheBench
# sends REQUESTS keep-alive requests on 4 connections, and the counters are dumped. Counts
# are user space only (the kernel's share is not seen), and callgrind runs on a CPU model
# without SHA-NI, so a SHA-256 costs more here than on the machine.
#
# Needs valgrind, ab (apache2-utils), nginx, curl, openssl, node. Every process it starts is
# ended by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

a_bin=$(realpath "${1:?A_BIN: a portcullis binary}")
b_bin=${2:+$(realpath "$2")}
requests="${3:-4000}"
for tool in valgrind callgrind_control callgrind_annotate ab nginx curl openssl node; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
    echo "instructions: needs $tool (apt-get install -y valgrind apache2-utils nginx curl openssl nodejs)" >&2
    exit 2
  }
done
minimal="$(dirname "$a_bin")/examples/minimal_proxy"
mint="$(dirname "$a_bin")/examples/mint_session"

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_setup instructions
WAIT_SECONDS=60 # valgrind starts slowly
start_upstream 200

# A token issuer of our own (EC P-256) and one of its tokens, good for an hour.
token=$(issuer_token ES256 3600)

# One measurement: NAME, URL, optional header, then the command that serves URL.
measure() {
  local name=$1 url=$2 header=$3
  shift 3
  valgrind --tool=callgrind --callgrind-out-file="$run/$name.out" "$@" >"$run/$name.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  wait_for "$url" "$header"
  local args=(-k -c 4)
  [ -n "$header" ] && args+=(-H "$header")
  ab "${args[@]}" -n 500 "$url" >/dev/null 2>&1
  callgrind_control -z "$pid" >/dev/null 2>&1
  local out
  out=$(ab "${args[@]}" -n "$requests" "$url" 2>&1)
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  if ! grep -q "^Complete requests: *$requests\$" <<<"$out" || grep -q "Non-2xx" <<<"$out"; then
    echo "instructions: $name: not $requests answers of 200:" >&2
    grep -E "Complete|Non-2xx|Failed" <<<"$out" >&2
    exit 1
  fi
  local dump="$run/$name.out.1"
  local total allocations
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(/,/, "", $1); print $1}')
  # Calls into the allocator, summed over its callers (mimalloc is both binaries' allocator).
  allocations=$(callgrind_annotate --inclusive=yes --threshold=100 --tree=caller "$dump" 2>/dev/null |
    awk '
      /%\)  < / {calls[++n] = $0; next}
      /\*  \?\?\?:mi_(malloc|zalloc|realloc)_aligned / {
        for (i = 1; i <= n; i++) if (match(calls[i], /\(([0-9,]+)x\)/)) {
          c = substr(calls[i], RSTART + 1, RLENGTH - 3); gsub(/,/, "", c); sum += c
        }
      }
      {n = 0}
      END {print sum + 0}')
  awk -v name="$name" -v t="$total" -v a="$allocations" -v n="$requests" \
    'BEGIN {printf "%-22s %9.0f instructions/request %7.1f allocations/request\n", name, t / n, a / n}'
}


echo "callgrind, $requests keep-alive requests on 4 connections (ab), after 500 of warm-up"
if [ -x "$minimal" ]; then
  port=$(free_port)
  measure "public minimal-pingora" "http://127.0.0.1:$port/public" "" \
    "$minimal" "127.0.0.1:$port" "127.0.0.1:$up_port" 2 steal
fi
for side in a b; do
  bin=$a_bin
  [ "$side" = b ] && bin=$b_bin
  [ -n "$bin" ] || continue
  port=$(free_port)
  portcullis_config "$port" "$run/$side.toml"
  measure "public $side" "http://127.0.0.1:$port/public" "" "$bin" run --config "$run/$side.toml"
  if [ -x "$mint" ]; then
    cookie=$("$mint" "$run/$side.toml")
    measure "cookie $side" "http://127.0.0.1:$port/api" "Cookie: $cookie" \
      "$bin" run --config "$run/$side.toml"
  fi
  measure "bearer $side" "http://127.0.0.1:$port/api" "Authorization: Bearer $token" \
    "$bin" run --config "$run/$side.toml"
done
