"""The grid search over beta and lambda (notebook 02) and the choice it hands to training (notebook 03).

The thesis searched beta and lambda (``LossConfig.beta``, ``LossConfig.free_nats``) on a grid. Here
each grid point is one Optuna trial, chosen by Optuna's ``GridSampler``: a short training with
early stopping (``GridSpec.train_config``), then ``evaluate.evaluate`` on a seeded sample of the
validation windows. The trial's value is the validation negative ELBO, reconstruction + KL in
nats per window: unlike the training loss it does not depend on beta or lambda, so points compare.
Notebook 02::

    spec = search.GridSpec(model_config=preset("study", steps=...), train_config=TrainConfig(max_minutes=10))
    table = search.run_grid_search(run_dir, spec, data.load_split(run_dir, "train"), data.load_split(run_dir, "valid"))
    choice = search.choose(table, margin=0.01)          # the documented rule, below
    search.write_choice(run_dir, **choice)               # notebook 03 trains with it
    search.contrasting_points(table, choice)             # two other grid models for notebook 07

Files, under ``<run_dir>/grid_search/``:

- ``study.db``: the Optuna study (SQLite), unless another ``storage`` is given;
- ``<study_name>/beta=<b>_lambda=<l>/``: one folder per grid POINT (not per trial), holding what
  ``train.train`` writes (model.pt stays: notebook 07 compares grid models) and ``train.log``,
  the training's progress lines;
- ``choice.json``: the chosen beta and lambda (``write_choice``), which notebook 03 reads.

Resuming. Run the search again with the same arguments and it goes on: finished points are never
trained again (their trials are COMPLETE; their folders hold done.json, which ``train_or_load``
reuses), and a point whose trial did not finish is trained again from its folder's last
checkpoint. A trial killed with its process stays RUNNING in storage; before each trial a worker
fails such stale trials and queues their points again, as a WAITING trial carrying GridSampler's
``grid_id`` (what Optuna's ``RetryHeartbeatStaleTrialCallback`` does). A RUNNING trial is stale
when the worker it records (host, pid, process start time) ran on this machine and is gone, or,
with an RDB storage, when its heartbeat (every ``HEARTBEAT_SECONDS``) is older than
``GRACE_SECONDS`` (a worker killed in the milliseconds between creating its trial and recording
itself is found by the heartbeat only). A trial that raised (or was interrupted) is FAIL; a later search runs its
point again. GridSampler alone would not: in optuna 5.0 it counts FAIL points as visited
(``TrialState.is_finished``), and once every point was visited it re-evaluates a random one.

Several workers on one study. Every worker opens the same storage and reads the study's settings
from it; the run folder must be one shared folder, since each point's model is written there.
GridSampler gives trial number k < grid size the k-th point of its seeded shuffle, so workers start on
distinct points; afterwards a worker skips (prunes) a trial whose point is COMPLETE or RUNNING
under a lower trial number, and a file lock keeps two processes of one machine out of one
point's folder. Start notebook 02 (or ``run_grid_search``) with the shared ``storage`` on one
machine, which creates the study, then on every other machine::

    python -m musicvae_lib.search --run-dir /shared/results/default \\
        --storage postgresql://user:password@db-host/musicvae       # any SQLAlchemy URL: heartbeats on
    python -m musicvae_lib.search --run-dir /shared/results/default \\
        --storage /shared/results/default/grid_search/study.log     # a path: an Optuna journal file

A URL opens ``optuna.storages.RDBStorage`` with heartbeats; a path opens a journal file
(``optuna.storages.journal.JournalFileBackend``, the file-system storage Optuna recommends for
several processes; it has no heartbeat in optuna 5.0, so a point whose worker died on ANOTHER
machine is run again only when a worker starts on that machine). Several processes of one
machine also share the default SQLite file, but SQLite may then answer "database is locked":
prefer a journal file there. With no ``--storage`` the command continues the run folder's own
search (``grid_search/study.db``) outside Jupyter.

Choice (``choose``): among completed points whose sampling accuracy (Magenta's eval: z ~ q(z|x),
fed its own samples at temperature 1, each step's argmax scored) lies within ``margin`` of the
best, the point with the lowest validation negative ELBO; ties go to the higher sampling
accuracy, then the smaller beta, then the smaller lambda.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import socket
import sys
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

with warnings.catch_warnings():  # optuna imports tqdm.auto, which warns in Jupyter without ipywidgets
    warnings.filterwarnings("ignore", message="IProgress not found")
    import optuna
    from optuna.trial import FrozenTrial, TrialState

from musicvae_lib import data
from musicvae_lib.evaluate import Reconstruction, evaluate
from musicvae_lib.loss import NATS_PER_BIT, LossConfig
from musicvae_lib.model import ModelConfig, preset
from musicvae_lib.train import DONE_FILE, TrainConfig, data_fingerprint, train_or_load

SEARCH_FOLDER = Path("grid_search")
CHOICE_FILE = SEARCH_FOLDER / "choice.json"
STUDY_FILE = "study.db"  # the default storage, SQLite
STUDY_NAME = "beta_lambda"
TRAIN_LOG = "train.log"  # train's progress lines and bars, kept out of the notebook
LOCK_FILE = ".point.lock"

HEARTBEAT_SECONDS = 60  # RDB storages: a running trial records a heartbeat this often ...
GRACE_SECONDS = 180  # ... and is failed as stale when its last one is older than this

SPEC_ATTR = "grid_spec"  # study user attribute: the settings every worker must share
WORKER_ATTR = "worker"  # trial user attribute: the process running it
UNSTARTED = "NOT_STARTED"  # results_table's state of a point without a trial

# None (the run folder's SQLite file), an SQLAlchemy URL, a journal file path, or an Optuna storage
StorageArg = str | os.PathLike | optuna.storages.BaseStorage | None

SELECTION_RULE = (
    "among completed grid points whose sampling accuracy (Magenta's eval) is within {margin:g} of the best, "
    "the lowest validation negative ELBO (reconstruction + KL, nats per window); ties: higher sampling "
    "accuracy, then smaller beta, then smaller lambda"
)
# results_table's metric columns, filled from a COMPLETE trial's user attributes
METRIC_COLUMNS = (
    "negative_elbo_nats",  # reconstruction + KL, nats per window: the trial's value
    "reconstruction_nats",  # teacher-forced cross-entropy summed over steps, z ~ q(z|x), nats per window
    "kl_bits",  # KL(q(z|x) || N(0, I)) summed over dimensions, bits per window
    "teacher_forced_accuracy",  # z = mu, true previous tokens; share of steps
    "sampling_accuracy",  # Magenta's eval, the paper's Table 1: z ~ q, own T = 1 samples, argmax scored
    "greedy_accuracy",  # z = mu, own argmax tokens fed back
    "active_dimensions",  # latent dimensions whose mean KL exceeds 0.01 bits (not Burda's Var(mu) count)
    "epochs",
    "best_epoch",
    "steps",
    "minutes",  # training time summed over sessions
    "stopped",  # early_stopping, max_epochs or max_minutes
    "eval_windows",
)


@dataclass(frozen=True)
class GridSpec:
    """What the grid search trains and how it scores a point. Defaults: the issue's grid, short trials."""

    betas: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)  # around the thesis' beta = 1
    free_nats: tuple[float, ...] = (0.0, 16.0, 33.3, 64.0)  # lambda, nats off the TOTAL KL; thesis: 33.3 (48 bits)
    kl_form: str = "thesis"  # LossConfig.form: beta * max(KL, lambda)
    model_config: ModelConfig = field(default_factory=lambda: preset("study"))
    # short trials: 16 points of at most 10 minutes, early stopping sooner than the thesis' 5 epochs
    train_config: TrainConfig = TrainConfig(max_minutes=10.0, early_stopping_patience=3)
    eval_windows: int = 1000  # validation windows each point is evaluated on: a seeded sample, all if fewer
    seed: int = 0  # GridSampler's order, the evaluation sample and its draws; training has train_config.seed

    def __post_init__(self) -> None:
        for name in ("betas", "free_nats"):
            values = tuple(sorted(float(value) for value in getattr(self, name)))
            if not values or len(set(values)) < len(values) or min(values) < 0:
                raise ValueError(f"`{name}` must be distinct values >= 0, at least one, got {getattr(self, name)!r}")
            object.__setattr__(self, name, values)  # sorted: the same grid in any order is the same study
        LossConfig(form=self.kl_form)  # ValueError for an unknown form
        if self.eval_windows < 1:
            raise ValueError(f"`eval_windows` must be >= 1, got {self.eval_windows}")
        names = [point_name(beta, free_nats) for beta, free_nats in self.points]
        if len(set(names)) < len(names):
            raise ValueError(f"grid values too close to tell apart in folder names: {sorted(names)}")

    @property
    def points(self) -> list[tuple[float, float]]:
        """(beta, free_nats) of every grid point, by beta then lambda."""
        return [(beta, free_nats) for beta in self.betas for free_nats in self.free_nats]

    def search_space(self) -> dict[str, list[float]]:
        """GridSampler's search space: parameter name -> values."""
        return {"beta": list(self.betas), "free_nats": list(self.free_nats)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what the study stores, so every worker trains with the same settings."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GridSpec:
        """The inverse of ``to_dict``."""
        known = {spec_field.name for spec_field in fields(cls)}
        return cls(
            **{name: value for name, value in values.items() if name in known}
            | {
                "model_config": ModelConfig(**values["model_config"]),
                "train_config": TrainConfig(**values["train_config"]),
            }
        )


# ---------------------------------------------------------------------------------------------
# The choice notebook 03 reads


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


# ---------------------------------------------------------------------------------------------
# Storage and study


def point_name(beta: float, free_nats: float) -> str:
    """The folder name of a grid point: ``beta=0.5_lambda=33.3``."""
    return f"beta={beta:g}_lambda={free_nats:g}"


def point_folder(run_dir: str | os.PathLike, beta: float, free_nats: float, study_name: str = STUDY_NAME) -> Path:
    """Where the grid point (beta, free_nats) of study ``study_name`` trains: ``<run_dir>/grid_search/<study>/<point>``."""
    return Path(run_dir) / SEARCH_FOLDER / study_name / point_name(beta, free_nats)


def storage_file(run_dir: str | os.PathLike, storage: StorageArg) -> Path | None:
    """The file a storage lives in: the run folder's SQLite file (None), a journal file (a path); None for the others."""
    if storage is None:
        return Path(run_dir) / SEARCH_FOLDER / STUDY_FILE
    if isinstance(storage, (str, os.PathLike)) and "://" not in str(storage):
        return Path(storage)
    return None


def open_storage(run_dir: str | os.PathLike, storage: StorageArg) -> optuna.storages.BaseStorage:
    """The Optuna storage of ``storage`` (see StorageArg); SQLite and other URLs open an RDBStorage with heartbeats."""
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    file = storage_file(run_dir, storage)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
    if storage is None:
        storage = f"sqlite:///{file.resolve()}"
    if "://" in str(storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
            return optuna.storages.RDBStorage(str(storage), heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(file)))


def check_study_name(study_name: str) -> None:
    if not re.fullmatch(r"[\w.-]+", study_name):
        raise ValueError(f"`study_name` names a folder: letters, digits, '_', '.', '-' only, got {study_name!r}")


@contextlib.contextmanager
def optuna_warnings_only() -> Iterator[None]:
    """Optuna's per-trial INFO lines off while the search runs (the search prints its own)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def spec_clashes(stored: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """'name: X in the study, Y here' for every setting that differs, nested dicts flattened."""
    clashes = []
    for name in sorted(stored.keys() | wanted.keys()):
        there, here = stored.get(name), wanted.get(name)
        if isinstance(there, dict) and isinstance(here, dict):
            clashes += spec_clashes(there, here, f"{prefix}{name}.")
        elif there != here:
            clashes.append(f"{prefix}{name}: {there!r} in the study, {here!r} here")
    return clashes


def open_study(
    run_dir: str | os.PathLike,
    spec: GridSpec,
    data_sha256: str,
    storage: StorageArg = None,
    study_name: str = STUDY_NAME,
) -> optuna.Study:
    """Create the grid study, or load it after checking it was created with ``spec`` and the same data."""
    check_study_name(study_name)
    wanted = spec.to_dict() | {"data_sha256": data_sha256}
    with optuna_warnings_only():
        study = optuna.create_study(
            storage=open_storage(run_dir, storage),
            study_name=study_name,
            sampler=optuna.samplers.GridSampler(spec.search_space(), seed=spec.seed),
            direction="minimize",
            load_if_exists=True,
        )
    if SPEC_ATTR not in study.user_attrs:
        study.set_user_attr(SPEC_ATTR, wanted)
    clashes = spec_clashes(study.user_attrs[SPEC_ATTR], wanted)
    if clashes:
        raise ValueError(
            f"study {study_name!r} was created with other settings ({'; '.join(clashes)}). Pass the study's "
            "settings to join it, another `study_name` to start a new one, or delete its storage to start over"
        )
    return study


def load_study(
    run_dir: str | os.PathLike,
    storage: StorageArg = None,
    study_name: str = STUDY_NAME,
) -> tuple[optuna.Study, GridSpec]:
    """An existing grid study and its settings; ValueError naming notebook 02 when there is none."""
    check_study_name(study_name)
    file = storage_file(run_dir, storage)
    missing = (
        f"no grid study {study_name!r} in {file or storage}: run notebooks/02_grid_search.ipynb "
        "(or search.run_grid_search) first; it creates the study"
    )
    if file is not None and not file.exists():  # opening would create it
        raise ValueError(missing)
    opened = open_storage(run_dir, storage)
    try:
        with optuna_warnings_only():
            study = optuna.load_study(study_name=study_name, storage=opened)
        spec = GridSpec.from_dict(study.user_attrs[SPEC_ATTR])
    except KeyError as error:
        raise ValueError(missing) from error
    study.sampler = optuna.samplers.GridSampler(spec.search_space(), seed=spec.seed)
    return study, spec


# ---------------------------------------------------------------------------------------------
# Workers and stale trials


def process_start_ticks(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks after boot (Linux /proc), None where unknown or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    after_name = stat.rsplit(")", 1)[1].split()  # fields 3.. of proc(5); the name may hold spaces
    return None if after_name[0] in ("Z", "X") else int(after_name[19])  # field 22: starttime


def worker_record(trial_number: int) -> dict[str, Any]:
    """Who runs trial ``trial_number``: host, pid and the process' start time (against pid reuse)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": process_start_ticks(pid), "trial": trial_number}


def process_alive(pid: int, start: int | None) -> bool:
    """Whether process ``pid`` of this machine runs and is the one that started at ``start`` ticks."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    if not Path("/proc").is_dir():  # no /proc (macOS): the pid exists, which must do
        return True
    ticks = process_start_ticks(pid)  # None for a zombie
    return ticks is not None and (start is None or ticks == start)


def worker_is_gone(trial: FrozenTrial, host: str) -> bool:
    """Whether RUNNING ``trial`` was started by a process of ``host`` (this machine) that no longer runs."""
    record = trial.user_attrs.get(WORKER_ATTR)
    if not isinstance(record, dict) or record.get("trial") != trial.number or record.get("host") != host:
        return False  # another machine's, or not yet claimed: left to the heartbeat
    return not process_alive(record["pid"], record.get("start"))


def fail_stale_trials(study: optuna.Study) -> None:
    """FAIL the RUNNING trials whose worker is gone (this machine) or whose heartbeat is stale (RDB storages)."""
    storage = study._storage  # as optuna.storages.fail_stale_trials: Study.tell would stop a GridSampler study
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if worker_is_gone(trial, host):
            try:
                storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:  # another worker failed it first
                pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # does nothing without heartbeats


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue ``trial``'s grid point again: a WAITING trial with its params and system attributes (GridSampler's
    ``grid_id``), and ``failed_trial``/``retry_history`` as Optuna's RetryHeartbeatStaleTrialCallback writes them."""
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs={**trial.system_attrs, "failed_trial": history[0], "retry_history": history},
        )
    )


