"""Run the study's notebooks in number order with papermill, and record where every result came from.

``./study.sh --profile quick`` (``.venv/bin/python -m musicvae_lib.run --profile quick``) executes
``notebooks/NN_name.ipynb`` in number order into the run folder ``results/local/quick/``: a user's
runs stay apart from the committed reference runs ``results/<profile>/``, which only
``--reference`` re-makes. Each executed copy is saved there as ``NN_name.ipynb``, and
``manifest.json`` records, after each notebook, the parameters it was passed, when it ran, the git
commit, the interpreter, CPU and package versions, both data hashes (``HASH_DEFINITIONS``), which commit
trained each model a training chapter left in the run folder, and every file it wrote (size and sha256).

A profile is a TOML file ``profiles/<name>.toml`` (next to ``notebooks/``)::

    [all]             # passed to every notebook whose parameters cell declares the key
    seed = 0
    ["01_dataset"]    # passed to 01_dataset only; a key it does not declare is an error
    max_tunes = 300

A profile of some chapters only lists them first, as ``notebooks = ["01", "03"]``: only these
run, and only these must have finished before a later one.

Every notebook is also passed ``run_dir``, the run folder relative to ``notebooks/`` (where papermill
runs it) when it lies inside the repository, so executed copies name no path of the machine.
Executed copies are tidied for reading: each cell's progress bars are kept at their last state and
its stream outputs merged, and papermill's record of the input and output paths is made relative.

A notebook whose manifest status is "ok" is not run again without ``--force``. Running one marks
the later notebooks' entries "stale", since they were computed from its previous outputs; a
notebook interrupted mid-run stays "running". Neither counts as finished.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import papermill
from papermill.exceptions import PapermillExecutionError

from musicvae_lib.console import terminal_text
from musicvae_lib.profiles import (
    ConfigError,
    Notebook,
    find_notebooks,
    load_profile,
    notebook_parameters,
    parse_override,
    portable_path,
)
from musicvae_lib.run_folder import (
    CHAPTER_TRAININGS,
    DATASET_SUMMARY,
    DONE_FILE,
    MANIFEST,
    NOTEBOOKS_DIR,
    REPO_DIR,
    add_folder_options,
    add_parameter_option,
    data_fingerprint,
    default_results_dir,
    runner_command,
    split_file,
    training_commit,
)
from musicvae_lib.storage_url import mask_url, split_password, storage_url

KERNEL_NAME = "python3"
# Distributions whose versions can change a number or a figure of the study (names as pip knows them).
PACKAGES = (
    "torch",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "threadpoolctl",
    "matplotlib",
    "seaborn",
    "music21",
    "pretty_midi",
    "mido",
    "verovio",
    "soundfile",
    "tinysoundfont",
    "optuna",
    "tqdm",
    "papermill",
    "nbformat",
    "ipykernel",
    "ipywidgets",
    "onnx",
    "onnxruntime",
    "musicvae-notebooks",
)
# The two data hashes a manifest records, and why they differ: each answers its own question, and a trained model's
# data_sha256 is checked against the second (``training_data_hash``), which the run folder's dataset re-makes.
HASH_DEFINITIONS = {
    "dataset_hash": "sha256 over the split names and window bytes of train, valid and test (data.dataset_hash, "
    "written by 01_dataset to dataset/summary.json): the whole dataset, the held-out test split included",
    "training_data_sha256": "sha256 over the shapes and bytes of the train and valid windows only "
    "(run_folder.data_fingerprint, re-made from dataset/train.npy and valid.npy): what a training run sees, the "
    "data_sha256 in each done.json, checked before a checkpoint resumes or a finished model is re-used",
}
NOT_RECORDED = "not recorded (done.json predates it)"
# The kernel warns on every start that its local TCP sockets are unencrypted; papermill talks to it on this machine
# only.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


class RunOrderError(RuntimeError):
    """A selected notebook needs an earlier one that has not finished in this run folder."""


def select(notebooks: list[Notebook], only: list[str]) -> list[Notebook]:
    """The notebooks ``--only`` names ("3", "03", or comma lists of them); all when it names none."""
    numbers = {part.strip() for value in only for part in value.split(",") if part.strip()}
    if not numbers:
        return notebooks
    if not all(number.isdigit() and len(number) <= 2 for number in numbers):
        raise ConfigError(f"--only takes notebook numbers such as 03, got {', '.join(sorted(numbers))}")
    wanted = {f"{int(number):02d}" for number in numbers}
    unknown = wanted - {notebook.number for notebook in notebooks}
    if unknown:
        raise ConfigError(
            f"--only {', '.join(sorted(unknown))}: no such notebook; notebooks: "
            f"{', '.join(notebook.stem for notebook in notebooks)}"
        )
    return [notebook for notebook in notebooks if notebook.number in wanted]


def check_order(
    notebooks: list[Notebook],
    selected: list[Notebook],
    entries: dict[str, dict],
    profile: str,
    notebooks_dir: Path,
    results_dir: Path,
) -> None:
    """Refuse, before anything runs, a selection that skips earlier notebooks not finished in the run folder.

    Selected notebooks need no earlier status: they run in number order and a failure stops the run.
    """
    unfinished = [
        notebook
        for notebook in notebooks
        if notebook.number < selected[-1].number
        and notebook not in selected
        and entries.get(notebook.stem, {}).get("status") != "ok"
    ]
    if unfinished:
        states = ", ".join(
            f"{notebook.stem} ({entries.get(notebook.stem, {}).get('status', 'never run')})" for notebook in unfinished
        )
        command = runner_command(profile, [notebook.number for notebook in unfinished], notebooks_dir, results_dir)
        raise RunOrderError(
            f"{', '.join(notebook.stem for notebook in selected)}: every earlier notebook must have finished ok "
            f"in {results_dir / profile}, and these have not: {states}.\n"
            f"Run {unfinished[0].path} first:\n  {command}"
        )


def git_state(directory: Path, ignored: Path) -> dict[str, Any]:
    """Commit of the checkout holding ``directory`` and whether its files differ from it; None outside git.

    Changes under ``ignored`` (the results folder, which the run itself fills) do not make it dirty.
    """

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True)

    top = git("rev-parse", "--show-toplevel")
    if top.returncode != 0:
        return {"git_commit": None, "git_dirty": None}
    top_dir = Path(top.stdout.strip())
    ignored = ignored.resolve()
    exclude = [f":(top,exclude){ignored.relative_to(top_dir).as_posix()}"] if ignored.is_relative_to(top_dir) else []
    status = git("status", "--porcelain", "--untracked-files=all", "--", *exclude)
    head = git("rev-parse", "--verify", "--quiet", "HEAD")  # fails in a repository with no commit yet
    return {"git_commit": head.stdout.strip() or None, "git_dirty": bool(status.stdout.strip())}


def cpu_name() -> str:
    """The processor's model name and core count (figures are measured on it), or the platform's machine type."""
    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) if cpuinfo.is_file() else []
    return f"{names[0].strip() if names else platform.machine()}, {os.cpu_count()} cores"


def package_versions() -> dict[str, str | None]:
    """Installed version of each of ``PACKAGES``; None where one is not installed."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def file_states(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Modification time (ns) and size of every file under ``run_dir``, by path relative to it."""
    states = {}
    for path in run_dir.rglob("*"):
        if path.is_file():
            stat = path.stat()
            states[path.relative_to(run_dir).as_posix()] = (stat.st_mtime_ns, stat.st_size)
    return states


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks since checkpoints and caches can be large."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_hash(run_dir: Path) -> str | None:
    """The ``dataset_hash`` of ``dataset/summary.json`` in the run folder; None before 01_dataset wrote it."""
    path = run_dir / DATASET_SUMMARY
    return json.loads(path.read_text(encoding="utf-8")).get("dataset_hash") if path.is_file() else None


