"""Which training recipe should the study use? Trains each variant on equal budgets and prints figures.

    .venv/bin/python benchmarks/recipe.py [--run-dir results/default] [--minutes 12] [--variants thesis_b1 batch_b1 ...]
    .venv/bin/python benchmarks/recipe.py --epochs 6          # equal epochs instead: immune to a busy machine

Every variant trains the study model (``--preset``) from the same seed on the run folder's training
split (notebook 01) for the same budget: ``--minutes`` of training (the study's own kind of budget;
compare only runs made on one idle machine) or ``--epochs``. Each is then scored on the first
``--eval-windows`` validation windows:

- greedy accuracy with z = mu, and Magenta's evaluation accuracy (the paper's "sampling" column);
- KL in bits per window and active units (Var of mu >= 0.01);
- realism: the share of ``--samples`` melodies decoded at temperature 1 whose features all lie in
  the training melodies' 1st-99th percentile ranges (notebook 07's measure), with z from N(0, I)
  and from a 32-component Gaussian mixture fitted to the training windows' mu (``prior``), and the
  share of those melodies that copy a training window up to transposition (notebook 06's measure).

Trained variants are kept in ``--out`` (resumable: a finished variant is loaded, not retrained).
Prints one table, asserts nothing; ``--csv`` also writes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from musicvae_lib import data, evaluate, inference, latent, model, originality, prior, runner, training
from musicvae_lib.loss import LossConfig

THESIS = LossConfig(beta=1.0, free_nats=33.3)  # beta * max(KL, lambda), lambda 48 bits per window
MAGENTA = LossConfig(form="magenta", beta=0.2, free_nats=0.0, beta_rate=0.99999)  # cat-mel_2bar: beta annealed to 0.2
# name -> (loss, training fields): the variants of the recipe study
VARIANTS: dict[str, tuple[LossConfig, dict]] = {
    "thesis_b1": (THESIS, {}),
    "thesis_b2": (dataclasses.replace(THESIS, beta=2.0), {}),
    "thesis_b1_92bits": (dataclasses.replace(THESIS, free_nats=64.0), {}),
    "thesis_b2_92bits": (dataclasses.replace(THESIS, beta=2.0, free_nats=64.0), {}),
    "batch_b1": (dataclasses.replace(THESIS, free_bits_over="batch"), {}),
    "thesis_b1_cosine": (THESIS, {"lr_schedule": "cosine", "min_learning_rate": 5e-5}),
    "batch_b1_cosine": (
        dataclasses.replace(THESIS, free_bits_over="batch"),
        {"lr_schedule": "cosine", "min_learning_rate": 5e-5},
    ),
    "thesis_b1_batch256": (THESIS, {"batch_size": 256, "learning_rate": 2e-3}),  # rate scaled by sqrt(4)
    "thesis_b1_sampling": (THESIS, {"sampling_rate": 2000.0}),  # Magenta's inverse sigmoid: feeds samples late
    "magenta_2bar": (MAGENTA, {}),
    "magenta_2bar_exponential": (MAGENTA, {"lr_schedule": "exponential"}),  # Magenta's own decay, 0.9999 a step
    "magenta_2bar_cosine": (MAGENTA, {"lr_schedule": "cosine", "min_learning_rate": 5e-5}),
    "magenta_2bar_batch256": (MAGENTA, {"batch_size": 256, "learning_rate": 2e-3}),
    "magenta_2bar_sampling": (MAGENTA, {"sampling_rate": 1000.0}),  # Magenta's cat-mel_2bar rate
}
MIXTURE_COMPONENTS = 32


def train_variant(
    name: str, budget: dict, preset: str, train_windows: np.ndarray, valid_windows: np.ndarray, out_dir: Path, seed: int
) -> training.TrainResult:
    """The variant trained (or loaded) with the budget's max_minutes or max_epochs; early stopping off."""
    loss_config, fields = VARIANTS[name]
    config = training.TrainConfig(seed=seed, early_stopping_patience=10_000, **(budget | fields))
    model_config = model.preset(preset, steps=train_windows.shape[1])
    folder = out_dir / (name if seed == 0 else f"{name}_seed{seed}")
    return training.train_or_load(model_config, loss_config, config, train_windows, valid_windows, folder, "cpu")


