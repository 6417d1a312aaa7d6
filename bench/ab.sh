#!/usr/bin/env bash
# Two portcullis builds, measured against each other in one run: the same tiny nginx upstream,
# the same public route, wrk rounds interleaved (A B, B A, A B, …) so that whatever else the
# machine does falls on both alike. For a change on the request path every request takes (the
# listener, header hygiene), where the full benchmark (bench/run.sh) would measure one build.
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
for tool in wrk nginx curl; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
    echo "ab: needs $tool (apt-get install -y wrk nginx curl)" >&2
    exit 2
  }
done

run=$(mktemp -d /tmp/portcullis-ab.XXXXXX)
chmod 755 "$run" # nginx workers (not root) read the payload from here
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # url
  for _ in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
    sleep 0.05
  done
  echo "ab: $1 never answered 200" >&2
  exit 1
}

up_port=$(free_port)
mkdir -p "$run/upstream" "$run/www"
head -c 512 /dev/zero | tr '\0' 'x' >"$run/www/payload.txt"
sed -e "s#{{DIR}}#$run/upstream#g" -e "s#{{PORT}}#$up_port#g" -e "s#{{WWW}}#$run/www#g" \
  bench/templates/upstream.nginx.conf >"$run/upstream/nginx.conf"
/usr/sbin/nginx -c "$run/upstream/nginx.conf" -e "$run/upstream/error.log" &
pids+=($!)
wait_for "http://127.0.0.1:$up_port/x"

secret=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
declare -A port
for side in a b; do
  port[$side]=$(free_port)
  cat >"$run/$side.toml" <<TOML
[server]
listen = "127.0.0.1:${port[$side]}"
shutdown_grace = "1s"
[upstream]
url = "http://127.0.0.1:$up_port"
[oidc]
# Nobody listens there: the public route needs no provider.
issuer = "http://127.0.0.1:9/"
client_id = "ab"
client_secret = "ab"
redirect_url = "http://127.0.0.1:${port[$side]}/oauth2/callback"
[session]
secrets = ["$secret"]
secure = false
[logging]
level = "error"
[[routes]]
path = "/public"
policy = "public"
TOML
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
measure() { # side -> "requests/s cpu-µs-per-request"
  local before after out
  before=$(cpu_ticks "${pid[$1]}")
  out=$(wrk -t2 -c"$connections" -d"${seconds}s" "http://127.0.0.1:${port[$1]}/public")
  after=$(cpu_ticks "${pid[$1]}")
  echo "$out" | awk -v t=$((after - before)) -v hz="$ticks" '
    / requests in / {n = $1}
    /^Requests\/sec/ {rps = $2}
    END {printf "%s %.1f\n", rps, t / hz * 1e6 / n}'
}
declare -A rps=([a]="" [b]="") cpu=([a]="" [b]="")
echo "A: $a_bin"
echo "B: $b_bin"
echo "wrk -t2 -c$connections -d${seconds}s on /public, $rounds rounds, interleaved"
for r in $(seq 1 "$rounds"); do
  order="a b"
  [ $((r % 2)) -eq 0 ] && order="b a"
  for side in $order; do
    read -r one_rps one_cpu < <(measure "$side")
    rps[$side]="${rps[$side]} $one_rps"
    cpu[$side]="${cpu[$side]} $one_cpu"
    echo "round $r $side: $one_rps req/s, $one_cpu CPU µs/request"
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
ra=$(echo "${rps[a]}" | median)
rb=$(echo "${rps[b]}" | median)
ca=$(echo "${cpu[a]}" | median)
cb=$(echo "${cpu[b]}" | median)
echo "median A: $ra req/s, $ca CPU µs/request"
echo "median B: $rb req/s, $cb CPU µs/request"
awk -v ra="$ra" -v rb="$rb" -v ca="$ca" -v cb="$cb" \
  'BEGIN {printf "B/A: %.3f × the requests/s, %.3f × the CPU per request\n", rb / ra, cb / ca}'