def training_data_hash(run_dir: Path) -> str | None:
    """``run_folder.data_fingerprint`` of the run folder's train and valid windows: the ``data_sha256`` a model trained
    on them records in done.json; None before 01_dataset wrote them."""
    paths = [run_dir / split_file(name) for name in ("train", "valid")]
    if not all(path.is_file() for path in paths):
        return None
    # as the trainer holds them (``Trainer.__init__``): contiguous uint8
    train, valid = (np.ascontiguousarray(np.load(path, allow_pickle=False), dtype=np.uint8) for path in paths)
    return data_fingerprint(train, valid)


def trained_model(done: dict[str, Any], data_sha256: str | None) -> dict[str, Any]:
    """Which commit trained the model of a ``done.json`` and whether it saw ``data_sha256`` (this run folder's data).

    ``trained_at_commit`` and ``trained_dirty`` are ``run_folder.training_commit``'s (the last session's); a
    done.json written before training recorded its commit gives None and says so in ``trained_at_commit_note``.
    A run resumed under another commit also lists every session's commit and first step (``trained_in_sessions``).
    ``same_data_as_dataset`` is None when either hash is unknown.
    """
    commit, dirty = training_commit(done)
    trained_on = done.get("identity", {}).get("data_sha256")
    record: dict[str, Any] = {"trained_at_commit": commit, "trained_dirty": dirty}
    if not commit:
        record["trained_at_commit_note"] = NOT_RECORDED
    sessions = done.get("session_commits") or []
    if len({session.get("git_commit") for session in sessions}) > 1:  # resumed under other code
        record["trained_in_sessions"] = sessions
    return record | {
        "data_sha256": trained_on,
        "same_data_as_dataset": trained_on == data_sha256 if trained_on and data_sha256 else None,
    }


