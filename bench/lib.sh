# The set-up bench/ab.sh and bench/instructions.sh share (sourced, not run): a scratch
# directory, the processes to end by PID on exit, a free port, a readiness probe, and the tiny
# nginx upstream every row forwards to.
#
#   bench_setup NAME          $run (scratch, removed on exit), $pids (ended on exit)
#   free_port                 prints a free loopback port
#   wait_for URL [HEADER]     waits up to WAIT_SECONDS (default 10) for a 200
#   start_upstream BYTES      nginx serving a BYTES-byte file for any path on $up_port
#   portcullis_config PORT FILE
#                             a portcullis listening on PORT in front of that upstream, with a
#                             public route /public and the token issuer $token_issuer
#                             ($token_audience; its key in $run/issuer.pub), into FILE

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

# The token issuer of the scripts' own tokens.
token_issuer="https://bench.local"
token_audience="https://bench.api"

portcullis_config() {
  local secret
  secret=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  cat >"$2" <<TOML
[server]
listen = "127.0.0.1:$1"
shutdown_grace = "1s"
[upstream]
url = "http://127.0.0.1:$up_port"
[oidc]
# Nobody listens there: the rows need no provider.
issuer = "http://127.0.0.1:9/"
client_id = "bench"
client_secret = "bench"
redirect_url = "http://127.0.0.1:$1/oauth2/callback"
[session]
secrets = ["$secret"]
secure = false
[logging]
level = "error"
[[bearer.issuers]]
issuer = "$token_issuer"
audiences = ["$token_audience"]
public_keys = ["$run/issuer.pub"]
[[routes]]
path = "/public"
policy = "public"
TOML
}
