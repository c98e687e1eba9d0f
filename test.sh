#!/usr/bin/env bash
# Set up (with the test-only packages) and run every test: pytest unit tests, then nbval over the notebooks.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh test
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export IPYTHONDIR="$scratch/ipython" TQDM_DISABLE=1
export MUSICVAE_CACHE="$scratch/cache"  # a cold parse, as a new user's first run
.venv/bin/python -m pytest tests "$@"
# nbval runs each notebook with its default (small) parameters; copies in the scratch folder write
# their run folder (../results/interactive) there, so a test run never touches the user's results.
cp -r notebooks "$scratch/notebooks"
.venv/bin/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider --rootdir "$scratch" "$scratch/notebooks"
