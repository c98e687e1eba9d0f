"""The grid search over beta and lambda (notebook 02) and the choice it hands to training (notebook 03).

Each grid point is one Optuna trial (``GridSampler``): a short training with early stopping, then
``evaluate.evaluate`` on a seeded sample of the validation windows. The trial's value is the
validation negative ELBO (reconstruction + KL, nats per window), which does not depend on beta or
lambda, so points compare. Under ``<run_dir>/grid_search/``: ``study.db`` (the study, SQLite,
unless another ``storage`` is given), one folder per point (``<study>/beta=<b>_lambda=<l>/``: what
``train.train`` writes, and ``train.log``, its lines with each progress bar at its last state) and
``choice.json`` (``write_choice``), which notebook 03 reads.

Resuming and several workers (``shared_study``). A COMPLETE point is never trained again; any
other goes on from its last checkpoint (``train.train_or_load``). A worker holds its point
folder's lock while it trains; a killed worker's point is queued again at once on its machine, on
others when its heartbeat goes stale (RDB storages), as is, when a search starts, a point whose
trials all raised or were skipped (GridSampler alone counts them as visited). Trial k < grid size
gets the k-th point of GridSampler's seeded shuffle, so workers start apart; a trial whose point
is COMPLETE, RUNNING under a lower number or locked is PRUNED. Create the study with notebook 02
(``-p storage=...``), then on other machines::

    .venv/bin/python -m musicvae_lib.search --run-dir /mnt/nfs/musicvae-run \\
        --storage postgresql://user:password@db-host/musicvae        # any SQLAlchemy URL: heartbeats
    .venv/bin/python -m musicvae_lib.search --run-dir /mnt/nfs/musicvae-run \\
        --storage /mnt/nfs/musicvae-run/grid_search/study.log        # a path: an Optuna journal file

(one shared run folder; several processes of one machine: a journal file, SQLite may be "locked").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

with warnings.catch_warnings():  # optuna imports tqdm.auto, which warns in Jupyter without ipywidgets
    warnings.filterwarnings("ignore", message="IProgress not found")
    import optuna
    from optuna.trial import FrozenTrial, TrialState

from musicvae_lib import data
from musicvae_lib.evaluate import evaluate
from musicvae_lib.loss import NATS_PER_BIT, LossConfig
from musicvae_lib.model import ModelConfig, preset
from musicvae_lib.shared_study import (
    WORKER_ATTR, StorageArg, claim, folder_lock, join_settings, open_storage, optuna_quiet, output_to, requeue,
    requeue_killed,
)
from musicvae_lib.train import DONE_FILE, TrainConfig, data_fingerprint, train_or_load

SEARCH_FOLDER = Path("grid_search")
CHOICE_FILE = SEARCH_FOLDER / "choice.json"
STUDY_FILE = "study.db"  # the default storage, SQLite
STUDY_NAME = "beta_lambda"
TRAIN_LOG = "train.log"  # train's lines, kept out of the notebook
TRIAL_PATIENCE = 3  # epochs without progress that end a grid point: sooner than the thesis' 5
SPEC_ATTR = "grid_spec"  # study user attribute: the settings every worker must share (join_settings)
UNSTARTED = "NOT_STARTED"  # results_table's state of a point without a trial

SELECTION_RULE = (
    "among completed grid points whose sampling accuracy (Magenta's eval) is within {margin:g} of the best, "
    "the lowest validation negative ELBO (reconstruction + KL, nats per window); ties: higher sampling "
    "accuracy, then smaller beta, then smaller lambda"
)
# results_table's metric columns, a COMPLETE trial's user attributes
METRIC_COLUMNS = (
    "negative_elbo_nats",  # reconstruction + KL, nats per window: the trial's value
    "reconstruction_nats",  # teacher-forced cross-entropy summed over steps, z ~ q(z|x), nats per window
    "kl_bits",  # KL(q(z|x) || N(0, I)) summed over dimensions, bits per window
    "teacher_forced_accuracy",  # z = mu, true previous tokens; share of steps
    "sampling_accuracy",  # Magenta's eval, the paper's Table 1: z ~ q, own T = 1 samples, argmax scored
    "greedy_accuracy",  # z = mu, own argmax tokens fed back
    "active_dimensions",  # latent dimensions whose mean KL exceeds 0.01 bits (not Burda's Var(mu) count)
    "epochs", "best_epoch", "steps", "minutes",  # minutes: training time summed over sessions
    "stopped",  # early_stopping, max_epochs or max_minutes
    "eval_windows",
)
# which end of a metric is better (plots.grid_heatmaps); KL and active dimensions have none
BETTER = {"negative_elbo_nats": "lower", "reconstruction_nats": "lower", "teacher_forced_accuracy": "higher",
          "sampling_accuracy": "higher", "greedy_accuracy": "higher"}

# results_table's columns as notebook 02 shows them (``shown_table``): short header, number format
SHOWN_COLUMNS = {
    "beta": ("beta", "{:g}"), "free_nats": ("lambda", "{:g}"), "state": ("state", "{}"),
    "negative_elbo_nats": ("-ELBO", "{:.1f}"), "reconstruction_nats": ("recon.", "{:.1f}"), "kl_bits": ("KL bits", "{:.1f}"),
    "teacher_forced_accuracy": ("acc. TF", "{:.3f}"), "sampling_accuracy": ("acc. sampl.", "{:.3f}"),
    "greedy_accuracy": ("acc. greedy", "{:.3f}"), "active_dimensions": ("active dims", "{:g}"), "epochs": ("epochs", "{:g}"),
    "minutes": ("min", "{:.1f}"),
}


@dataclass(frozen=True)
class ChapterDefaults:
    """Notebook 02's parameters and their defaults, in its parameters cell's order (a test keeps both in step).

    Small on purpose: run by hand (and in CI), the notebook searches 3 x 2 points of the "tiny"
    model, one epoch each; profiles/default.toml sets the study's grid.
    """

    betas: tuple[float, ...] = (0.5, 1.0, 2.0)  # thesis: 1
    free_nats_values: tuple[float, ...] = (0.0, 64.0)  # lambda, nats off the total KL; thesis: 33.3
    kl_form: str = "thesis"  # LossConfig.form
    model_preset: str = "tiny"
    trial_minutes: float = 0.0  # 0: no time budget
    trial_max_epochs: int = 1
    eval_windows: int = 300
    margin: float = 0.01  # choose's margin
    storage: str = ""  # empty: grid_search/study.db in the run folder
    study_name: str = STUDY_NAME
    seed: int = 0
    run_dir: str = "../results/interactive"


@dataclass(frozen=True)
class GridSpec:
    """What the grid search trains and how it scores a point (``chapter_spec`` builds notebook 02's)."""

    betas: tuple[float, ...]
    free_nats: tuple[float, ...]  # lambda, nats off the TOTAL KL
    model_config: ModelConfig
    train_config: TrainConfig
    eval_windows: int  # validation windows each point is evaluated on: a seeded sample, all if fewer
    kl_form: str = "thesis"  # LossConfig.form: beta * max(KL, lambda)
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
        if len({point_name(*point) for point in self.points}) < len(self.points):
            raise ValueError(f"grid values too close to tell apart in folder names: {self.betas}, {self.free_nats}")

    @property
    def points(self) -> list[tuple[float, float]]:
        """(beta, free_nats) of every grid point, by beta then lambda."""
        return [(beta, free_nats) for beta in self.betas for free_nats in self.free_nats]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what the study stores, so every worker trains with the same settings."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GridSpec:
        """The inverse of ``to_dict``."""
        known = {name: values[name] for name in (spec_field.name for spec_field in fields(cls)) if name in values}
        configs = {"model_config": ModelConfig(**values["model_config"]), "train_config": TrainConfig(**values["train_config"])}
        return cls(**known | configs)


def chapter_spec(
    steps: int, betas: list[float], free_nats_values: list[float], kl_form: str, model_preset: str,
    trial_minutes: float, trial_max_epochs: int, eval_windows: int, seed: int,
) -> GridSpec:
    """Notebook 02's parameters as a GridSpec: the preset for ``steps``-step windows, short trials with early stopping."""
    trial = TrainConfig(max_minutes=trial_minutes, max_epochs=trial_max_epochs, early_stopping_patience=TRIAL_PATIENCE, seed=seed)
    return GridSpec(tuple(betas), tuple(free_nats_values), preset(model_preset, steps=steps), trial, eval_windows, kl_form, seed)


def load_choice(run_dir: str | os.PathLike) -> dict | None:
    """The grid search's chosen ``beta`` and ``free_nats`` (nats), or None if notebook 02 has not run."""
    path = Path(run_dir) / CHOICE_FILE
    if not path.exists():
        return None
    choice = json.loads(path.read_text())
    if {"beta", "free_nats"} - choice.keys():
        raise ValueError(f"{path} lacks {sorted({'beta', 'free_nats'} - choice.keys())}: re-run notebooks/02_grid_search.ipynb")
    return choice


def write_choice(run_dir: str | os.PathLike, beta: float, free_nats: float, **why) -> Path:
    """Write the chosen beta and lambda (nats) for notebook 03, with any explanation fields."""
    path = Path(run_dir) / CHOICE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"beta": beta, "free_nats": free_nats, **why}, indent=2, sort_keys=True))
    return path


