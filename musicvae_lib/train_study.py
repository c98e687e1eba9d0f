"""Notebook 03's training, from the command line: for several GPUs (torchrun) or a long run outside Jupyter.

    .venv/bin/torchrun --standalone --nproc_per_node 4 -m musicvae_lib.train_study --profile default
    .venv/bin/python -m musicvae_lib.train_study --profile default -p max_steps=40000     # one process

It trains exactly what notebook 03 would train in the run folder ``results/local/<profile>`` (the one ``./study.sh
--profile <profile>`` uses; ``--reference``: ``results/<profile>``): notebook 03's defaults
(``TrainingNotebookDefaults``, which its parameters cell mirrors), then the profile's [all] and ["03_training"] keys,
then ``-p`` overrides; the loss is the recipe's (``-p recipe=thesis``: the thesis', with the grid search's beta and
lambda of notebook 02 when the run folder holds one), explicit loss parameters over it. Notebook 03, run afterwards with
the same profile, finds the finished run and goes on from it instead of training again (``training.train_or_load``).
Under torchrun each process is one DistributedDataParallel replica (nccl on GPUs, gloo on CPU); only rank 0 writes. With
``baseline_preset`` set, the baseline is trained next, alike, into ``training_baseline/``
(``run_folder.BASELINE_TRAINING``)."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from musicvae_lib import data, loss, profiles, run_folder, search
from musicvae_lib.budgets import stop_of
from musicvae_lib.loss import LossConfig
from musicvae_lib.model import ModelConfig, preset
from musicvae_lib.training import DONE_FILE, TrainConfig, TrainResult, train_or_load

NOTEBOOK = "03_training"
TRAIN_DEFAULTS = TrainConfig()  # notebook 03's training parameters take TrainConfig's defaults unless said otherwise


# notebook 03's loss parameters -> LossConfig fields; a negative number or "" keeps the recipe's value
LOSS_OVERRIDES = {
    "beta": "beta",
    "free_nats": "free_nats",
    "beta_rate": "beta_rate",
    "kl_form": "form",
    "free_bits_over": "free_bits_over",
}


def loss_overrides(parameters: dict[str, Any]) -> dict[str, Any]:
    """The loss settings ``parameters`` set explicitly, as LossConfig fields: those not left at -1 or ""."""
    return {
        field: parameters[name]
        for name, field in LOSS_OVERRIDES.items()
        if name in parameters
        and parameters[name] != ""
        and not (isinstance(parameters[name], (int, float)) and parameters[name] < 0)
    }


def recipe_loss(recipe: str, choice: dict | None, overrides: dict[str, Any] | None = None) -> LossConfig:
    """The loss of ``recipe`` (``loss.RECIPES``); the thesis' takes the grid search's beta and lambda;
    then ``overrides``.

    Magenta's recipe ignores the grid's choice: the grid searched the thesis' form.
    """
    config = loss.recipe(recipe)
    if recipe == "thesis" and choice:
        config = replace(config, beta=choice["beta"], free_nats=choice["free_nats"])
    return replace(config, **(overrides or {}))


def study_configs(
    run_dir: str | Path,
    model_preset: str,
    recipe: str = "magenta",
    overrides: dict[str, Any] | None = None,
    **train_fields: Any,
) -> tuple[ModelConfig, LossConfig, TrainConfig, dict | None]:
    """The configs notebook 03 trains with, and the grid search's choice (None without one).

    The loss is ``recipe_loss``: the thesis' recipe takes the choice of notebook 02
    (``search.load_choice``); ``overrides`` (LossConfig fields) win over both. The window length
    comes from the dataset of notebook 01 in ``run_dir``.
    """
    choice = search.load_choice(run_dir)
    unknown = set(train_fields) - set(TRAIN_FIELDS)
    if unknown:
        raise ValueError(f"not training parameters of notebook {NOTEBOOK}: {sorted(unknown)}; known: {TRAIN_FIELDS}")
    model_config = preset(model_preset, steps=data.load_summary(run_dir)["steps_per_window"])
    return model_config, recipe_loss(recipe, choice, overrides), TrainConfig(**train_fields), choice


RECIPE_REASONS = {
    "magenta": (
        "it is the study's default: at equal training time on the study's data it reconstructed more accurately "
        'than the thesis\' recipe (benchmarks/recipe.py, README "Which recipe?"), since without free bits each '
        "window spends the KL it needs, where the thesis' lambda, clamped per window, holds every window near the same "
        "amount"
    ),
    "thesis": (
        "it is the thesis' own recipe, one parameter away from the study's default (Magenta's), so both can be reported"
    ),
    "magenta-16bar": (
        "it is Magenta's own loss for 16-bar melodies (hierdec-mel_16bar): 256 free bits let z carry that much before "
        "the KL costs anything, where the thesis' 48 bits left an earlier 16-bar model ignoring z"
    ),
}


def describe_recipe(recipe: str, loss_config: LossConfig, choice: dict | None) -> str:
    """Which recipe notebook 03 trains, its loss, why, what became of the grid search's choice, and any override."""
    grid = "Notebook 02 has not run."
    if choice:
        used = "used here" if recipe == "thesis" else "reported, not used: the grid searched the thesis' form"
        grid = (
            f"The grid search (notebook 02) chose beta = {choice['beta']:g}, "
            f"lambda = {choice['free_nats']:g} nats ({used})."
        )
    changed = [
        f"{field} = {getattr(loss_config, field)!r}"
        for field in LOSS_OVERRIDES.values()
        if getattr(loss_config, field) != getattr(recipe_loss(recipe, choice), field)
    ]
    overridden = f" This run's parameters change the recipe: {', '.join(changed)}." if changed else ""
    return (
        f"This run trains the {recipe} recipe: {loss.describe_loss(loss_config)}. Why this recipe: "
        f"{RECIPE_REASONS[recipe]}. {grid}{overridden}"
    )


