#!/usr/bin/env bash
# Copy the browser page's pinned npm dependency (onnxruntime-web, web/package-lock.json) into the
# git-ignored web/vendor/, so that the page runs from `python -m http.server` with no internet.
# Needs npm and the npm registry once; does nothing while web/vendor/ matches the lock file.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../web"

stamp="vendor/.lock-$(sha256sum package-lock.json | cut -c1-16)"
[ -f "$stamp" ] && exit 0
if ! command -v npm >/dev/null; then
  echo "error: npm not found; install Node.js (e.g. apt-get install npm) to vendor onnxruntime-web into web/vendor/" >&2
  exit 1
fi
npm ci --ignore-scripts --no-audit --no-fund --silent
rm -rf vendor
mkdir vendor
# the WebAssembly build only: the script, its loader and its binary (threads need cross-origin
# isolation, which http.server does not give, so the page runs one thread)
dist=node_modules/onnxruntime-web/dist
cp "$dist/ort.wasm.min.js" "$dist/ort-wasm-simd-threaded.mjs" "$dist/ort-wasm-simd-threaded.wasm" vendor/
cp node_modules/onnxruntime-web/package.json vendor/onnxruntime-web-package.json  # version and MIT licence
touch "$stamp"
