"""The grid search over beta and lambda (notebook 02) and the choice it hands to training (notebook 03).

Successive halving: every grid point trains to the first rung's budget, the best third by sampling
accuracy (at least two) go on from their checkpoints to the next rung's, and so on; the last rung's
best two train again with the next seed, which measures the noise a seed alone makes (``choose``).
Each job (a point at a rung, or a re-run) is a trial of an Optuna study that several workers share
(``shared_study``; one more worker: ``main``), scored on a seeded sample of validation windows. A
COMPLETE job or PRUNED point is never trained again; a killed worker's job goes on from its checkpoint.
Under ``<run_dir>/grid_search/``: ``study.db`` (unless another ``storage`` is given), ``choice.json``
and a folder per point (``<study>/beta=<b>_lambda=<l>/``, every rung of it, the re-run in ``seed=<n>/``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from musicvae_lib import data
from musicvae_lib.console import output_to
from musicvae_lib.evaluate import evaluate
from musicvae_lib.loss import NATS_PER_BIT, LossConfig
from musicvae_lib.model import ModelConfig, preset
from musicvae_lib.run_folder import (
    GRID_CHOICE,
    GRID_SEARCH,
    GRID_STUDY,
    POINT_LOG,
    MissingInputError,
    require_outputs,
    split_file,
)
from musicvae_lib.shared_study import (
    JOB_ATTR,
    LIVE,
    WORKER_ATTR,
    StorageArg,
    join_settings,
    open_storage,
    optuna_quiet,
    run_jobs,
)
from musicvae_lib.storage_url import mask_url
from musicvae_lib.training import DONE_FILE, TrainConfig, data_fingerprint, train_or_load, with_added_defaults

STUDY_NAME = "beta_lambda"
TRIAL_PATIENCE = 3  # epochs without progress that end a job: sooner than the thesis' 5
SPEC_ATTR = "grid_spec"  # study user attribute: the settings every worker must share (join_settings)
BUDGET_UNITS = ("steps", "epochs", "minutes")  # "minutes": studies made before budgets were steps

SELECTION_RULE = (
    "among the points of the last rung whose sampling accuracy (Magenta's eval) is within {margin:.3g} of the best "
    "(the larger of the seed noise and the margin set), the lowest validation negative ELBO (reconstruction + KL, "
    "nats per window); ties: higher sampling accuracy, then smaller beta, then smaller lambda"
)
# results_table's metric columns, a COMPLETE trial's user attributes: train_job's (minutes: over sessions and rungs)
METRIC_COLUMNS = (
    "negative_elbo_nats",
    "reconstruction_nats",
    "kl_bits",
    "teacher_forced_accuracy",
    "greedy_accuracy",
    "sampling_accuracy",
    "active_dimensions",
    "epochs",
    "best_epoch",
    "steps",
    "minutes",
    "stopped",
    "eval_windows",
)
# results_table's columns that depend on the machine and its load, not on the seed: notebook 02 writes them apart
# (tables/02_grid_machine.csv), so that tables/02_grid.csv is byte-identical between two runs of one profile
MACHINE_COLUMNS = ("minutes", "host")


@dataclass(frozen=True)
class GridNotebookDefaults:
    """Notebook 02's parameters and defaults, in its cell's order (a test keeps both in step):
    small for CI, profiles set the study's."""

    betas: tuple[float, ...] = (0.5, 1.0, 2.0)  # thesis: 1
    free_nats_values: tuple[float, ...] = (0.0, 64.0)  # lambda, nats off the total KL; thesis: 33.3
    kl_form: str = "thesis"  # LossConfig.form
    model_preset: str = "tiny"
    rung_budgets: tuple[float, ...] = (1, 2)  # each rung's training budget in budget_unit, counted from the start
    budget_unit: str = "epochs"  # or "steps"
    guard_minutes: float = 0.0  # a job's time guard (TrainConfig.max_minutes), summed over its rungs; 0 = none
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
    train_config: TrainConfig  # its seed trains every rung; the re-runs take the next
    eval_windows: int  # validation windows each job is evaluated on: a seeded sample, all if fewer
    rung_budgets: tuple[float, ...]  # training budget of each rung, counted from the start, increasing
    # "steps": max_steps; "epochs": max_epochs; "minutes" (studies made before budgets were steps): max_minutes
    budget_unit: str = "epochs"
    kl_form: str = "thesis"  # LossConfig.form: beta * max(KL, lambda)
    seed: int = 0  # the evaluation sample and its draws
    guard_minutes: float = 0.0  # every job's time guard (TrainConfig.max_minutes), summed over its rungs; 0 = none

    def __post_init__(self) -> None:
        for name in ("betas", "free_nats"):
            values = tuple(sorted(float(value) for value in getattr(self, name)))
            if not values or len(set(values)) < len(values) or min(values) < 0:
                raise ValueError(f"`{name}` must be distinct values >= 0, at least one, got {getattr(self, name)!r}")
            object.__setattr__(self, name, values)  # sorted: the same grid in any order is the same study
        budgets = tuple(float(budget) for budget in self.rung_budgets)
        whole = self.budget_unit == "minutes" or all(budget == int(budget) for budget in budgets)
        if (
            not budgets
            or min(budgets) <= 0
            or list(budgets) != sorted(set(budgets))
            or self.budget_unit not in BUDGET_UNITS
            or not whole
        ):
            raise ValueError(
                f"`rung_budgets` must increase from > 0 (whole epochs or steps) and `budget_unit` be one of "
                f"{BUDGET_UNITS}, "
                f"got {self.rung_budgets!r} {self.budget_unit!r}"
            )
        object.__setattr__(self, "rung_budgets", budgets)
        LossConfig(form=self.kl_form)  # ValueError for an unknown form
        if self.eval_windows < 1 or self.guard_minutes < 0:
            raise ValueError(
                f"need eval_windows >= 1 and guard_minutes >= 0, got {self.eval_windows}, {self.guard_minutes}"
            )
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
        known = {field.name: values[field.name] for field in fields(cls) if field.name in values}
        configs = {
            "model_config": ModelConfig(**values["model_config"]),
            "train_config": TrainConfig(**values["train_config"]),
        }
        return cls(**known | configs)

    def rung_config(self, rung: int, rerun: bool = False) -> TrainConfig:
        """The TrainConfig of a job at ``rung``: its budget; the next seed for a re-run."""
        budget = self.rung_budgets[rung]
        if self.budget_unit == "minutes":
            config = replace(self.train_config, max_minutes=budget)
        elif self.budget_unit == "steps":
            config = replace(self.train_config, max_steps=int(budget), max_minutes=self.guard_minutes)
        else:
            config = replace(self.train_config, max_epochs=int(budget), max_minutes=self.guard_minutes)
        return replace(config, seed=config.seed + 1) if rerun else config