@dataclass(frozen=True)
class TrainingNotebookDefaults:
    """Notebook 03's parameters and their defaults, in its parameters cell's order (a test keeps both in step).

    Small on purpose: run by hand, the notebook trains a "tiny" model for 2 epochs; the profiles
    set the study's sizes. The loss follows ``recipe``; the loss parameters below it override it.
    A parameter named as a TrainConfig field is that field (``TRAIN_FIELDS``): its default and its
    meaning are TrainConfig's, declared there once; only ``max_epochs`` is smaller here.
    """

    model_preset: str = "tiny"
    recipe: str = (
        "magenta"  # loss.RECIPES: "magenta" (cat-mel_2bar), "thesis" (with the grid's beta and lambda), "magenta-16bar"
    )
    beta: float = -1.0  # -1: the recipe's (Magenta 0.2, annealed; thesis 1 or the grid's)
    free_nats: float = -1.0  # lambda in nats; -1: the recipe's (Magenta 0; thesis 33.3 or the grid's)
    beta_rate: float = -1.0  # -1: the recipe's (Magenta 0.99999; thesis 0, no annealing)
    kl_form: str = ""  # "": the recipe's; "thesis" or "magenta"
    free_bits_over: str = ""  # "": the recipe's ("sequence"); or "batch"
    max_epochs: int = 2  # TrainConfig's ceiling is 100: a notebook run by hand stays short
    max_steps: int = TRAIN_DEFAULTS.max_steps
    max_minutes: float = TRAIN_DEFAULTS.max_minutes
    batch_size: int = TRAIN_DEFAULTS.batch_size
    learning_rate: float = TRAIN_DEFAULTS.learning_rate
    lr_schedule: str = TRAIN_DEFAULTS.lr_schedule
    early_stopping_patience: int = TRAIN_DEFAULTS.early_stopping_patience
    transpose_semitones: int = TRAIN_DEFAULTS.transpose_semitones
    decoder_input_dropout: float = TRAIN_DEFAULTS.decoder_input_dropout
    bf16: str = TRAIN_DEFAULTS.bf16
    prior: str = "neighbours"  # prior.PRIORS: the neighbour blend, the mixture fitted to the mu, or "normal", N(0, I)
    prior_components: int = 32
    prior_spread: float = 1.0  # prior.StudyPrior.spread: below 1 draws nearer the mixture's centres
    blend_neighbours: tuple[int, ...] = (1, 3)  # the neighbour blend's candidate knobs (prior_choice.candidate_knobs)
    blend_shares: tuple[float, ...] = (0.5,)
    blend_scales: tuple[float, ...] = (1.0, 1.5)
    blend_pairs: int = 0  # components of the blend, pairs of training windows; 0: one for every training window
    choice_melodies: int = 200  # melodies drawn from each prior, and validation melodies, for the choice
    eval_windows: int = 500
    n_reconstructions: int = 4
    baseline_preset: str = ""  # "": none; a preset with the model's encoder and z, trained alike, e.g. "study-flat16"
    seed: int = TRAIN_DEFAULTS.seed
    run_dir: str = "../results/interactive"


# notebook 03's parameters that are TrainConfig fields; the others (eval_windows, ...) only shape its report
TRAIN_FIELDS = tuple(
    spec.name for spec in fields(TrainingNotebookDefaults) if spec.name in {f.name for f in fields(TrainConfig)}
)


def notebook_values(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Notebook 03's parameters as ``namespace`` (the notebook's ``globals()``) holds them,
    by ``TrainingNotebookDefaults``' names."""
    return {spec.name: namespace[spec.name] for spec in fields(TrainingNotebookDefaults)}


def parameter_configs(parameters: Mapping[str, Any]) -> tuple[ModelConfig, LossConfig, TrainConfig, dict | None]:
    """``study_configs`` for notebook 03's ``parameters`` (all of them,
    as ``notebook_values`` or ``profile_parameters`` give)."""
    return study_configs(
        Path(parameters[profiles.RUN_DIR_PARAMETER]),
        parameters["model_preset"],
        parameters["recipe"],
        loss_overrides(parameters),
        **{name: parameters[name] for name in TRAIN_FIELDS},
    )


