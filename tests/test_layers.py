"""The library's layers: the orchestrator and the report stand on top of it, light to import."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
LIBRARY = REPOSITORY / "musicvae_lib"
HEAVY = ("torch", "optuna")


@pytest.mark.parametrize(
    "module",
    [
        "musicvae_lib.runner",
        "musicvae_lib.report",
        "musicvae_lib.run_folder",
        "musicvae_lib.seed_spread",
        "musicvae_lib.spread",
    ],
)
def test_the_runner_and_the_report_load_neither_torch_nor_optuna(module):
    code = f"import json, sys, {module}; print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))"
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPOSITORY,
        env={"PYTHONPATH": str(REPOSITORY), "PATH": ""},
    )
    assert json.loads(loaded.stdout) == []


def imported_modules(path: Path) -> set[str]:
    """The musicvae_lib modules ``path`` imports, by dotted name (``from musicvae_lib import x`` counts as x)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("musicvae_lib.")}


def test_no_library_module_imports_the_runner():
    # ``python -m musicvae_lib.run``: the runner's command line; ``python -m musicvae_lib.seed_spread``: the runner
    # once per seed
    entry_points = {LIBRARY / "run.py", LIBRARY / "seed_spread.py"}
    importers = sorted(
        str(path.relative_to(REPOSITORY))
        for path in LIBRARY.rglob("*.py")
        if path not in entry_points
        and path != LIBRARY / "runner.py"
        and "musicvae_lib.runner" in imported_modules(path)
    )
    assert importers == []
