"""``./study.sh --profile quick`` (``.venv/bin/python -m musicvae_lib.run ...``):
run the study's notebooks (see musicvae_lib.runner)."""

import sys

from musicvae_lib.runner import main

if __name__ == "__main__":
    sys.exit(main())
