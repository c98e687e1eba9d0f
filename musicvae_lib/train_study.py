"""Notebook 03's training, from the command line: for several GPUs (torchrun) or a long run outside Jupyter.

    .venv/bin/torchrun --standalone --nproc_per_node 4 -m musicvae_lib.train_study --profile default
    .venv/bin/python -m musicvae_lib.train_study --profile default -p max_minutes=120     # one process

It trains exactly what notebook 03 would train in the run folder ``results/local/<profile>`` (the
one ``./study.sh --profile <profile>`` uses; ``--reference``: ``results/<profile>``): notebook
03's defaults (``ChapterDefaults``, which its parameters cell mirrors), then the profile's [all] and ["03_training"] keys, then ``-p`` overrides, then
the grid search's choice of beta and lambda (notebook 02) when the run folder holds one. Notebook
03, run afterwards with the same profile, finds the finished run and goes on from it instead of
training again (``train.train_or_load``). Under torchrun each process is one DistributedDataParallel
replica (nccl on GPUs, gloo on CPU); only rank 0 writes.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from musicvae_lib import data, runner, search
from musicvae_lib.loss import LossConfig
from musicvae_lib.model import ModelConfig, preset
from musicvae_lib.train import TrainConfig, TrainResult, train_or_load

NOTEBOOK = "03_training"
TRAINING_FOLDER = "training"
# notebook 03's parameters that are TrainConfig fields; the others (eval_windows, ...) only shape its report
TRAIN_FIELDS = (
    "learning_rate", "batch_size", "lr_schedule", "max_epochs", "max_minutes", "transpose_semitones", "bf16", "seed",
)


def study_configs(
    run_dir: str | Path, model_preset: str, beta: float, free_nats: float, kl_form: str,
    free_bits_over: str = "sequence", **train_fields: Any,
) -> tuple[ModelConfig, LossConfig, TrainConfig, dict | None]:
    """The configs notebook 03 trains with, and the grid search's choice (None without one).

    The choice of notebook 02 (``search.load_choice``) replaces ``beta`` and ``free_nats``; the
    window length comes from the dataset of notebook 01 in ``run_dir``.
    """
    choice = search.load_choice(run_dir)
    if choice:
        beta, free_nats = choice["beta"], choice["free_nats"]
    unknown = set(train_fields) - set(TRAIN_FIELDS)
    if unknown:
        raise ValueError(f"not training parameters of notebook {NOTEBOOK}: {sorted(unknown)}; known: {TRAIN_FIELDS}")
    model_config = preset(model_preset, steps=data.load_summary(run_dir)["steps_per_window"])
    loss_config = LossConfig(form=kl_form, beta=beta, free_nats=free_nats, free_bits_over=free_bits_over)
    return model_config, loss_config, TrainConfig(**train_fields), choice


@dataclass(frozen=True)
class ChapterDefaults:
    """Notebook 03's parameters and their defaults, in its parameters cell's order (a test keeps both in step).

    Small on purpose: run by hand, the notebook trains a "tiny" model for 2 epochs; the profiles
    set the study's sizes.
    """

    model_preset: str = "tiny"
    beta: float = 1.0  # thesis: 1
    free_nats: float = 33.3  # lambda, thesis: 33.3 nats (48 bits)
    kl_form: str = "thesis"
    free_bits_over: str = "sequence"  # thesis and Magenta: lambda clamps each window's KL
    max_epochs: int = 2
    max_minutes: float = 0.0  # 0: no time budget
    batch_size: int = 64  # thesis: 64
    learning_rate: float = 0.001  # thesis: Adam 1e-3
    lr_schedule: str = "plateau"
    transpose_semitones: int = 0
    bf16: str = "auto"
    eval_windows: int = 500
    n_reconstructions: int = 4
    compare_with: str = ""
    seed: int = 0
    run_dir: str = "../results/interactive"


def profile_parameters(profile_name: str, overrides: list[str], notebooks_dir: Path, results_dir: Path) -> dict[str, Any]:
    """Notebook 03's parameters as the runner would pass them, over ``ChapterDefaults``."""
    notebooks = runner.find_notebooks(notebooks_dir)
    notebook = next((n for n in notebooks if n.stem == NOTEBOOK), None)
    if notebook is None:
        raise runner.ConfigError(f"no notebook {NOTEBOOK}.ipynb in {notebooks_dir}")
    profile = runner.load_profile(notebooks_dir.parent / "profiles" / f"{profile_name}.toml", notebooks)
    parsed = dict(runner.parse_override(text) for text in overrides)
    unknown = set(parsed) - notebook.parameters
    if unknown:
        raise runner.ConfigError(f"-p {', '.join(sorted(unknown))}: not parameters of {NOTEBOOK}.ipynb")
    passed = runner.notebook_parameters(notebook, profile, parsed, results_dir / profile_name)
    # the runner passes run_dir relative to notebooks/, where papermill runs; here it is read from anywhere
    passed[runner.RUN_DIR_PARAMETER] = str((results_dir / profile_name).resolve())
    return asdict(ChapterDefaults()) | passed


def train_from_parameters(parameters: dict[str, Any], device: str | None = None) -> TrainResult:
    """Train (or find finished) notebook 03's model in ``parameters['run_dir']/training``."""
    run_dir = Path(parameters[runner.RUN_DIR_PARAMETER])
    runner.require_outputs(run_dir, ["dataset/summary.json", "dataset/train.npy"], produced_by="01_dataset")
    model_config, loss_config, train_config, _ = study_configs(
        run_dir, parameters["model_preset"], parameters["beta"], parameters["free_nats"], parameters["kl_form"],
        parameters["free_bits_over"], **{name: parameters[name] for name in TRAIN_FIELDS},
    )
    train_windows, valid_windows = data.load_split(run_dir, "train"), data.load_split(run_dir, "valid")
    return train_or_load(
        model_config, loss_config, train_config, train_windows, valid_windows, run_dir / TRAINING_FOLDER, device
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=".venv/bin/python -m musicvae_lib.train_study", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True, help="profile in profiles/; the run folder is results/local/<profile>")
    parser.add_argument("-p", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter of notebook 03, as the runner's -p")
    parser.add_argument("--notebooks", type=Path, default=runner.NOTEBOOKS_DIR)
    parser.add_argument("--results", type=Path, default=None,
                        help="folder of run folders (default: results/local/ beside notebooks/, as ./study.sh)")
    parser.add_argument("--reference", action="store_true", help="train into the committed reference run results/<profile>/")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: this process' GPU if any, else CPU)")
    args = parser.parse_args(argv)
    results_dir = args.results if args.results is not None else runner.default_results_dir(args.notebooks, args.reference)
    parameters = profile_parameters(args.profile, args.overrides, args.notebooks, results_dir)
    result = train_from_parameters(parameters, args.device)
    if os.environ.get("RANK", "0") == "0":
        print(f"{result.out_dir}: stopped by {result.stopped} after {result.epochs} epochs, {result.steps} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