# --- storage and study -------------------------------------------------------------------------


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
    return Path(storage) if isinstance(storage, (str, os.PathLike)) and "://" not in str(storage) else None


def open_grid_storage(run_dir: str | os.PathLike, storage: StorageArg) -> optuna.storages.BaseStorage:
    """``shared_study.open_storage`` with the run folder's SQLite file as the default."""
    return open_storage(storage, storage_file(run_dir, None))


def grid_sampler(spec: GridSpec) -> optuna.samplers.GridSampler:
    """Trial k < grid size gets the k-th point of the grid shuffled with ``spec.seed``."""
    return optuna.samplers.GridSampler({"beta": list(spec.betas), "free_nats": list(spec.free_nats)}, seed=spec.seed)


def open_study(
    run_dir: str | os.PathLike, spec: GridSpec, data_sha256: str, storage: StorageArg = None, study_name: str = STUDY_NAME
) -> optuna.Study:
    """Create the grid study, or load it after checking it was created with ``spec`` and the same data."""
    if not re.fullmatch(r"[\w.-]+", study_name):
        raise ValueError(f"`study_name` names a folder: letters, digits, '_', '.', '-' only, got {study_name!r}")
    with optuna_quiet():
        study = optuna.create_study(storage=open_grid_storage(run_dir, storage), study_name=study_name,
                                    sampler=grid_sampler(spec), direction="minimize", load_if_exists=True)
    join_settings(study, SPEC_ATTR, spec.to_dict() | {"data_sha256": data_sha256})
    return study


