#!/usr/bin/env bash
# Set up (with the test-only packages) and run every test: ruff, pytest unit tests, then nbval over the notebooks.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh test
# Lint and format first, failing fast: pyproject.toml's [tool.ruff], 120 characters a line; notebook cells are linted
# but not formatted (wrapped by hand to stay short: [tool.ruff.format] exclude).
linted=(musicvae_lib tests benchmarks scripts notebooks)
.venv/bin/ruff check "${linted[@]}"
.venv/bin/ruff format --check "${linted[@]}"
# The browser test (tests/test_web.py) drives Debian's chromium and serves web/ with onnxruntime-web
# vendored from the npm registry; the shared-study tests start a PostgreSQL server of their own
# (tests/postgres_server.py: Debian keeps initdb off PATH). Install what is missing where the machine
# allows (root and apt).
missing=""
command -v chromium >/dev/null || missing="chromium"
command -v npm >/dev/null || missing="$missing npm"
command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing="$missing postgresql"
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
command -v npm >/dev/null && bash scripts/vendor_web.sh
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export IPYTHONDIR="$scratch/ipython" TQDM_DISABLE=1
export MUSICVAE_CACHE="$scratch/cache"  # a cold parse, as a new user's first run
.venv/bin/python -m pytest tests "$@"
# nbval runs each notebook with its default (small) parameters; copies in the scratch folder write
# their run folder (../results/interactive) there, so a test run never touches the user's results.
cp -r notebooks "$scratch/notebooks"
.venv/bin/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider --rootdir "$scratch" "$scratch/notebooks"