def trained_models(run_dir: Path, stem: str, data_sha256: str | None) -> dict[str, dict[str, Any]]:
    """``trained_model`` for every finished model under the training folders of notebook ``stem``
    (``CHAPTER_TRAININGS``), by folder relative to ``run_dir``; empty for a chapter that trains none."""
    folders = CHAPTER_TRAININGS.get(stem, ())
    found = sorted(path for folder in folders for path in (run_dir / folder).rglob(DONE_FILE))
    return {
        path.parent.relative_to(run_dir).as_posix(): trained_model(json.loads(path.read_text()), data_sha256)
        for path in found
    }


def execution_environment() -> dict[str, Any]:
    """The interpreter, machine and package versions a notebook runs with, as its manifest entry records them."""
    return {"python": sys.version, "platform": platform.platform(), "cpu": cpu_name(), "packages": package_versions()}


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run folder's manifest, or an empty one for a new run folder."""
    path = run_dir / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"notebooks": {}}


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest through a temporary file so an interrupted run never leaves half a manifest."""
    temporary = run_dir / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, run_dir / MANIFEST)


def merged_streams(outputs: list) -> list:
    """``outputs`` with the stdout (and the stderr) outputs between two displays merged into one each.

    The kernel sends each stream in chunks, interleaved at random; a reader wants one block of text
    per stream as a terminal would show it, in its place among the figures and tables.
    """
    merged: list = []
    open_streams: dict[str, Any] = {}  # stream name -> its output since the last display
    for output in outputs:
        if output.output_type != "stream":
            open_streams = {}
            merged.append(output)
        elif output.name in open_streams:
            open_streams[output.name].text += output.text
        else:
            open_streams[output.name] = output
            merged.append(output)
    for output in merged:
        if output.output_type == "stream":
            output.text = terminal_text(output.text)
    return [output for output in merged if output.output_type != "stream" or output.text.strip()]


def tidy_executed(path: Path, repo_dir: Path = REPO_DIR) -> None:
    """Make an executed copy fit to read and to commit: streams merged at their last state,
    papermill's paths relative."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = merged_streams(cell.outputs)
    record = notebook.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if record.get(key):
            record[key] = portable_path(Path(record[key]), repo_dir, repo_dir)
    nbformat.write(notebook, path)


def describe_failure(error: Exception) -> str:
    """One line for the manifest and stderr, any URL's password masked; the full traceback
    stays in the executed copy."""
    if isinstance(error, PapermillExecutionError):
        return mask_url(f"{error.ename}: {error.evalue} (cell In [{error.exec_count}])")
    return mask_url(f"{type(error).__name__}: {error}")