@dataclass(frozen=True)
class Job:
    """One training of the search: a grid point at a rung, or the re-run of a last-rung point with the next seed."""

    beta: float
    free_nats: float
    rung: int
    rerun: bool = False

    @property
    def point(self) -> tuple[float, float]:
        return self.beta, self.free_nats


def chapter_spec(steps: int, parameters: Mapping[str, Any]) -> GridSpec:
    """Notebook 02's parameters (``GridNotebookDefaults``' names) as a GridSpec: the preset for ``steps``-step
    windows, early stopping sooner than the thesis."""
    values = {field.name: parameters[field.name] for field in fields(GridNotebookDefaults)}
    return GridSpec(
        tuple(values["betas"]),
        tuple(values["free_nats_values"]),
        preset(values["model_preset"], steps=steps),
        TrainConfig(early_stopping_patience=TRIAL_PATIENCE, seed=values["seed"]),
        values["eval_windows"],
        tuple(values["rung_budgets"]),
        values["budget_unit"],
        values["kl_form"],
        values["seed"],
        values["guard_minutes"],
    )


def load_choice(run_dir: str | os.PathLike) -> dict | None:
    """The grid search's chosen ``beta`` and ``free_nats`` (nats), or None if notebook 02 has not run."""
    path = Path(run_dir) / GRID_CHOICE
    if not path.exists():
        return None
    choice = json.loads(path.read_text())
    if missing := {"beta", "free_nats"} - choice.keys():
        raise ValueError(f"{path} lacks {sorted(missing)}: re-run notebooks/02_grid_search.ipynb")
    return choice


