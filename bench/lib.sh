# The set-up bench/ab.sh and bench/instructions.sh share (sourced, not run): a scratch
# directory, the processes to end by PID on exit, a free port, a readiness probe, and the tiny
# nginx upstream every row forwards to.
#
#   bench_setup NAME          $run (scratch, removed on exit), $pids (ended on exit)
#   free_port                 prints a free loopback port
#   wait_for URL [HEADER]     waits up to WAIT_SECONDS (default 10) for a 200
#   start_upstream BYTES      nginx serving a BYTES-byte file for any path on $up_port
#   issuer_token ALG SECONDS  makes the token issuer's key ($run/issuer.key and .pub; RS256:
#                             RSA 2048, ES256: EC P-256) and prints one of its tokens, for
#                             svc-bench, that expires SECONDS from now (negative: expired)
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

issuer_token() {
  case $1 in
    RS256) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$run/issuer.key" 2>/dev/null ;;
    ES256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$run/issuer.key" 2>/dev/null ;;
    *) echo "$bench_name: issuer_token: RS256 or ES256, not $1" >&2; exit 2 ;;
  esac
  openssl pkey -in "$run/issuer.key" -pubout -out "$run/issuer.pub"
  node -e '
    const crypto = require("crypto");
    const [file, alg, seconds, iss, aud] = process.argv.slice(1);
    const key = crypto.createPrivateKey(require("fs").readFileSync(file));
    const part = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const exp = Math.floor(Date.now() / 1000) + Number(seconds);
    const signed = part({ alg, typ: "JWT" }) + "." + part({
      iss, aud, sub: "svc-bench", email: "svc@example.com", iat: exp - 3600, exp });
    // ES256 signatures are r || s (IEEE P1363), as JWS wants; RSA ones are what they are.
    const sig = crypto.sign("sha256", Buffer.from(signed), { key, dsaEncoding: "ieee-p1363" });
    console.log(signed + "." + sig.toString("base64url"));
  ' "$run/issuer.key" "$1" "$2" "$token_issuer" "$token_audience"
}

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
