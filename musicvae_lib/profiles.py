"""Profiles: which parameters each notebook of the study is passed, read from ``profiles/<name>.toml``.

A profile is a TOML file ``profiles/<name>.toml`` (next to ``notebooks/``)::

    [all]             # passed to every notebook whose parameters cell declares the key
    seed = 0
    ["01_dataset"]    # passed to 01_dataset only; a key it does not declare is an error
    max_tunes = 300

A profile of some chapters only lists them first, as ``notebooks = ["01", "03"]``. Every notebook
is also passed ``run_dir``. The runner (``runner``) executes the notebooks with these parameters;
``train_study`` reads them to train notebook 03's model from the command line. No heavy imports.
"""

from __future__ import annotations

import ast
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from musicvae_lib.run_folder import NOTEBOOK_FILE

RUN_DIR_PARAMETER = "run_dir"
ALL_TABLE = "all"
CHAPTERS_KEY = "notebooks"  # a profile's top-level list of the chapters it runs


class ConfigError(ValueError):
    """The profile, the command-line options and the notebooks' parameters cells do not fit together."""


@dataclass(frozen=True)
class Notebook:
    """A numbered notebook of the study and the parameters its cell tagged ``parameters`` declares."""

    number: str  # "01": what --only selects
    stem: str  # "01_dataset": its profile table and the name of its executed copy
    path: Path
    parameters: frozenset[str]


@dataclass(frozen=True)
class Profile:
    """A parsed profile file; ``text`` is kept verbatim for the manifest."""

    name: str
    path: Path
    text: str
    common: dict[str, Any]  # the [all] table
    tables: dict[str, dict[str, Any]]  # notebook stem -> that notebook's parameters
    numbers: tuple[str, ...] | None = None  # the profile's chapters ("01", "03"), from ``notebooks = [...]``; None: all


def declared_parameters(path: Path) -> frozenset[str]:
    """Names assigned in the notebook's cell tagged ``parameters``; empty without such a cell.

    Read with ast rather than papermill.inspect_notebook: its line parser drops every line holding a
    second "=", such as ``max_tunes = 0  # 0 = all``, and the runner would then refuse the key.
    """
    notebook = nbformat.read(path, as_version=4)
    cells = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    if not cells:
        return frozenset()
    try:
        statements = ast.parse(cells[0].source).body
    except SyntaxError as error:
        raise ConfigError(
            f"{path}: its cell tagged 'parameters' is not valid Python ({error.msg}, line {error.lineno})"
        ) from error
    names = set()
    for statement in statements:
        if isinstance(statement, ast.Assign):
            names.update(target.id for target in statement.targets if isinstance(target, ast.Name))
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            names.add(statement.target.id)
    return frozenset(names)


def find_notebooks(notebooks_dir: Path) -> list[Notebook]:
    """The notebooks ``NN_name.ipynb`` in ``notebooks_dir``, in number order."""
    paths = sorted(path for path in notebooks_dir.glob("*.ipynb") if NOTEBOOK_FILE.fullmatch(path.name))
    if not paths:
        raise ConfigError(f"no notebooks named NN_name.ipynb in {notebooks_dir}")
    notebooks = [Notebook(path.name[:2], path.stem, path, declared_parameters(path)) for path in paths]
    for first, second in zip(notebooks, notebooks[1:]):
        if first.number == second.number:
            raise ConfigError(
                f"{first.path} and {second.path} share the number {first.number}, so the run order "
                "and --only are ambiguous; renumber one of them"
            )
    return notebooks


