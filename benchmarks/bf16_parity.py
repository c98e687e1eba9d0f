"""Does bf16 autocast learn as well as fp32? Prints figures, asserts nothing.

    .venv/bin/python benchmarks/bf16_parity.py [--run-dir results/default] [--steps 1000] [--preset study]

Trains the same model twice from the same seed on the run folder's training split (written by
notebook 01), once in fp32 and once with bf16 autocast, for the same number of optimiser steps,
and prints validation teacher-forced accuracy, reconstruction and wall time of both. The study
keeps bf16 on by default only if the two accuracies lie within 0.5 points.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from musicvae_lib import data, loss, model, train


def train_for_steps(bf16: bool, steps: int, preset: str, train_windows, valid_windows, out_dir: Path) -> dict:
    """Train ``steps`` optimiser steps (whole epochs of batch 64, the last one cut by its size) and report."""
    batches_per_epoch = len(train_windows) // 64
    epochs = -(-steps // batches_per_epoch)
    windows = train_windows[: steps * 64] if steps < batches_per_epoch else train_windows
    config = train.TrainConfig(bf16=bf16, max_epochs=epochs, early_stopping_patience=epochs, seed=0)
    started = time.perf_counter()
    train.train(model.preset(preset), loss.LossConfig(), config, windows, valid_windows, out_dir, device="cpu")
    last = pd.read_csv(out_dir / train.EPOCHS_LOG).iloc[-1]
    return {
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
    args = parser.parse_args()
    train_windows, valid_windows = data.load_split(args.run_dir, "train"), data.load_split(args.run_dir, "valid")
    with tempfile.TemporaryDirectory() as scratch:
        rows = [
            train_for_steps(bf16, args.steps, args.preset, train_windows, valid_windows, Path(scratch) / str(bf16))
            for bf16 in (False, True)
        ]
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    gap = 100 * (table["valid accuracy"].iloc[1] - table["valid accuracy"].iloc[0])
    print(f"bf16 - fp32 validation accuracy: {gap:+.2f} points (the study's bar: within 0.5); "
          f"speed-up {table['minutes'].iloc[0] / table['minutes'].iloc[1]:.2f}x")


if __name__ == "__main__":
    main()
