"""How long did each chapter of a run take? Prints figures from the run's manifest, asserts nothing.

    .venv/bin/python benchmarks/study_timing.py [results/default]

The study's targets on 2 CPU cores: the dataset <= 5 minutes, the grid search <= 15, training
<= 30, the whole study <= 60. The manifest records each notebook's wall time as the runner saw it;
a notebook that re-used finished work (a cached dataset, a finished training run) shows that
shorter time, so time a cold run: a fresh run folder and an empty $MUSICVAE_CACHE.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TARGET_MINUTES = {"01_dataset": 5, "02_grid_search": 15, "03_training": 30}
STUDY_TARGET_MINUTES = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?", default=Path("results/default"))
    args = parser.parse_args()
    manifest = json.loads((args.run_dir / "manifest.json").read_text())
    total = 0.0
    print(f"{'notebook':<18} {'minutes':>8} {'target':>7}  status  commit")
    for name, entry in manifest["notebooks"].items():
        minutes = (entry.get("duration_s") or 0) / 60
        total += minutes
        target = TARGET_MINUTES.get(name)
        print(
            f"{name:<18} {minutes:8.1f} {('<= ' + str(target)) if target else '':>7}  {entry['status']:<6}  "
            f"{(entry.get('git_commit') or '')[:7]}{'+dirty' if entry.get('git_dirty') else ''}"
        )
    verdict = "met" if total <= STUDY_TARGET_MINUTES else "missed"
    print(f"{'whole study':<18} {total:8.1f} {'<= ' + str(STUDY_TARGET_MINUTES):>7}  {verdict}")


if __name__ == "__main__":
    main()