def load_profile(path: Path, notebooks: list[Notebook]) -> Profile:
    """Read a profile and check that every key reaches a notebook.

    A misspelt key would otherwise leave the notebook on its default without a word, and the run
    would silently not be the one the profile describes.
    """
    if not path.is_file():
        known = sorted(other.stem for other in path.parent.glob("*.toml"))
        raise ConfigError(f"no profile file {path}; profiles in {path.parent}: {', '.join(known) or 'none'}")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"profile {path} is not valid TOML: {error}") from error
    numbers = profile_chapters(path, data.pop(CHAPTERS_KEY, None), notebooks)
    declared = {notebook.stem: notebook.parameters for notebook in notebooks}
    for table, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(
                f"profile {path}: top-level key {table!r} must sit in the [{ALL_TABLE}] table or in a "
                f'notebook\'s table such as ["{notebooks[0].stem}"]'
            )
        if table != ALL_TABLE and table not in declared:
            raise ConfigError(f'profile {path}: table ["{table}"] names no notebook; notebooks: {", ".join(declared)}')
        if RUN_DIR_PARAMETER in values:
            raise ConfigError(
                f"profile {path}: [{table}] sets {RUN_DIR_PARAMETER!r}, which the runner sets to the run "
                "folder; remove it"
            )
        for key in values:
            if table == ALL_TABLE and not any(key in parameters for parameters in declared.values()):
                raise ConfigError(f"profile {path}: [{ALL_TABLE}] sets {key!r}, which no notebook declares")
            if table != ALL_TABLE and key not in declared[table]:
                raise ConfigError(
                    f'profile {path}: ["{table}"] sets {key!r}, which notebook {table}.ipynb does not '
                    f"declare; it declares: {', '.join(sorted(declared[table]))}"
                )
    tables = {table: values for table, values in data.items() if table != ALL_TABLE}
    return Profile(path.stem, path, text, data.get(ALL_TABLE, {}), tables, numbers)


def profile_chapters(path: Path, listed: Any, notebooks: list[Notebook]) -> tuple[str, ...] | None:
    """The notebook numbers a profile's top-level ``notebooks = ["01", "03"]`` names (a study of some chapters only).

    Only these run and only these must have finished before a later one; None when the key is absent (every notebook).
    """
    if listed is None:
        return None
    known = {notebook.number for notebook in notebooks}
    if not isinstance(listed, list) or not listed or not all(isinstance(number, str) for number in listed):
        raise ConfigError(
            f'profile {path}: `{CHAPTERS_KEY}` must list notebook numbers such as ["01", "03"], got {listed!r}'
        )
    unknown = sorted(set(listed) - known)
    if unknown:
        raise ConfigError(f"profile {path}: `{CHAPTERS_KEY}` names {', '.join(unknown)}, no such notebook")
    return tuple(sorted(listed))


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``-p name=value``; the value is read as a TOML literal, else JSON, else kept as a string.

    So ``max_tunes=300`` passes an int, ``collections=["a","b"]`` a list, ``x=null`` None and
    ``source=/data/midi`` the string.
    """
    name, equals, raw = (part.strip() for part in text.partition("="))
    if not equals or not name.isidentifier():
        raise ConfigError(f"-p expects name=value with a Python identifier as name, got {text!r}")
    if name == RUN_DIR_PARAMETER:
        raise ConfigError(f"-p {text!r}: {RUN_DIR_PARAMETER} is the run folder; choose it with --results and --profile")
    try:
        return name, tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError:
        return name, raw


def notebook_parameters(
    notebook: Notebook, profile: Profile, overrides: dict[str, Any], run_dir: Path
) -> dict[str, Any]:
    """What ``notebook`` is passed: the [all] keys it declares, its own table, the overrides it declares, run_dir."""
    if RUN_DIR_PARAMETER not in notebook.parameters:
        raise ConfigError(
            f"{notebook.path} does not declare {RUN_DIR_PARAMETER!r} in its cell tagged 'parameters'; "
            "every notebook must, to read and write its run folder"
        )
    parameters = {key: value for key, value in profile.common.items() if key in notebook.parameters}
    parameters |= profile.tables.get(notebook.stem, {})
    parameters |= {key: value for key, value in overrides.items() if key in notebook.parameters}
    parameters[RUN_DIR_PARAMETER] = portable_path(run_dir, notebook.path.parent, notebook.path.parent.parent)
    return parameters


def portable_path(path: Path, start: Path, repo: Path) -> str:
    """``path`` relative to ``start`` when it lies in ``repo`` (so a result names no path of the machine),
    else absolute."""
    path = path.resolve()
    return os.path.relpath(path, start.resolve()) if path.is_relative_to(repo.resolve()) else str(path)