def write_choice(run_dir: str | os.PathLike, beta: float, free_nats: float, **why) -> Path:
    """Write the chosen beta and lambda (nats) for notebook 03, with any explanation fields."""
    path = Path(run_dir) / GRID_CHOICE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"beta": beta, "free_nats": free_nats, **why}, indent=2, sort_keys=True))
    return path


def point_name(beta: float, free_nats: float) -> str:
    """The folder name of a grid point: ``beta=0.5_lambda=33.3``."""
    return f"beta={beta:g}_lambda={free_nats:g}"


def point_folder(run_dir: str | os.PathLike, beta: float, free_nats: float, study_name: str = STUDY_NAME) -> Path:
    """Where the grid point (beta, free_nats) of study ``study_name`` trains, every rung:
    its model is its last rung's."""
    return Path(run_dir) / GRID_SEARCH / study_name / point_name(beta, free_nats)


def job_folder(run_dir: Path, spec: GridSpec, job: Job, study_name: str) -> Path:
    """The point's folder, or for a re-run its ``seed=<n>`` subfolder."""
    folder = point_folder(run_dir, *job.point, study_name)
    return folder / f"seed={spec.rung_config(job.rung, True).seed}" if job.rerun else folder


def storage_name(storage: StorageArg, default: Path) -> str:
    """How a message names ``storage`` (``default`` for None): its URL with the password masked, or its path."""
    if isinstance(storage, optuna.storages.RDBStorage):
        return mask_url(storage.url)
    return mask_url(str(default if storage is None else storage))


def load_study(
    run_dir: str | os.PathLike, storage: StorageArg = None, study_name: str = STUDY_NAME
) -> tuple[optuna.Study, GridSpec]:
    """An existing grid study and its settings; ValueError naming notebook 02 when there is none."""
    default = Path(run_dir) / GRID_STUDY
    try:
        with optuna_quiet():
            study = optuna.load_study(study_name=study_name, storage=open_storage(storage, default, must_exist=True))
        return study, GridSpec.from_dict(study.user_attrs[SPEC_ATTR])
    except (FileNotFoundError, KeyError) as error:
        raise ValueError(
            f"no grid study {study_name!r} in {storage_name(storage, default)}: run notebooks/02_grid_search.ipynb "
            "(or search.run_grid_search) first with this storage; it creates the study"
        ) from error


def job_of(trial: FrozenTrial | optuna.Trial) -> Job | None:
    """The job a trial trains, None for a trial Optuna made when no job was queued."""
    return Job(**trial.user_attrs[JOB_ATTR]) if JOB_ATTR in trial.user_attrs else None


def finished_metrics(trials: list[FrozenTrial]) -> dict[Job, dict[str, Any]]:
    """The metrics of every job with a COMPLETE trial among ``trials``."""
    return {job_of(t): t.user_attrs for t in trials if t.state == TrialState.COMPLETE and job_of(t) is not None}


def scheduled_jobs(spec: GridSpec, finished: dict[Job, dict[str, Any]]) -> list[Job]:
    """Every job the search has reached: rung 0, then the next rung's once one has finished (best: higher sampling
    accuracy, then lower negative ELBO), then the last rung's best two re-run."""
    jobs = [Job(*point, 0) for point in spec.points]
    for rung in range(1, len(spec.rung_budgets) + 1):
        current = [job for job in jobs if job.rung == rung - 1]
        if any(job not in finished for job in current):
            break
        best = [
            job.point
            for job in sorted(
                current,
                key=lambda job: (-finished[job]["sampling_accuracy"], finished[job]["negative_elbo_nats"], *job.point),
            )
        ]
        if rung < len(spec.rung_budgets):
            jobs += [Job(*point, rung) for point in best[: max(2, math.ceil(len(best) / 3))]]  # a third, two at least
        else:
            jobs += [Job(*point, rung - 1, rerun=True) for point in best[:2]]
    return jobs