def load_study(run_dir: str | os.PathLike, storage: StorageArg = None, study_name: str = STUDY_NAME) -> tuple[optuna.Study, GridSpec]:
    """An existing grid study and its settings; ValueError naming notebook 02 when there is none."""
    file = storage_file(run_dir, storage)
    missing = (f"no grid study {study_name!r} in {file or storage}: run notebooks/02_grid_search.ipynb "
               "(or search.run_grid_search) first; it creates the study")
    if file is not None and not file.exists():  # opening would create it
        raise ValueError(missing)
    try:
        with optuna_quiet():
            study = optuna.load_study(study_name=study_name, storage=open_grid_storage(run_dir, storage))
        spec = GridSpec.from_dict(study.user_attrs[SPEC_ATTR])
    except KeyError as error:
        raise ValueError(missing) from error
    study.sampler = grid_sampler(spec)
    return study, spec


# --- points and their trials ---------------------------------------------------------------------


def point_of(trial: FrozenTrial) -> tuple[float, float] | None:
    """(beta, free_nats) of a trial, None before it has both."""
    params = trial.params
    return (float(params["beta"]), float(params["free_nats"])) if {"beta", "free_nats"} <= params.keys() else None


def trials_by_point(study: optuna.Study, spec: GridSpec) -> dict[tuple[float, float], list[FrozenTrial]]:
    """Every grid point's trials, by trial number (trials off the grid left out)."""
    by_point: dict[tuple[float, float], list[FrozenTrial]] = {point: [] for point in spec.points}
    for trial in study.get_trials(deepcopy=False):
        by_point.get(point_of(trial), []).append(trial)
    return by_point


