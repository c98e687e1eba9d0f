#!/usr/bin/env bash
# Create .venv with Python 3.11 and the pinned packages of pyproject.toml; sourced by study.sh and test.sh.
# Re-installs only when pyproject.toml changed since the last setup.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

extras="${1:-}"  # "test" adds the test-only packages
python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python_bin="$candidate"; break
    fi
  done
fi
if [ -z "$python_bin" ]; then
  echo "error: Python 3.11 not found (tried python3.11, python3); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

stamp=".venv/.setup-$(sha256sum pyproject.toml | cut -c1-16)-${extras:-base}"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || "$python_bin" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  spec="."
  [ -n "$extras" ] && spec=".[$extras]"
  .venv/bin/python -m pip install --quiet -e "$spec"
  # tinysoundfont renders General MIDI audio; its only declared dependency (pyaudio, live playback)
  # needs PortAudio headers and is never used here, hence --no-deps.
  .venv/bin/python -m pip install --quiet --no-deps tinysoundfont==0.3.7
  .venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
  touch "$stamp"
fi