def train_job(
    spec: GridSpec, job: Job, folder: Path, train_windows: np.ndarray, valid_windows: np.ndarray, device: str | None
) -> dict[str, Any]:
    """Train the job's model in ``folder`` (or go on from the rung before, or find it finished) and score it:
    ``METRIC_COLUMNS``."""
    loss_config = LossConfig(form=spec.kl_form, beta=job.beta, free_nats=job.free_nats)
    config = spec.rung_config(job.rung, job.rerun)
    result = train_or_load(spec.model_config, loss_config, config, train_windows, valid_windows, folder, device)
    sample = valid_windows[data.sample_windows(valid_windows, spec.eval_windows, spec.seed)]
    scores = evaluate(result.model, sample, seed=spec.seed)
    done = json.loads((folder / DONE_FILE).read_text())
    return {
        "negative_elbo_nats": -scores.elbo_nats,
        "reconstruction_nats": scores.reconstruction_nats,
        "kl_bits": scores.kl_bits,
        "teacher_forced_accuracy": scores.teacher_forced_accuracy,
        "sampling_accuracy": scores.posterior_sampling_accuracy,
        "greedy_accuracy": scores.greedy_accuracy,
        "active_dimensions": scores.kl_active_dimensions,
        "eval_windows": scores.n_windows,
        **{name: done[name] for name in ("epochs", "best_epoch", "steps", "stopped")},
        "minutes": done["training_seconds"] / 60,
    }