def points_left(study: optuna.Study, spec: GridSpec) -> bool:
    """Whether a point has no trial yet or a queued (WAITING) one."""
    return any(not trials or TrialState.WAITING in {t.state for t in trials} for trials in trials_by_point(study, spec).values())


# --- one grid point, the search ------------------------------------------------------------------


def train_point(spec: GridSpec, point: tuple[float, float], folder: Path, train_windows: np.ndarray,
                valid_windows: np.ndarray, device: str | None) -> dict[str, Any]:
    """Train (or resume, or find finished) the point's model in ``folder`` and score it: ``METRIC_COLUMNS``."""
    loss_config = LossConfig(form=spec.kl_form, beta=point[0], free_nats=point[1])
    result = train_or_load(spec.model_config, loss_config, spec.train_config, train_windows, valid_windows, folder, device)
    sample = valid_windows[data.sample_windows(valid_windows, spec.eval_windows, spec.seed)]
    scores = evaluate(result.model, sample, seed=spec.seed)
    done = json.loads((folder / DONE_FILE).read_text())
    return {
        "negative_elbo_nats": -scores.elbo_nats, "reconstruction_nats": scores.reconstruction_nats,
        "kl_bits": scores.kl_bits, "teacher_forced_accuracy": scores.teacher_forced_accuracy,
        "sampling_accuracy": scores.posterior_sampling_accuracy, "greedy_accuracy": scores.greedy_accuracy,
        "active_dimensions": scores.kl_active_dimensions, "eval_windows": scores.n_windows,
        **{name: done[name] for name in ("epochs", "best_epoch", "steps", "stopped")}, "minutes": done["training_seconds"] / 60,
    }


