#!/usr/bin/env bash
# Bounded fuzzing of portcullis with cargo-fuzz (libFuzzer): builds every target once, then runs
# each for SECONDS (default 30) and fails on the first crash, panic or failed property.
#
#   bash fuzz/run.sh            # every target, 30 s each (what .ci/test runs)
#   bash fuzz/run.sh 3600 path  # one target for an hour
#
# Only the stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets it accept the `-Z` flags cargo-fuzz
# passes. AddressSanitizer is used (its runtime ships with the standard library); set
# FUZZ_SANITIZER=none to do without. A crash leaves its input in fuzz/artifacts/<target>/ and
# the command to reproduce it in the output. Inputs that found new coverage accumulate in
# fuzz/corpus/<target>/ (not committed); fuzz/seeds/<target>/ holds the committed seeds.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-30}"
shift || true
targets=(cookie redirect path jwt config head dpop cert_header)
[ $# -eq 0 ] || targets=("$@")
sanitizer="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Seeds from the project's security corpora (tests/corpus/, one input per line), on first use.
corpora=../tests/corpus
seed_lines() { # target file
  local dir="corpus/$1" n=0 line
  [ -f "$corpora/$2" ] || return 0
  [ -z "$(ls -A "$dir" 2>/dev/null)" ] || return 0
  mkdir -p "$dir"
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    printf '%s' "$line" >"$dir/shared-$n"
  done <"$corpora/$2"
}
seed_lines path path-confusion.txt
seed_lines redirect open-redirects.txt

flags=(--release --debug-assertions --sanitizer "$sanitizer")
echo "==> cargo fuzz build (sanitizer: $sanitizer)"
start=$(date +%s)
cargo fuzz build "${flags[@]}"
echo "    built in $(($(date +%s) - start)) s"

for target in "${targets[@]}"; do
  echo "==> fuzzing $target for ${seconds} s"
  mkdir -p "corpus/$target" "artifacts/$target"
  # -timeout: one input running 10 s is a hang worth reporting; -rss_limit_mb: a leak or an
  # allocation bomb. Output goes to a log; the stats and any crash report are printed.
  log="artifacts/$target/last-run.log"
  if ! cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $target FAILED (full log: fuzz/$log)" >&2
    exit 1
  fi
  grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs|stat::number_of_executed_units)' "$log" || tail -n 3 "$log"
done
echo "==> fuzzing: no crash in ${seconds} s per target"