def point_of(trial: FrozenTrial) -> tuple[float, float] | None:
    """(beta, free_nats) of a trial, None before it has both."""
    if "beta" not in trial.params or "free_nats" not in trial.params:
        return None
    return float(trial.params["beta"]), float(trial.params["free_nats"])


def trials_by_point(study: optuna.Study, spec: GridSpec) -> dict[tuple[float, float], list[FrozenTrial]]:
    """Every grid point's trials, by trial number."""
    by_point: dict[tuple[float, float], list[FrozenTrial]] = {point: [] for point in spec.points}
    for trial in study.get_trials(deepcopy=False):
        point = point_of(trial)
        if point in by_point:
            by_point[point].append(trial)
    return by_point


def points_to_run(study: optuna.Study, spec: GridSpec, skipped: set[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points neither COMPLETE nor RUNNING, ``skipped`` aside. Those tried before and not queued are queued again:
    GridSampler hands out only points without a finished trial, and ``ask`` takes queued (WAITING) trials first."""
    todo = []
    for point, trials in trials_by_point(study, spec).items():
        states = {trial.state for trial in trials}
        if point in skipped or states & {TrialState.COMPLETE, TrialState.RUNNING}:
            continue
        if trials and TrialState.WAITING not in states:
            requeue(study, trials[-1])
        todo.append(point)
    return todo


def duplicate_of(study: optuna.Study, number: int, point: tuple[float, float]) -> FrozenTrial | None:
    """Another trial of ``point`` that is COMPLETE, or RUNNING with a lower number (the lower number goes on)."""
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if other.number != number and point_of(other) == point:
            if other.state == TrialState.COMPLETE or other.number < number:
                return other
    return None


@contextlib.contextmanager
def point_lock(folder: Path) -> Iterator[None]:
    """Hold the point's lock file (released when the process ends, killed or not); TrialPruned if another has it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise optuna.TrialPruned(f"another process of this machine trains {folder}") from None
        yield


@contextlib.contextmanager
def output_to(log: Path | None) -> Iterator[None]:
    """stdout and stderr (train's lines and tqdm bars) appended to ``log``; as they are for None."""
    if log is None:
        yield
        return
    with open(log, "a") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        yield


# ---------------------------------------------------------------------------------------------
# One grid point


def point_metrics(reconstruction: Reconstruction, done: dict[str, Any]) -> dict[str, Any]:
    """The trial's user attributes: ``METRIC_COLUMNS`` from the evaluation and the run's done.json."""
    return {
        "negative_elbo_nats": -reconstruction.elbo_nats,
        "reconstruction_nats": reconstruction.reconstruction_nats,
        "kl_bits": reconstruction.kl_bits,
        "teacher_forced_accuracy": reconstruction.teacher_forced_accuracy,
        "sampling_accuracy": reconstruction.posterior_sampling_accuracy,
        "greedy_accuracy": reconstruction.greedy_accuracy,
        "active_dimensions": reconstruction.kl_active_dimensions,
        "epochs": done["epochs"],
        "best_epoch": done["best_epoch"],
        "steps": done["steps"],
        "minutes": done["training_seconds"] / 60,
        "stopped": done["stopped"],
        "eval_windows": reconstruction.n_windows,
    }


@dataclass
class PointRunner:
    """The objective: trains and evaluates the grid point GridSampler gives a trial."""

    study: optuna.Study
    spec: GridSpec
    run_dir: Path
    study_name: str
    train_windows: np.ndarray
    valid_windows: np.ndarray
    eval_sample: np.ndarray
    device: Any
    show_training: bool
    skipped: set[tuple[float, float]]

    def __call__(self, trial: optuna.Trial) -> float:
        beta = float(trial.suggest_categorical("beta", self.spec.betas))
        free_nats = float(trial.suggest_categorical("free_nats", self.spec.free_nats))
        trial.set_user_attr(WORKER_ATTR, worker_record(trial.number))
        other = duplicate_of(self.study, trial.number, (beta, free_nats))
        if other is not None:
            self.skipped.add((beta, free_nats))
            raise optuna.TrialPruned(
                f"grid point beta={beta:g}, lambda={free_nats:g} is {other.state.name} in trial {other.number}"
            )
        folder = point_folder(self.run_dir, beta, free_nats, self.study_name)
        print(f"beta={beta:g}, lambda={free_nats:g} nats: ", end="", flush=True)
        try:
            with point_lock(folder), output_to(None if self.show_training else folder / TRAIN_LOG):
                loss_config = LossConfig(form=self.spec.kl_form, beta=beta, free_nats=free_nats)
                result = train_or_load(
                    self.spec.model_config, loss_config, self.spec.train_config,
                    self.train_windows, self.valid_windows, folder, self.device,
                )
                reconstruction = evaluate(result.model, self.eval_sample, seed=self.spec.seed)
        except optuna.TrialPruned:
            self.skipped.add((beta, free_nats))
            print("trained by another process, skipped")
            raise
        except BaseException:
            print(f"failed (see {folder / TRAIN_LOG})")
            raise
        metrics = point_metrics(reconstruction, json.loads((folder / DONE_FILE).read_text()))
        for name, value in metrics.items():
            trial.set_user_attr(name, value)
        print(
            f"epochs {metrics['epochs']} ({metrics['stopped']}), {metrics['minutes']:.1f} min; "
            f"-ELBO {metrics['negative_elbo_nats']:.1f} nats, KL {metrics['kl_bits']:.1f} bits, "
            f"sampling accuracy {metrics['sampling_accuracy']:.3f}"
        )
        return metrics["negative_elbo_nats"]


def run_grid_search(
    run_dir: str | os.PathLike,
    spec: GridSpec,
    train_windows: np.ndarray,
    valid_windows: np.ndarray,
    storage: StorageArg = None,
    study_name: str = STUDY_NAME,
    device: str | None = None,
    max_trials: int | None = None,
    show_training: bool = False,
) -> pd.DataFrame:
    """Train and evaluate every grid point of ``spec`` not yet done; return ``results_table``.

    train_windows, valid_windows: uint8 [n, steps], notebook 01's splits. ``storage``: None for
    ``<run_dir>/grid_search/study.db``, an SQLAlchemy URL (RDB with heartbeats), a journal file
    path, or an Optuna storage. Creates study ``study_name`` or joins it (ValueError if it was
    created with other settings or data). Stops when no point is left to start: those RUNNING
    in other live workers are theirs. ``max_trials``: at most this many trials in this call
    (0: only create or check the study). ``show_training``: train's progress in the output
    instead of each point's train.log. One printed line per trial.
    """
    if max_trials is not None and max_trials < 0:
        raise ValueError(f"`max_trials` must be >= 0 or None, got {max_trials}")
    run_dir = Path(run_dir)
    study = open_study(run_dir, spec, data_fingerprint(train_windows, valid_windows), storage, study_name)
    skipped: set[tuple[float, float]] = set()
    objective = PointRunner(
        study, spec, run_dir, study_name, train_windows, valid_windows,
        valid_windows[data.sample_windows(valid_windows, spec.eval_windows, spec.seed)], device, show_training, skipped,
    )
    started = 0
    with optuna_warnings_only():
        fail_stale_trials(study)
        table = grid_table(study, spec, run_dir, study_name)
        counts = table["state"].value_counts()
        print(
            f"Grid search {study_name!r}: {len(table)} points, {counts.get('COMPLETE', 0)} complete, "
            f"{counts.get('RUNNING', 0)} running elsewhere"
        )
        while max_trials is None or started < max_trials:
            fail_stale_trials(study)
            if not points_to_run(study, spec, skipped):
                break
            started += 1
            study.optimize(objective, n_trials=1)
    table = grid_table(study, spec, run_dir, study_name)
    running = int((table["state"] == "RUNNING").sum())
    if running:
        print(f"{running} points still run in other workers: results_table shows them once they finish")
    return table


# ---------------------------------------------------------------------------------------------
# Results


def representative(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The trial that speaks for a point: the first COMPLETE, else a RUNNING, else a WAITING, else the last."""
    for state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING):
        matching = [trial for trial in trials if trial.state == state]
        if matching:
            return matching[0]
    return trials[-1] if trials else None


def grid_table(study: optuna.Study, spec: GridSpec, run_dir: Path, study_name: str) -> pd.DataFrame:
    """``results_table`` of an open study."""
    rows = []
    for (beta, free_nats), trials in trials_by_point(study, spec).items():
        trial = representative(trials)
        complete = trial is not None and trial.state == TrialState.COMPLETE
        rows.append(
            {
                "beta": beta,
                "free_nats": free_nats,
                "free_bits": free_nats / NATS_PER_BIT,
                "state": trial.state.name if trial is not None else UNSTARTED,
                "trial": trial.number if trial is not None else None,
                "trials": len(trials),
                **{name: trial.user_attrs.get(name) if complete else None for name in METRIC_COLUMNS},
                "host": trial.user_attrs.get(WORKER_ATTR, {}).get("host") if trial is not None else None,
                "folder": point_folder(run_dir, beta, free_nats, study_name).relative_to(run_dir).as_posix(),
            }
        )
    table = pd.DataFrame(rows)
    numeric = [name for name in METRIC_COLUMNS if name != "stopped"]
    table[numeric] = table[numeric].astype(float)
    table["trial"] = table["trial"].astype("Int64")
    return table


def results_table(
    run_dir: str | os.PathLike,
    storage: StorageArg = None,
    study_name: str = STUDY_NAME,
) -> pd.DataFrame:
    """One row per grid point of the study, by beta then lambda.

    Columns: beta, free_nats (lambda, nats), free_bits; state (of the point's COMPLETE trial, else
    RUNNING, WAITING, the last FAIL or PRUNED, or NOT_STARTED); trial (its number) and trials (how
    many the point had); the ``METRIC_COLUMNS`` of a COMPLETE point (NaN otherwise), measured on
    the validation sample: negative_elbo_nats, reconstruction_nats, kl_bits, the accuracies (shares
    of steps), active_dimensions (mean KL > 0.01 bits), epochs, best_epoch, steps, minutes, stopped,
    eval_windows; host (that ran the trial) and folder (the point's training folder, relative to ``run_dir``,
    so tables stay right when the run folder moves).
    """
    study, spec = load_study(run_dir, storage, study_name)
    return grid_table(study, spec, Path(run_dir), study_name)


def completed(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The COMPLETE rows with every one of ``columns`` known; ValueError if there is none."""
    rows = table[table["state"] == "COMPLETE"].dropna(subset=columns)
    if rows.empty:
        raise ValueError(f"no completed grid point with {columns} in the table ({len(table)} rows): run the search first")
    return rows


def json_ready(value: Any) -> Any:
    """numpy scalars as Python numbers, for write_choice's JSON."""
    return value.item() if isinstance(value, np.generic) else value


def choose(table: pd.DataFrame, margin: float = 0.01) -> dict[str, Any]:
    """The grid point of ``SELECTION_RULE``: within ``margin`` of the best sampling accuracy, the lowest negative ELBO.

    ``table``: ``results_table``'s (COMPLETE rows count). ``margin``: in shares of steps, 0.01 = one
    percentage point, inclusive. Returns beta, free_nats and why, ready for
    ``write_choice(run_dir, **choice)``: rule, margin, the chosen row's metrics and folder, the best
    sampling accuracy and how many points were eligible.
    """
    if margin < 0:
        raise ValueError(f"`margin` must be >= 0, got {margin}")
    rows = completed(table, ["sampling_accuracy", "negative_elbo_nats"])
    best_accuracy = rows["sampling_accuracy"].max()
    eligible = rows[rows["sampling_accuracy"] >= best_accuracy - margin - 1e-12]  # 1e-12: 0.81 - 0.01 > 0.80 in floats
    chosen = eligible.sort_values(
        ["negative_elbo_nats", "sampling_accuracy", "beta", "free_nats"], ascending=[True, False, True, True]
    ).iloc[0]
    return {
        "beta": float(chosen["beta"]),
        "free_nats": float(chosen["free_nats"]),
        "rule": SELECTION_RULE.format(margin=margin),
        "margin": margin,
        "best_sampling_accuracy": float(best_accuracy),
        "eligible_points": len(eligible),
        "folder": str(chosen["folder"]),
        **{name: json_ready(chosen[name]) for name in METRIC_COLUMNS},
    }


def contrasting_points(table: pd.DataFrame, choice: dict[str, Any]) -> pd.DataFrame:
    """Two completed grid points to set beside the chosen one (notebook 07): the least and the most KL.

    Rows of ``table`` with a ``role`` column, "least KL" then "most KL", the chosen point
    (``choice``'s beta and free_nats) excluded; their ``folder`` holds model.pt. ValueError if
    fewer than two other points completed.
    """
    rows = completed(table, ["kl_bits"])
    others = rows[~((rows["beta"] == choice["beta"]) & (rows["free_nats"] == choice["free_nats"]))]
    if len(others) < 2:
        raise ValueError(f"need two completed grid points besides the chosen one, found {len(others)}")
    ordered = others.sort_values(["kl_bits", "beta", "free_nats"])
    pair = pd.concat([ordered.head(1), ordered.tail(1)]).assign(role=["least KL", "most KL"])
    return pair[["role", *[name for name in pair.columns if name != "role"]]].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Command line: one more worker on a study notebook 02 created


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m musicvae_lib.search",
        description="Work on the grid study of a run folder (created by notebook 02), with the study's own settings.",
    )
    parser.add_argument("--run-dir", type=Path, required=True,
                        help="run folder holding dataset/ (notebook 01); one shared folder for all workers")
    parser.add_argument("--storage", default=None,
                        help="SQLAlchemy URL or journal file path (default: <run-dir>/grid_search/study.db)")
    parser.add_argument("--study-name", default=STUDY_NAME)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: a GPU if any, else CPU)")
    parser.add_argument("--max-trials", type=int, default=None, help="stop after this many trials")
    args = parser.parse_args(argv)
    missing = [name for name in ("train", "valid") if not (args.run_dir / "dataset" / f"{name}.npy").exists()]
    if missing:
        parser.error(f"{args.run_dir}/dataset lacks {missing}: run notebooks/01_dataset.ipynb for this run folder first")
    try:
        _, spec = load_study(args.run_dir, args.storage, args.study_name)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    table = run_grid_search(
        args.run_dir, spec, data.load_split(args.run_dir, "train"), data.load_split(args.run_dir, "valid"),
        args.storage, args.study_name, args.device, args.max_trials,
    )
    print(table[["beta", "free_nats", "state", "negative_elbo_nats", "kl_bits", "sampling_accuracy"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