def run_grid_search(
    run_dir: str | os.PathLike, spec: GridSpec, train_windows: np.ndarray, valid_windows: np.ndarray,
    storage: StorageArg = None, study_name: str = STUDY_NAME, device: str | None = None, max_trials: int | None = None,
) -> pd.DataFrame:
    """Train and evaluate every grid point of ``spec`` not yet done; return ``results_table``.

    train_windows, valid_windows: uint8 [n, steps], notebook 01's splits. Creates study
    ``study_name`` in ``storage`` (see StorageArg) or joins it (ValueError if it was created with
    other settings or data). Stops when no point is left to start: those RUNNING in other live
    workers are theirs. ``max_trials``: at most this many trials (0: only create or check the
    study). Train's output goes to each point's train.log; one line per trial is printed here.
    """
    if max_trials is not None and max_trials < 0:
        raise ValueError(f"`max_trials` must be >= 0 or None, got {max_trials}")
    run_dir, opened, held = Path(run_dir), open_grid_storage(run_dir, storage), []
    study = open_study(run_dir, spec, data_fingerprint(train_windows, valid_windows), opened, study_name)

    def objective(trial: optuna.Trial) -> float:
        point = (float(trial.suggest_categorical("beta", spec.betas)), float(trial.suggest_categorical("free_nats", spec.free_nats)))
        for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            if point_of(other) == point and (other.state == TrialState.COMPLETE or other.number < trial.number):
                raise optuna.TrialPruned(f"{point_name(*point)} is {other.state.name} in trial {other.number}")
        folder = point_folder(run_dir, *point, study_name)
        held.append(folder_lock(folder))  # held until the trial is told (release_and_tidy): else a live trial looks killed
        if held[-1] is None:
            raise optuna.TrialPruned(f"another process trains {folder}")
        claim(trial)
        print(f"beta={point[0]:g}, lambda={point[1]:g} nats: ", end="", flush=True)
        try:
            with output_to(folder / TRAIN_LOG):
                metrics = train_point(spec, point, folder, train_windows, valid_windows, device)
        except BaseException:
            print(f"failed (see {folder / TRAIN_LOG})")
            raise
        for name, value in metrics.items():
            trial.set_user_attr(name, value)
        print(f"epochs {metrics['epochs']} ({metrics['stopped']}), {metrics['minutes']:.1f} min; -ELBO "
              f"{metrics['negative_elbo_nats']:.1f} nats, KL {metrics['kl_bits']:.1f} bits, sampling accuracy "
              f"{metrics['sampling_accuracy']:.3f}")
        return metrics["negative_elbo_nats"]

    def release_and_tidy(study: optuna.Study, trial: FrozenTrial | None = None) -> None:
        while held:
            lock = held.pop()
            if lock is not None:
                lock.close()
        requeue_killed(study, opened, lambda running: point_folder(run_dir, *point_of(running), study_name))
        if trial is not None and not points_left(study, spec):
            study.stop()

    with optuna_quiet():
        optuna.storages.fail_stale_trials(study)  # heartbeats tell which workers of other machines died
        release_and_tidy(study)
        for trials in trials_by_point(study, spec).values():  # points that raised or were skipped: queued again
            if trials and not {t.state for t in trials} & {TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING}:
                requeue(study, opened, trials[-1])
        counts = grid_table(study, spec, run_dir)["state"].value_counts()
        print(f"Grid search {study_name!r}: {len(spec.points)} points, {counts.get('COMPLETE', 0)} complete, "
              f"{counts.get('RUNNING', 0)} running elsewhere")
        try:
            if max_trials != 0 and points_left(study, spec):
                study.optimize(objective, n_trials=max_trials, callbacks=[release_and_tidy])
        finally:
            release_and_tidy(study)
    table = grid_table(study, spec, run_dir)
    if (table["state"] == "RUNNING").any():
        print(f"{(table['state'] == 'RUNNING').sum()} points still run in other workers: results_table shows them once they finish")
    return table


# --- results and the choice ----------------------------------------------------------------------


def grid_table(study: optuna.Study, spec: GridSpec, run_dir: Path) -> pd.DataFrame:
    """``results_table`` of an open study."""
    rank = {TrialState.COMPLETE: 0, TrialState.RUNNING: 1, TrialState.WAITING: 2}
    rows = []
    for (beta, free_nats), trials in trials_by_point(study, spec).items():
        # the first COMPLETE trial speaks for the point, else the first RUNNING, the first WAITING, the last
        trial = min(trials, key=lambda t: (rank[t.state], t.number) if t.state in rank else (3, -t.number), default=None)
        complete = trial is not None and trial.state == TrialState.COMPLETE
        rows.append({
            "beta": beta, "free_nats": free_nats, "free_bits": free_nats / NATS_PER_BIT,
            "state": trial.state.name if trial is not None else UNSTARTED,
            "trial": trial.number if trial is not None else None, "trials": len(trials),
            **{name: trial.user_attrs.get(name) if complete else None for name in METRIC_COLUMNS},
            "host": trial.user_attrs.get(WORKER_ATTR, {}).get("host") if trial is not None else None,
            "folder": point_folder(run_dir, beta, free_nats, study.study_name).relative_to(run_dir).as_posix(),
        })
    table = pd.DataFrame(rows)
    numeric = [name for name in METRIC_COLUMNS if name != "stopped"]
    return table.astype({**dict.fromkeys(numeric, float), "trial": "Int64"})