def with_added_spec_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A study's stored settings with the GridSpec and config fields added since filled in with their defaults
    (``training.with_added_defaults``), each keeping the behaviour from before it existed."""
    defaults = {spec.name: spec.default for spec in fields(GridSpec) if spec.default is not MISSING}
    return with_added_defaults(defaults | stored)


def run_grid_search(
    run_dir: str | os.PathLike,
    spec: GridSpec,
    train_windows: np.ndarray,
    valid_windows: np.ndarray,
    storage: StorageArg = None,
    study_name: str = STUDY_NAME,
    device: str | None = None,
    max_trials: int | None = None,
) -> pd.DataFrame:
    """Create or join (ValueError if it has other settings or data) study ``study_name``, run the jobs not yet done
    (``shared_study.run_jobs``; ``max_trials`` 0: only create it) with notebook 01's splits;
    return ``results_table``."""
    if max_trials is not None and max_trials < 0:
        raise ValueError(f"`max_trials` must be >= 0 or None, got {max_trials}")
    if not re.fullmatch(r"[\w.-]+", study_name):
        raise ValueError(f"`study_name` names a folder: letters, digits, '_', '.', '-' only, got {study_name!r}")
    run_dir = Path(run_dir)
    opened = open_storage(storage, run_dir / GRID_STUDY)
    with optuna_quiet():
        study = optuna.create_study(storage=opened, study_name=study_name, direction="maximize", load_if_exists=True)
    wanted = spec.to_dict() | {"data_sha256": data_fingerprint(train_windows, valid_windows)}
    join_settings(study, SPEC_ATTR, wanted, completed=with_added_spec_defaults)

    def run_job(trial: optuna.Trial, job: dict[str, Any], folder: Path) -> float:
        job = Job(**job)
        print(
            f"beta={job.beta:g}, lambda={job.free_nats:g} nats, rung {job.rung}{' re-run' * job.rerun}: ",
            end="",
            flush=True,
        )
        log = folder / POINT_LOG
        try:
            with output_to(log):
                metrics = train_job(spec, job, folder, train_windows, valid_windows, device)
        except BaseException:
            print(f"failed (see {log})")
            raise
        for name, value in metrics.items():
            trial.set_user_attr(name, value)
        print(
            f"{metrics['steps']:,} steps, epochs {metrics['epochs']} ({metrics['stopped']}), {metrics['minutes']:.1f} "
            f"min; -ELBO "
            f"{metrics['negative_elbo_nats']:.1f} nats, KL {metrics['kl_bits']:.1f} bits, sampling accuracy "
            f"{metrics['sampling_accuracy']:.3f}"
        )
        return metrics["sampling_accuracy"]

    print(
        f"Grid search {study_name!r}: {len(spec.points)} points, rungs of "
        f"{', '.join(f'{b:g}' for b in spec.rung_budgets)} {spec.budget_unit}; {len(study.get_trials(deepcopy=False))} "
        "trials so far"
    )
    run_jobs(
        study,
        opened,
        lambda: [asdict(job) for job in scheduled_jobs(spec, finished_metrics(study.get_trials(deepcopy=False)))],
        lambda job: job_folder(run_dir, spec, Job(**job), study_name),
        run_job,
        max_trials,
    )
    return results_table(run_dir, opened, study_name)


def results_table(run_dir: str | os.PathLike, storage: StorageArg = None, study_name: str = STUDY_NAME) -> pd.DataFrame:
    """One row per grid point, by beta then lambda: beta, free_nats, free_bits; state (COMPLETE: done at the furthest
    rung reached; PRUNED: at a lower one; else its latest job's trial's); rung (the highest it finished) and the
    ``METRIC_COLUMNS`` there; rerun_sampling_accuracy; host (that ran the latest job); folder (its last rung's model,
    relative to ``run_dir``)."""
    study, spec = load_study(run_dir, storage, study_name)
    trials = study.get_trials(deepcopy=False)
    finished = finished_metrics(trials)
    scheduled = scheduled_jobs(spec, finished)
    rows = []
    for point in spec.points:
        last = [job for job in scheduled if job.point == point and not job.rerun][-1]
        done = max(
            (job for job in finished if job.point == point and not job.rerun), key=lambda job: job.rung, default=None
        )
        # the trial that speaks for the latest job: its first COMPLETE, RUNNING, WAITING, else its first
        trial = min(
            (t for t in trials if job_of(t) == last),
            key=lambda t: (LIVE.index(t.state) if t.state in LIVE else 3, t.number),
            default=None,
        )
        rows.append(
            {
                "beta": point[0],
                "free_nats": point[1],
                "free_bits": point[1] / NATS_PER_BIT,
                "state": "PRUNED"
                if last in finished and last.rung < scheduled[-1].rung
                else trial.state.name
                if trial
                else "NOT_STARTED",
                "rung": done.rung if done else None,
                **{name: finished[done][name] if done else None for name in METRIC_COLUMNS},
                "rerun_sampling_accuracy": finished.get(replace(last, rerun=True), {}).get("sampling_accuracy"),
                "host": trial.user_attrs.get(WORKER_ATTR, {}).get("host") if trial else None,
                "folder": point_folder(run_dir, *point, study_name).relative_to(run_dir).as_posix(),
            }
        )
    numeric = [name for name in (*METRIC_COLUMNS, "rung", "rerun_sampling_accuracy") if name != "stopped"]
    return pd.DataFrame(rows).astype(dict.fromkeys(numeric, float))


def completed(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The COMPLETE or PRUNED rows with every one of ``columns`` known; ValueError if there is none."""
    rows = table[table["state"].isin(["COMPLETE", "PRUNED"])].dropna(subset=columns)
    if rows.empty:
        raise ValueError(
            f"no completed grid point with {columns} in the table ({len(table)} rows): run the search first"
        )
    return rows