def passwords_out(parameters: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``parameters`` with the password of every PostgreSQL URL taken out, and the kernel's environment that carries it.

    Papermill writes the values it injects into the executed copy, and the manifest records them: a password
    there would be committed with a reference run. libpq reads it from PGPASSWORD instead (as from ~/.pgpass).
    ConfigError for the password of another kind of database, or for two different passwords.
    """
    kept, passwords = {}, set()
    for name, value in parameters.items():
        if isinstance(value, str) and "://" in value and (split := split_password(storage_url(value)))[1] is not None:
            if not split[0].startswith("postgresql"):
                raise ConfigError(
                    f"{name} = {mask_url(value)!r}: only a PostgreSQL password can be kept out of the executed "
                    "notebook (in PGPASSWORD); give this database's password in its driver's own configuration"
                )
            kept[name], _ = split
            passwords.add(split[1])
        else:
            kept[name] = value
    if len(passwords) > 1:
        raise ConfigError(
            f"two different database passwords in the parameters {sorted(parameters)}: PGPASSWORD holds one"
        )
    return kept, {"PGPASSWORD": passwords.pop()} if passwords else {}


@contextlib.contextmanager
def kernel_environment(variables: dict[str, str]) -> Iterator[None]:
    """``variables`` in this process's environment, which papermill's kernel inherits, until the block ends."""
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def execute(
    notebook: Notebook,
    parameters: dict[str, Any],
    run_dir: Path,
    manifest: dict[str, Any],
    git: dict[str, Any],
    environment: dict[str, str] | None = None,
    machine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one notebook into ``run_dir`` with ``environment`` added to its kernel's and return its manifest entry
    (also stored in ``manifest``).

    The entry records the commit it ran at (``git``), the interpreter, machine and package versions
    (``machine``, default ``execution_environment()``), both data hashes and, for a chapter that trains, which
    commit trained each of its models (``trained_models``): a chapter re-executed later on another machine, or
    one that re-used a model trained at another commit, says so.

    Before it runs, its entry says "running" and later notebooks' "ok" entries become "stale", both
    written to disk, so an interrupted or forced re-run never leaves outdated results marked finished.
    """
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    executed = run_dir / notebook.path.name
    entries = manifest["notebooks"]
    for stem, entry in entries.items():
        if stem[:2] > notebook.number and entry["status"] == "ok":
            entry |= {"status": "stale", "stale_because": f"{notebook.stem} ran again at {started}"}
    entries[notebook.stem] = {"status": "running", "started": started, "parameters": parameters}
    write_manifest(run_dir, manifest)
    before = file_states(run_dir)
    clock = time.perf_counter()
    error = None
    try:
        with kernel_environment(environment or {}):
            papermill.execute_notebook(
                notebook.path,
                executed,
                parameters=parameters,
                kernel_name=KERNEL_NAME,
                cwd=notebook.path.parent,
                extra_arguments=KERNEL_ARGUMENTS,
            )
    except Exception as failure:  # any failure, in a cell or of the kernel, is recorded and stops the run
        error = describe_failure(failure)
    duration_s = time.perf_counter() - clock
    if executed.is_file():
        tidy_executed(executed, notebook.path.parent.parent)
    after = file_states(run_dir)
    data_sha256 = training_data_hash(run_dir)
    trains = notebook.stem in CHAPTER_TRAININGS
    written = sorted(path for path, state in after.items() if before.get(path) != state and path != executed.name)
    entries[notebook.stem] = {
        "notebook": notebook.path.relative_to(notebook.path.parent.parent).as_posix(),
        "executed": executed.name,
        "executed_sha256": sha256(executed) if executed.is_file() else None,
        "parameters": parameters,
        "seed": parameters.get("seed"),
        "started": started,
        "duration_s": round(duration_s, 3),
        "status": "failed" if error else "ok",
        "error": error,
        **git,
        "environment": machine or execution_environment(),
        "dataset_hash": dataset_hash(run_dir),
        "training_data_sha256": data_sha256,
        **({"trained_models": trained_models(run_dir, notebook.stem, data_sha256)} if trains else {}),
        "files": [{"path": path, "size_bytes": after[path][1], "sha256": sha256(run_dir / path)} for path in written],
    }
    write_manifest(run_dir, manifest)
    return entries[notebook.stem]


def run(
    profile_name: str,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    results_dir: Path | None = None,
    only: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    reference: bool = False,
    run_name: str | None = None,
) -> bool:
    """Run the selected notebooks of a profile in number order into ``results_dir/<profile>``
    (``results_dir/<run_name>`` when given: the seed spread's ``seed=K`` folders).

    ``results_dir`` defaults to ``results/local/`` (a user's runs), or to ``results/`` with
    ``reference`` (re-making a committed reference run is a deliberate act).
    Returns False when a notebook failed (the run stops there); raises ConfigError or RunOrderError,
    before anything runs, when the profile, the options or the run folder's state do not allow the run.
    """
    notebooks_dir = notebooks_dir.resolve()
    if reference and results_dir is not None:
        raise ConfigError("--reference writes results/<profile>/; it cannot be combined with --results")
    results_dir = (results_dir or default_results_dir(notebooks_dir, reference)).resolve()
    repo_dir = notebooks_dir.parent
    notebooks = find_notebooks(notebooks_dir)
    profile = load_profile(notebooks_dir.parent / "profiles" / f"{profile_name}.toml", notebooks)
    if profile.numbers is not None:
        notebooks = [notebook for notebook in notebooks if notebook.number in profile.numbers]
    selected = select(notebooks, only or [])
    overrides = overrides or {}
    for name in overrides:
        if not any(name in notebook.parameters for notebook in selected):
            raise ConfigError(
                f"-p {name}=...: no selected notebook declares {name!r} "
                f"(selected: {', '.join(notebook.stem for notebook in selected)})"
            )
    run_dir = results_dir / (run_name or profile.name)
    # a database password goes to the kernel's environment, never into the executed copy or the manifest
    prepared = {
        notebook.stem: passwords_out(notebook_parameters(notebook, profile, overrides, run_dir))
        for notebook in selected
    }
    entries = read_manifest(run_dir)["notebooks"]
    check_order(notebooks, selected, entries, profile.name, notebooks_dir, results_dir)

    run_dir.mkdir(parents=True, exist_ok=True)
    for notebook in selected:
        entry = entries.get(notebook.stem, {})
        if entry.get("status") == "ok" and not force:
            print(
                f"skip {notebook.stem}: finished ok at {entry['started']} ({shown(run_dir / MANIFEST)}); "
                "pass --force to run it again",
                flush=True,
            )
            continue
        print(f"run {notebook.stem} -> {shown(run_dir / notebook.path.name)}", flush=True)  # before papermill's bar
        git = git_state(notebooks_dir, results_dir)
        machine = execution_environment()
        manifest = {
            "profile": profile.name,
            "profile_file": portable_path(profile.path, repo_dir, repo_dir),
            "profile_toml": mask_url(profile.text),
            "run_dir": portable_path(run_dir, repo_dir, repo_dir),
            **git,
            **machine,  # the latest notebook's; each entry keeps its own
            "hash_definitions": HASH_DEFINITIONS,
            "notebooks": entries,
        }
        parameters, environment = prepared[notebook.stem]
        entry = execute(notebook, parameters, run_dir, manifest, git, environment, machine)
        if entry["status"] == "failed":
            print(
                f"{notebook.stem} failed: {entry['error']}\n"
                f"executed copy with the error: {shown(run_dir / entry['executed'])}\n"
                "stopped: later notebooks depend on it",
                file=sys.stderr,
            )
            return False
    print(f"done: the executed notebooks, figures, tables and manifest.json are in {shown(run_dir)}/", flush=True)
    return True


def shown(path: Path) -> str:
    """``path`` as a user types it from where they are: relative to the working folder when inside it."""
    path, here = path.resolve(), Path.cwd().resolve()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)


def command_line() -> argparse.ArgumentParser:
    """The options of ``./study.sh`` (``python -m musicvae_lib.run``)."""
    parser = argparse.ArgumentParser(
        prog="./study.sh", description="Run the study's notebooks in number order with papermill."
    )
    parser.add_argument(
        "--profile",
        required=True,
        help="profiles/<PROFILE>.toml; results go to results/local/<PROFILE>/ (see --reference)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NN",
        help="run only these notebooks (repeatable, or a comma list: --only 03,04)",
    )
    add_parameter_option(parser, "every selected notebook")
    parser.add_argument("--force", action="store_true", help="run again notebooks that already finished ok")
    add_folder_options(
        parser,
        "results folder (default: results/local/ next to the notebooks folder)",
        "write the committed reference run results/<PROFILE>/ instead (maintainers)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line of ``./study.sh`` (``python -m musicvae_lib.run``); exit status 0 ok, 1 a notebook failed,
    2 refused."""
    args = command_line().parse_args(argv)
    try:
        overrides = dict(parse_override(text) for text in args.param)
        finished = run(args.profile, args.notebooks, args.results, args.only, overrides, args.force, args.reference)
    except (ConfigError, RunOrderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if finished else 1