def profile_parameters(
    profile_name: str, overrides: list[str], notebooks_dir: Path, results_dir: Path
) -> dict[str, Any]:
    """Notebook 03's parameters as the runner would pass them, over ``TrainingNotebookDefaults``."""
    notebooks = profiles.find_notebooks(notebooks_dir)
    notebook = next((n for n in notebooks if n.stem == NOTEBOOK), None)
    if notebook is None:
        raise profiles.ConfigError(f"no notebook {NOTEBOOK}.ipynb in {notebooks_dir}")
    profile = profiles.load_profile(notebooks_dir.parent / "profiles" / f"{profile_name}.toml", notebooks)
    parsed = dict(profiles.parse_override(text) for text in overrides)
    unknown = set(parsed) - notebook.parameters
    if unknown:
        raise profiles.ConfigError(f"-p {', '.join(sorted(unknown))}: not parameters of {NOTEBOOK}.ipynb")
    passed = profiles.notebook_parameters(notebook, profile, parsed, results_dir / profile_name)
    # the runner passes run_dir relative to notebooks/, where papermill runs; here it is read from anywhere
    passed[profiles.RUN_DIR_PARAMETER] = str((results_dir / profile_name).resolve())
    return asdict(TrainingNotebookDefaults()) | passed


def baseline_config(model_config: ModelConfig, baseline_preset: str) -> ModelConfig:
    """The baseline's sizes: ``baseline_preset`` on the model's window length;
    ValueError unless it has the model's encoder and z.

    A baseline differs from the model in its decoder only, so that a difference in their figures is the decoder's.
    """
    config = preset(baseline_preset, steps=model_config.steps)
    shared = ("z_size", "encoder_size", "encoder_layers")
    differing = [
        f"{name} {getattr(config, name)} vs {getattr(model_config, name)}"
        for name in shared
        if getattr(config, name) != getattr(model_config, name)
    ]
    if differing:
        raise ValueError(
            f"the baseline {baseline_preset!r} must have the model's encoder and z, but differs in "
            f"{', '.join(differing)}"
        )
    return config


def describe_training(result: TrainResult, epochs: pd.DataFrame) -> str:
    """How a training run ended: what stopped it (``training.describe_stop``, from its done.json), its epochs,
    steps, minutes and speed, and its best epoch (``epochs.csv``)."""
    stop = stop_of(json.loads((result.out_dir / DONE_FILE).read_text()))
    return (
        f"Stopped by {stop} after {result.epochs} epochs ({result.steps:,} steps, "
        f"{epochs['seconds'].sum() / 60:.1f} minutes, {epochs['sequences_per_second'].median():.0f} sequences/s, "
        f"bf16 {'on' if result.bf16 else 'off'}"
        f"{', each step one CUDA graph' if result.step_path == 'cuda_graph' else ''}); "
        f"the best validation loss came at epoch {result.best_epoch}."
    )


def train_from_parameters(parameters: dict[str, Any], device: str | None = None, baseline: bool = False) -> TrainResult:
    """Train (or find finished) notebook 03's model in ``parameters['run_dir']/training``;
    with ``baseline``, its baseline.

    The baseline (``baseline_preset``, ``baseline_config``) trains with the model's loss, data and
    budget into ``run_folder.BASELINE_TRAINING``, with the same resume rules (``training.train_or_load``).
    """
    run_dir = Path(parameters[profiles.RUN_DIR_PARAMETER])
    run_folder.require_outputs(
        run_dir, [run_folder.DATASET_SUMMARY, run_folder.split_file("train")], produced_by="01_dataset"
    )
    model_config, loss_config, train_config, _ = parameter_configs(parameters)
    if baseline:
        model_config = baseline_config(model_config, parameters["baseline_preset"])
    train_windows, valid_windows = data.load_split(run_dir, "train"), data.load_split(run_dir, "valid")
    folder = run_dir / (run_folder.BASELINE_TRAINING if baseline else run_folder.TRAINING)
    return train_or_load(model_config, loss_config, train_config, train_windows, valid_windows, folder, device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=".venv/bin/python -m musicvae_lib.train_study", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--profile", required=True, help="profile in profiles/; the run folder is results/local/<profile>"
    )
    parser.add_argument(
        "-p",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter of notebook 03, as the runner's -p",
    )
    run_folder.add_folder_options(
        parser,
        "folder of run folders (default: results/local/ beside notebooks/, as ./study.sh)",
        "train into the committed reference run results/<profile>/",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: this process' GPU if any, else CPU)")
    args = parser.parse_args(argv)
    results_dir = run_folder.results_dir(args)
    parameters = profile_parameters(args.profile, args.overrides, args.notebooks, results_dir)
    for baseline in [False, True] if parameters["baseline_preset"] else [False]:  # the model, then its baseline
        result = train_from_parameters(parameters, args.device, baseline)
        if os.environ.get("RANK", "0") == "0":
            print(f"{result.out_dir}: stopped by {result.stopped} after {result.epochs} epochs, {result.steps} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