def realism(windows: np.ndarray, ranges: pd.DataFrame, train_windows: np.ndarray) -> tuple[float, float]:
    """Share of windows inside every training range, and share copying a training window."""
    inside = prior.within_ranges(windows, ranges).all(axis=1).mean()
    return float(inside), originality.exact_copy_rate(windows, train_windows)


def score(
    result: training.TrainResult,
    valid_windows: np.ndarray,
    train_windows: np.ndarray,
    ranges: pd.DataFrame,
    samples: int,
) -> dict:
    """The figures of one trained variant (see the module docstring)."""
    vae = result.model
    reconstruction = evaluate.evaluate(vae, valid_windows, seed=0)
    valid_mu, _ = inference.encode_windows(vae, valid_windows)
    train_mu, _ = inference.encode_windows(vae, train_windows)
    mixture = prior.fit_latent_mixture(train_mu, MIXTURE_COMPONENTS, seed=0)
    rng = np.random.default_rng(0)
    normal_z = prior.standard_normal(vae.config.z_size).sample(samples, rng)
    mixture_z = mixture.sample(samples, rng)
    normal_inside, normal_copies = realism(inference.decode_latents(vae, normal_z, 1.0, seed=1), ranges, train_windows)
    mixture_inside, mixture_copies = realism(
        inference.decode_latents(vae, mixture_z, 1.0, seed=2), ranges, train_windows
    )
    return {
        "steps": result.steps,
        "greedy": reconstruction.greedy_accuracy,
        "magenta_eval": reconstruction.posterior_sampling_accuracy,
        "teacher_forced_q": reconstruction.posterior_teacher_forced_accuracy,
        "kl_bits": reconstruction.kl_bits,
        "active_units": latent.active_units(valid_mu),
        "realism_normal": normal_inside,
        "realism_mixture": mixture_inside,
        "copies_normal": normal_copies,
        "copies_mixture": mixture_copies,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("results/default"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=12.0, help="training minutes per variant (default)")
    budget.add_argument("--epochs", type=int, default=None, help="equal epochs instead of equal minutes")
    parser.add_argument("--preset", default="study")
    parser.add_argument("--seed", type=int, default=0, help="training seed (weights, batches, latent noise)")
    parser.add_argument("--eval-windows", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000, help="melodies per prior for realism")
    parser.add_argument("--out", type=Path, default=Path("results/local/recipe"))
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args()
    budget = (
        {"max_epochs": args.epochs, "max_minutes": 0.0}
        if args.epochs
        else {"max_epochs": 1000, "max_minutes": args.minutes}
    )
    train_windows, valid_windows = data.load_split(args.run_dir, "train"), data.load_split(args.run_dir, "valid")
    valid_windows = valid_windows[: args.eval_windows]
    ranges = prior.feature_ranges(train_windows)
    print(
        f"{runner.cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads; budget {budget}",
        flush=True,
    )
    rows = []
    for name in args.variants:
        started = time.perf_counter()
        result = train_variant(name, budget, args.preset, train_windows, valid_windows, args.out, args.seed)
        rows.append(
            {"variant": name, "seed": args.seed, **score(result, valid_windows, train_windows, ranges, args.samples)}
        )
        print(f"{name}: {rows[-1]} ({(time.perf_counter() - started) / 60:.1f} min)", flush=True)
    table = pd.DataFrame(rows).set_index("variant")
    print(table.to_string(float_format=lambda value: f"{value:.3f}"))
    if args.csv:
        table.to_csv(args.csv)


if __name__ == "__main__":
    main()
