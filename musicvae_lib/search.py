"""The grid search over beta and lambda (notebook 02) and the choice it hands to training (notebook 03).

Notebook 02 writes ``<run_dir>/grid_search/choice.json`` (``{"beta": ..., "free_nats": ...}`` plus
how it chose); notebook 03 trains with that choice when the file exists, else with its own
parameters.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CHOICE_FILE = Path("grid_search") / "choice.json"


def load_choice(run_dir: str | os.PathLike) -> dict | None:
    """The grid search's chosen ``beta`` and ``free_nats`` (nats), or None if notebook 02 has not run."""
    path = Path(run_dir) / CHOICE_FILE
    if not path.exists():
        return None
    choice = json.loads(path.read_text())
    missing = {"beta", "free_nats"} - choice.keys()
    if missing:
        raise ValueError(f"{path} lacks {sorted(missing)}: re-run notebooks/02_grid_search.ipynb")
    return choice


def write_choice(run_dir: str | os.PathLike, beta: float, free_nats: float, **why) -> Path:
    """Write the chosen beta and lambda (nats) for notebook 03, with any explanation fields."""
    path = Path(run_dir) / CHOICE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"beta": beta, "free_nats": free_nats, **why}, indent=2, sort_keys=True))
    return path
