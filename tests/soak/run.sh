#!/usr/bin/env bash
# Soak test (not part of the test command; see SECURITY.md for the latest figures):
#
#   bash tests/soak/run.sh [MINUTES] [WORKERS] [RATE]   # default: 10 minutes, 16 workers, 1000 req/s
#
# Builds portcullis in release mode, installs the end-to-end suite's npm packages
# (oidc-provider), and runs tests/soak/soak.mjs: a mixed load of session-cookie requests,
# bearer-token requests and fresh logins against one portcullis process. Fails on any
# unexpected answer, RSS growth of 5 % or more over the second half, or descriptors left open.
# Every process it starts is ended when it finishes or is interrupted.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MINUTES="${1:-10}"
WORKERS="${2:-16}"
RATE="${3:-1000}"
cd "$ROOT"
cargo build --release --quiet --bin portcullis
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
PORTCULLIS_BIN="$ROOT/target/release/portcullis" \
  node tests/soak/soak.mjs --minutes "$MINUTES" --workers "$WORKERS" --rate "$RATE"