def results_table(run_dir: str | os.PathLike, storage: StorageArg = None, study_name: str = STUDY_NAME) -> pd.DataFrame:
    """One row per grid point of the study, by beta then lambda.

    Columns: beta, free_nats (lambda, nats), free_bits; state (of the point's COMPLETE trial, else
    RUNNING, WAITING, the last FAIL or PRUNED, or NOT_STARTED); trial (its number) and trials (how
    many the point had); the ``METRIC_COLUMNS`` of a COMPLETE point (NaN otherwise), measured on
    the validation sample; host (that ran the trial) and folder (the point's training folder,
    relative to ``run_dir``, so tables stay right when the run folder moves).
    """
    study, spec = load_study(run_dir, storage, study_name)
    return grid_table(study, spec, Path(run_dir))


def shown_table(table: pd.DataFrame) -> pd.io.formats.style.Styler:
    """``table``'s ``SHOWN_COLUMNS`` under their short headers, each number to its precision: narrow enough for a page."""
    shown = table[list(SHOWN_COLUMNS)].rename(columns={name: short for name, (short, _) in SHOWN_COLUMNS.items()})
    return shown.style.hide(axis="index").format(dict(SHOWN_COLUMNS.values()), na_rep="")


def completed(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The COMPLETE rows with every one of ``columns`` known; ValueError if there is none."""
    rows = table[table["state"] == "COMPLETE"].dropna(subset=columns)
    if rows.empty:
        raise ValueError(f"no completed grid point with {columns} in the table ({len(table)} rows): run the search first")
    return rows


def choose(table: pd.DataFrame, margin: float = 0.01) -> dict[str, Any]:
    """The COMPLETE point of ``SELECTION_RULE`` in ``results_table``'s ``table``; ``margin`` in shares of steps, inclusive.

    Returns beta, free_nats and why, for ``write_choice(run_dir, **choice)``: rule, margin, the
    chosen row's metrics and folder, the best sampling accuracy, how many points were eligible.
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
        "beta": float(chosen["beta"]), "free_nats": float(chosen["free_nats"]),
        "rule": SELECTION_RULE.format(margin=margin), "margin": margin,
        "best_sampling_accuracy": float(best_accuracy), "eligible_points": len(eligible), "folder": str(chosen["folder"]),
        **{name: chosen[name].item() if isinstance(chosen[name], np.generic) else chosen[name] for name in METRIC_COLUMNS},
    }


def contrasting_points(table: pd.DataFrame, choice: dict[str, Any]) -> pd.DataFrame:
    """Rows of the two completed points besides ``choice`` with the least and the most KL (notebook 07 compares their
    models, in ``folder``), under ``role`` "least KL" and "most KL"; ValueError without two."""
    rows = completed(table, ["kl_bits"])
    others = rows[~((rows["beta"] == choice["beta"]) & (rows["free_nats"] == choice["free_nats"]))]
    if len(others) < 2:
        raise ValueError(f"need two completed grid points besides the chosen one, found {len(others)}")
    ordered = others.sort_values(["kl_bits", "beta", "free_nats"])
    pair = pd.concat([ordered.head(1), ordered.tail(1)]).assign(role=["least KL", "most KL"])
    return pair[["role", *[name for name in pair.columns if name != "role"]]].reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    """One more worker on the grid study of a run folder, with the study's own settings."""
    parser = argparse.ArgumentParser(prog=".venv/bin/python -m musicvae_lib.search", description=main.__doc__)
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
    table = run_grid_search(args.run_dir, spec, data.load_split(args.run_dir, "train"), data.load_split(args.run_dir, "valid"),
                            args.storage, args.study_name, args.device, args.max_trials)
    print(table[["beta", "free_nats", "state", "negative_elbo_nats", "kl_bits", "sampling_accuracy"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
