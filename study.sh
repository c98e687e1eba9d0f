#!/usr/bin/env bash
# Set everything up and run the whole study on the embedded folk corpus into results/local/<profile>/
# (--reference re-makes the committed reference run results/<profile>/ instead).
# Usage: ./study.sh [runner options], e.g. ./study.sh --profile quick, ./study.sh --only 01 --force
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
if [[ " $* " != *" --profile "* ]]; then set -- --profile default "$@"; fi
exec .venv/bin/python -m musicvae_lib.run "$@"
