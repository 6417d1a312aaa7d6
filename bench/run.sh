#!/usr/bin/env bash
# The benchmark, in one command (see bench/README.md):
#
#   bash bench/run.sh [--rounds N] [--duration SECONDS] [--connections C] [--rows 2,4,7b]
#
# (--rows: only these rows, e.g. while working on one path; the default is all of them.)
#
# 1. installs what is missing (PyPI: envoy-data-plane, into bench/.work/python; crates.io: oha,
#    the open-loop load generator of the latency rows, into bench/.work/tools; Debian: wrk,
#    nghttp2-client (h2load), redis-server, nginx, apache2, libapache2-mod-auth-openidc,
#    chromium, cmake),
# 2. builds portcullis and the minimal pingora proxy (bench/minimal_proxy.rs) in release mode
#    from a git worktree of HEAD in bench/.work/src (so uncommitted edits in the main work tree
#    never affect the numbers), with its own target directory bench/.work/target,
# 3. runs `npm ci` in that worktree's tests/e2e (oidc-provider, playwright-core),
# 4. runs bench/orchestrate.mjs, which starts everything on loopback, measures, prints the
#    table and writes bench/results.md.
#
# Every process is ended by PID when the benchmark finishes, fails, or is interrupted.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
WORK="$HERE/.work"
SRC="$WORK/src"
PIDFILE="$WORK/run/pids"
COMMAND="bash bench/run.sh${*:+ $*}"
STARTED_MS="$(date +%s%3N)"

for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done

step() { printf '\n== %s\n' "$*"; }
mkdir -p "$WORK"

# 1. Debian packages.
step "packages"
missing=()
for pkg in wrk nghttp2-client redis-server nginx apache2 libapache2-mod-auth-openidc chromium cmake git; do
  if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$WORK/apt.log" 2>&1 ||
    { tail -20 "$WORK/apt.log"; exit 1; }
else
  echo "all installed"
fi
if ! /usr/sbin/nginx -V 2>&1 | grep -q -- --with-http_auth_request_module; then
  echo "nginx lacks the auth_request module" >&2
  exit 1
fi

# 2. A worktree of HEAD, built in release mode.
step "portcullis (release build of HEAD)"
HEAD_SHA="$(git -C "$ROOT" rev-parse HEAD)"
if [ ! -e "$SRC/.git" ]; then
  git -C "$ROOT" worktree prune
  git -C "$ROOT" worktree add --detach "$SRC" "$HEAD_SHA" >/dev/null
else
  git -C "$SRC" checkout --quiet --force --detach "$HEAD_SHA"
fi
COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD)"
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]; then
  echo "note: the work tree has uncommitted changes; the benchmark measures HEAD ($COMMIT) without them"
fi
BIN="$WORK/target/release/portcullis"
MINIMAL_BIN="$WORK/target/release/examples/minimal_proxy"
if [ -n "${BENCH_BIN:-}" ]; then
  # A development shortcut: measure a binary built elsewhere (e.g. target/release/portcullis
  # with uncommitted edits). The results say so instead of naming a commit.
  BIN="$(realpath "$BENCH_BIN")"
  COMMIT="$COMMIT + uncommitted ($BENCH_BIN)"
  echo "measuring $BIN (BENCH_BIN), not a build of HEAD"
  MINIMAL_BIN="$(dirname "$BIN")/examples/minimal_proxy"
else
  echo "building $COMMIT"
  if ! (cd "$SRC" && CARGO_TARGET_DIR="$WORK/target" cargo build --release --bin portcullis --example minimal_proxy) \
      >"$WORK/build.log" 2>&1; then
    tail -30 "$WORK/build.log"
    exit 1
  fi
fi

# 3. The provider and the browser driver, from the worktree's tests/e2e.
step "npm ci (tests/e2e)"
if [ ! -d "$SRC/tests/e2e/node_modules" ] ||
    ! cmp -s "$SRC/tests/e2e/package-lock.json" "$WORK/npm-lock.installed"; then
  (cd "$SRC/tests/e2e" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$SRC/tests/e2e/package-lock.json" "$WORK/npm-lock.installed"
else
  echo "up to date"
fi

# The ext_authz row's check request is built with Envoy's protos (PyPI envoy-data-plane).
step "python envoy-data-plane (the ext_authz row's request)"
if ! PYTHONPATH="$WORK/python" python3 -c "import envoy_data_plane" >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check --target "$WORK/python" envoy-data-plane==2.2.0
else
  echo "up to date"
fi

# The latency rows' open-loop load generator (a fixed request rate, corrected for coordinated
# omission), built from crates.io once.
OHA_VERSION=1.12.0
step "oha $OHA_VERSION (the latency rows' load generator)"
if [ "$("$WORK/tools/bin/oha" --version 2>/dev/null)" != "oha $OHA_VERSION" ]; then
  echo "installing (a few minutes, once)"
  cargo install --quiet --locked --root "$WORK/tools" oha --version "$OHA_VERSION" >"$WORK/oha-install.log" 2>&1 ||
    { tail -20 "$WORK/oha-install.log"; exit 1; }
else
  echo "up to date"
fi

# 4. The benchmark. It ends its own processes; should it die without doing so, what it
#    recorded in $PIDFILE (PID, start time, name) is ended here, checking the start time so
#    that a reused PID is never hit.
ORCH_PID=""
cleanup() {
  local code=$?
  trap - EXIT INT TERM HUP
  if [ -n "$ORCH_PID" ] && kill -0 "$ORCH_PID" 2>/dev/null; then
    kill -TERM "$ORCH_PID" 2>/dev/null || true
    wait "$ORCH_PID" 2>/dev/null || true
  fi
  if [ -f "$PIDFILE" ]; then
    while read -r pid started name; do
      [ -r "/proc/$pid/stat" ] || continue
      now_started="$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f20)"
      if [ "$now_started" = "$started" ]; then
        echo "ending leftover $name (pid $pid)"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done <"$PIDFILE"
    rm -f "$PIDFILE"
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

step "benchmark"
BENCH_SRC="$SRC" PORTCULLIS_BIN="$BIN" MINIMAL_BIN="$MINIMAL_BIN" OHA="$WORK/tools/bin/oha" \
  BENCH_COMMIT="$COMMIT" BENCH_COMMAND="$COMMAND" BENCH_STARTED="$STARTED_MS" \
  node "$HERE/orchestrate.mjs" "$@" &
ORCH_PID=$!
wait "$ORCH_PID"
