"""The run folder: every file and folder a chapter writes or reads, by name, and "run that chapter first".

The run folder is the interface between the chapters: each notebook writes files that later ones
read. Its layout, relative to the folder (the chapter that writes each entry in brackets)::

    manifest.json, NN_name.ipynb     the runner: provenance, executed copies
    dataset/                         [01] {split}.npy windows, {split}_tunes.npy, tunes.csv, summary.json
    grid_search/                     [02] study.db (default storage), choice.json,
                                          <study>/<point>/ a training folder per grid point, with train.log
    training/                        [03] the model's training folder (below)
    training_baseline/               [03] the baseline's, with ``baseline_preset``
    prior/                           [03] mixture.npz, choice.json: the latent prior generation draws from
    generation/                      [04] generated.npz;  midi/ [04] the generated melodies as MIDI
    figures/, tables/                every chapter

The explorer (08) writes nothing here: what a user keeps goes to results/local/explore/.
A training folder holds steps.csv, epochs.csv, checkpoint.pt, model.pt and done.json (``training``).
A chapter run out of order (by hand, in JupyterLab) stops at once: ``require_outputs`` and
``CHAPTER_OUTPUTS`` name the notebook to run first, with the command that runs it. This module
imports nothing heavy (no torch), so that the runner and the report can stand on it.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shlex
from pathlib import Path
from typing import Sequence

import numpy as np

REPO_DIR = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_DIR / "notebooks"
LOCAL_RUNS = Path("local")  # under results/: a user's runs; results/<profile>/ holds the committed reference runs
NOTEBOOK_FILE = re.compile(r"\d\d_\w+\.ipynb")

MANIFEST = "manifest.json"  # the runner's record of every notebook run here

DATASET = Path("dataset")
DATASET_SUMMARY = DATASET / "summary.json"  # its dataset_hash ties every result to the data
TUNES_TABLE = DATASET / "tunes.csv"

GRID_SEARCH = Path("grid_search")
GRID_STUDY = GRID_SEARCH / "study.db"  # the default storage, SQLite
GRID_CHOICE = GRID_SEARCH / "choice.json"
POINT_LOG = "train.log"  # in a grid point's training folder: its training's lines, kept out of notebook 02

TRAINING = Path("training")
BASELINE_TRAINING = Path("training_baseline")  # the baseline model of ``baseline_preset``, beside training/
# in a training folder (``training.train``)
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
DONE_FILE = "done.json"  # its presence marks the run finished
STEPS_LOG = "steps.csv"
EPOCHS_LOG = "epochs.csv"
TRAINED_MODEL = TRAINING / MODEL_FILE

PRIOR = Path("prior")
PRIOR_MIXTURE = PRIOR / "mixture.npz"
PRIOR_CHOICE = PRIOR / "choice.json"
PRIOR_BLEND = PRIOR / "neighbours.npz"  # the neighbour blend's pairs of training windows (prior.save_study_prior)
PRIOR_CODES = PRIOR / "codes.npz"  # the training windows' posteriors, a cache a re-run re-makes (prior.training_codes)

GENERATION = Path("generation")
GENERATED = GENERATION / "generated.npz"  # the sets of notebook 04, keyed by generate.set_name(temperature)
MIDI = Path("midi")

FIGURES = Path("figures")
TABLES = Path("tables")

SPLIT_NAMES = ("train", "valid", "test")


def training_commit(done: dict) -> tuple[str | None, bool | None]:
    """The commit that trained the model of a done.json and whether its tree differed from it: ``git_commit``, dirty
    by a ``-dirty`` suffix or by ``git_dirty``; (None, None) for a done.json written before training recorded it."""
    commit = done.get("git_commit")
    if not commit:
        return None, None
    return commit.removesuffix("-dirty"), bool(done.get("git_dirty", commit.endswith("-dirty")))


def data_fingerprint(train_windows: np.ndarray, valid_windows: np.ndarray) -> str:
    """sha256 over both sets' shapes and bytes: the ``data_sha256`` a training records in done.json (a checkpoint
    only resumes on the data it was trained on), re-made by the runner from ``dataset/`` for the manifest."""
    digest = hashlib.sha256()
    for windows in (train_windows, valid_windows):
        digest.update(repr(windows.shape).encode())
        digest.update(windows.tobytes())
    return digest.hexdigest()


def split_file(name: str) -> Path:
    """``dataset/<name>.npy``: the windows of one split, uint8 [n, steps]."""
    return DATASET / f"{name}.npy"


def split_tunes_file(name: str) -> Path:
    """``dataset/<name>_tunes.npy``: the tune id of each window of one split."""
    return DATASET / f"{name}_tunes.npy"


# notebook -> the files of the run folder that later chapters read from it
CHAPTER_OUTPUTS: dict[str, tuple[Path, ...]] = {
    "01_dataset": (DATASET_SUMMARY, *(split_file(name) for name in SPLIT_NAMES)),
    "02_grid_search": (GRID_CHOICE,),
    "03_training": (TRAINED_MODEL,),
    "04_generation": (GENERATED,),
}


# notebook -> the folders it trains models into; each model's folder holds done.json once it finished (the manifest
# records, per chapter, which commit trained each and on which data)
CHAPTER_TRAININGS: dict[str, tuple[Path, ...]] = {
    "02_grid_search": (GRID_SEARCH,),
    "03_training": (TRAINING, BASELINE_TRAINING),
}


class MissingInputError(FileNotFoundError):
    """A notebook's inputs are not in its run folder: the notebook producing them has not run there."""


