# The set-up bench/ab.sh and bench/instructions.sh share (sourced, not run): a scratch
# directory, the processes to end by PID on exit, a free port, a readiness probe, and the tiny
# nginx upstream every row forwards to.
#
#   bench_setup NAME          $run (scratch, removed on exit), $pids (ended on exit)
#   free_port                 prints a free loopback port
#   wait_for URL [HEADER]     waits up to WAIT_SECONDS (default 10) for a 200
#   start_upstream BYTES      nginx serving a BYTES-byte file for any path on $up_port

bench_setup() {
  bench_name=$1
  run=$(mktemp -d "/tmp/portcullis-$bench_name.XXXXXX")
  chmod 755 "$run" # nginx workers (not root) read the payload from here
  pids=()
  trap bench_cleanup EXIT INT TERM
}

bench_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$run"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() {
  local args=() tries=$((${WAIT_SECONDS:-10} * 10))
  [ -n "${2:-}" ] && args=(-H "$2")
  for _ in $(seq 1 "$tries"); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "${args[@]}" "$1")" = 200 ] && return 0
    sleep 0.1
  done
  echo "$bench_name: $1 never answered 200" >&2
  exit 1
}

start_upstream() {
  up_port=$(free_port)
  mkdir -p "$run/upstream" "$run/www"
  head -c "$1" /dev/zero | tr '\0' 'x' >"$run/www/payload.txt"
  sed -e "s#{{DIR}}#$run/upstream#g" -e "s#{{PORT}}#$up_port#g" -e "s#{{WWW}}#$run/www#g" \
    bench/templates/upstream.nginx.conf >"$run/upstream/nginx.conf"
  /usr/sbin/nginx -c "$run/upstream/nginx.conf" -e "$run/upstream/error.log" &
  pids+=($!)
  wait_for "http://127.0.0.1:$up_port/x"
}