def choose(table: pd.DataFrame, margin: float = 0.01) -> dict[str, Any]:
    """The point of ``SELECTION_RULE`` among the last rung's rows of ``results_table``, and why (``write_choice``):
    the margin applied (the larger of ``margin`` and seed_noise, the larger difference between the two seeds of a
    re-run point, None without one), the lead of the best accuracy over the runner-up's and whether it exceeds it."""
    if margin < 0:
        raise ValueError(f"`margin` must be >= 0, got {margin}")
    rows = completed(table, ["sampling_accuracy", "negative_elbo_nats", "rung"])
    rows = rows[rows["rung"] == rows["rung"].max()]
    reran = rows.dropna(subset=["rerun_sampling_accuracy"])
    noise = float((reran["sampling_accuracy"] - reran["rerun_sampling_accuracy"]).abs().max()) if len(reran) else None
    applied = max(margin, noise or 0.0)
    accuracies = rows["sampling_accuracy"].sort_values(ascending=False).tolist()
    lead = accuracies[0] - (accuracies[1:] or accuracies)[0]  # 0 for a single point: nothing separated
    eligible = rows[rows["sampling_accuracy"] >= accuracies[0] - applied - 1e-12]  # 1e-12: 0.81 - 0.01 > 0.80 in floats
    chosen = eligible.sort_values(
        ["negative_elbo_nats", "sampling_accuracy", "beta", "free_nats"], ascending=[True, False, True, True]
    ).iloc[0]
    return {
        "rule": SELECTION_RULE.format(margin=applied),
        "margin": applied,
        "margin_set": margin,
        "seed_noise": noise,
        "lead": lead,
        "separated": lead > applied + 1e-12,
        "best_sampling_accuracy": accuracies[0],
        "eligible_points": len(eligible),
        "last_rung_points": len(rows),
        # not the MACHINE_COLUMNS: choice.json, like tables/02_grid.csv, is then the same on every run of the same seed
        **chosen[
            [
                "beta",
                "free_nats",
                "folder",
                *(name for name in METRIC_COLUMNS if name not in MACHINE_COLUMNS),
                "rung",
                "rerun_sampling_accuracy",
            ]
        ].to_dict(),  # Python values
    }


def describe_choice(choice: dict[str, Any]) -> str:
    """Whether the grid could separate its points and how sure the choice is, in a sentence or two (notebook 02)."""
    noise = (
        "no point was trained with a second seed, so the seed noise is unmeasured"
        if choice["seed_noise"] is None
        else f"two seeds of one point differ by up to {choice['seed_noise']:.3f} in sampling accuracy"
    )
    point = f"beta = {choice['beta']:g}, lambda = {choice['free_nats']:g} nats"
    if choice["separated"]:
        times = f"{choice['lead'] / choice['margin']:.1f} times " if choice["margin"] else "more than "
        return (
            f"The grid separates its points: {noise}, and the best point's sampling accuracy leads the runner-up's by "
            f"{choice['lead']:.3f}, {times}the margin of {choice['margin']:.3f}; the choice, {point}, holds against "
            "that noise."
        )
    return (
        f"The grid cannot separate its points: {noise}, and {choice['eligible_points']} of the "
        f"{choice['last_rung_points']} points of the last rung lie within {choice['margin']:.3f} of the best sampling "
        f"accuracy (the runner-up {choice['lead']:.3f} below it). Among them the lowest negative ELBO picks {point}: "
        "a preference accuracy does not back, so any of them is as good a choice on this evidence."
    )


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
    parser.add_argument(
        "--run-dir", type=Path, required=True, help="run folder of dataset/ (notebook 01), shared by all workers"
    )
    parser.add_argument(
        "--storage",
        default=None,
        help="SQLAlchemy URL or journal file path (default: <run-dir>/grid_search/study.db); "
        "a PostgreSQL password is best left out of the URL, in PGPASSWORD or ~/.pgpass",
    )
    parser.add_argument("--study-name", default=STUDY_NAME)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: a GPU if any, else CPU)")
    parser.add_argument("--max-trials", type=int, default=None, help="stop after this many trials")
    args = parser.parse_args(argv)
    try:
        require_outputs(args.run_dir, [split_file("train"), split_file("valid")], produced_by="01_dataset")
        _, spec = load_study(args.run_dir, args.storage, args.study_name)
    except (MissingInputError, ValueError) as error:  # StorageError too: one line, the password masked
        parser.exit(2, f"error: {mask_url(str(error))}\n")
    table = run_grid_search(
        args.run_dir,
        spec,
        data.load_split(args.run_dir, "train"),
        data.load_split(args.run_dir, "valid"),
        args.storage,
        args.study_name,
        args.device,
        args.max_trials,
    )
    print(table[["beta", "free_nats", "state", "rung", "kl_bits", "sampling_accuracy"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