def default_results_dir(notebooks_dir: Path, reference: bool = False) -> Path:
    """``results/local/`` beside ``notebooks_dir`` for a user's runs, ``results/`` for the committed reference runs."""
    results = notebooks_dir.resolve().parent / "results"
    return results if reference else results / LOCAL_RUNS


def add_folder_options(parser: argparse.ArgumentParser, results_help: str, reference_help: str) -> None:
    """The ``--results``, ``--reference`` and ``--notebooks`` options every command line of run folders shares
    (``results_dir`` reads them)."""
    parser.add_argument("--results", type=Path, default=None, help=results_help)
    parser.add_argument("--reference", action="store_true", help=reference_help)
    parser.add_argument(
        "--notebooks", type=Path, default=NOTEBOOKS_DIR, help=f"notebooks folder (default: {NOTEBOOKS_DIR})"
    )


def add_parameter_option(parser: argparse.ArgumentParser, scope: str) -> None:
    """``-p NAME=VALUE`` (repeatable): a notebook parameter over the profile's, for the notebooks ``scope`` names
    (``profiles.parse_override`` reads each)."""
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"override a parameter in {scope} that declares it; VALUE is read as TOML or JSON, else taken as a string",
    )


def results_dir(args: argparse.Namespace) -> Path:
    """The folder of run folders ``add_folder_options``' options name: ``--results``, else ``default_results_dir``."""
    return args.results if args.results is not None else default_results_dir(args.notebooks, args.reference)


def runner_command(
    profile: str, numbers: list[str], notebooks_dir: Path = NOTEBOOKS_DIR, results_dir: Path | None = None
) -> str:
    """The shell command (from the repository's root) that runs notebooks ``numbers``,
    options only where not default."""
    words = ["./study.sh", "--profile", profile, "--only", ",".join(numbers)]
    if notebooks_dir.resolve() != NOTEBOOKS_DIR:
        words += ["--notebooks", str(notebooks_dir)]
    if results_dir is not None and results_dir.resolve() == default_results_dir(notebooks_dir, reference=True):
        words += ["--reference"]
    elif results_dir is not None and results_dir.resolve() != default_results_dir(notebooks_dir):
        words += ["--results", str(results_dir)]
    return shlex.join(words)


def require_outputs(run_dir: str | Path, paths: Sequence[str | Path], produced_by: str) -> None:
    """Stop a notebook run out of order (by hand, in JupyterLab) with a message naming the notebook to run first.

    ``paths`` are relative to ``run_dir``; ``produced_by`` names the notebook that writes them, as
    "01_dataset", "01_dataset.ipynb" or "notebooks/01_dataset.ipynb". MissingInputError names the
    missing files and the command that runs that notebook.
    """
    stem = Path(produced_by).stem
    if not NOTEBOOK_FILE.fullmatch(f"{stem}.ipynb"):
        raise ValueError(f"`produced_by` must name a notebook such as '01_dataset', got {produced_by!r}")
    run_dir = Path(run_dir).resolve()
    missing = [str(path) for path in paths if not (run_dir / path).exists()]
    if missing:
        raise MissingInputError(
            f"missing in the run folder {run_dir}: {', '.join(missing)}.\n"
            f"They are written by notebooks/{stem}.ipynb; run it first:\n"
            f"  {runner_command(run_dir.name, [stem[:2]], results_dir=run_dir.parent)}"
        )


def require_chapters(run_dir: str | Path, needs: Sequence[str]) -> None:
    """``require_outputs`` for the ``CHAPTER_OUTPUTS`` of each notebook in ``needs`` ("01_dataset", ...),
    earliest first.

    ValueError for a name that is not a key of ``CHAPTER_OUTPUTS``.
    """
    unknown = [name for name in needs if name not in CHAPTER_OUTPUTS]
    if unknown:
        raise ValueError(f"`needs` must name notebooks among {list(CHAPTER_OUTPUTS)}, got {unknown}")
    for notebook in sorted(needs):
        require_outputs(run_dir, CHAPTER_OUTPUTS[notebook], produced_by=notebook)
