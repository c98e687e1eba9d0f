"""Does bf16 autocast learn as well as fp32? Prints figures, asserts nothing.

    .venv/bin/python benchmarks/bf16_parity.py [--run-dir results/default] [--steps 1000] [--preset study] [--seeds 0 1]

Trains the same model from the same seed on the run folder's training split (written by notebook
01), once in fp32 and once with bf16 autocast, for the same number of optimiser steps, for each
seed, and prints validation teacher-forced accuracy, reconstruction and wall time. The study keeps
bf16 on by default only if the accuracies lie within 0.5 points; with several seeds the fp32 runs'
own spread shows how much of a gap is noise of the seed (weights and batch order).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from musicvae_lib import data, loss, model, training


def train_for_steps(
    bf16: bool, steps: int, preset: str, seed: int, train_windows, valid_windows, out_dir: Path
) -> dict:
    """Train ``steps`` optimiser steps (whole epochs of batch 64, the last one cut by its size) and report."""
    batches_per_epoch = len(train_windows) // 64
    epochs = -(-steps // batches_per_epoch)
    windows = train_windows[: steps * 64] if steps < batches_per_epoch else train_windows
    config = training.TrainConfig(bf16=bf16, max_epochs=epochs, early_stopping_patience=epochs, seed=seed)
    started = time.perf_counter()
    training.train(model.preset(preset), loss.LossConfig(), config, windows, valid_windows, out_dir, device="cpu")
    last = pd.read_csv(out_dir / training.EPOCHS_LOG).iloc[-1]
    return {
        "seed": seed,
        "precision": "bf16" if bf16 else "fp32",
        "steps": int(last["step"]),
        "valid accuracy": last["valid/metrics/accuracy"],
        "valid r_loss (nats)": last["valid/losses/r_loss"],
        "valid KL (bits)": last["valid/losses/kl_bits"],
        "minutes": (time.perf_counter() - started) / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("results/default"))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--preset", default="study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    train_windows, valid_windows = data.load_split(args.run_dir, "train"), data.load_split(args.run_dir, "valid")
    with tempfile.TemporaryDirectory() as scratch:
        rows = [
            train_for_steps(
                bf16, args.steps, args.preset, seed, train_windows, valid_windows, Path(scratch) / f"{seed}-{bf16}"
            )
            for seed in args.seeds
            for bf16 in (False, True)
        ]
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    accuracy = table.pivot(index="seed", columns="precision", values="valid accuracy")
    gaps = 100 * (accuracy["bf16"] - accuracy["fp32"])
    minutes = table.groupby("precision")["minutes"].sum()
    print(
        "bf16 - fp32 validation accuracy per seed: "
        + ", ".join(f"seed {seed} {gap:+.2f}" for seed, gap in gaps.items())
        + f" points; mean {gaps.mean():+.2f} (the study's bar: within 0.5); speed-up "
        f"{minutes['fp32'] / minutes['bf16']:.2f}x"
    )
    if len(accuracy) > 1:
        print(f"fp32 alone, seed to seed: {100 * (accuracy['fp32'].max() - accuracy['fp32'].min()):.2f} points apart")


if __name__ == "__main__":
    main()
