"""The logs of a run and what they add up to: steps.csv, epochs.csv, and reading the loss spikes off them.

- ``steps.csv``: one row per optimiser step (loss, ``losses/r_loss``, ``losses/kl_bits``,
  ``global_norm`` before clipping, ``learning_rate``), so that a notebook can mark the sudden jumps
  the thesis saw in its loss curve. Rows are written in chunks (at each progress-bar update,
  checkpoint, epoch end): a step's values stay on the device (``PendingStep``), so no step waits
  for the GPU;
- ``epochs.csv``: one row per epoch, training means and validation values side by side.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, TextIO

import pandas as pd
from torch import Tensor

from musicvae_lib.loss import NATS_PER_BIT
from musicvae_lib.training.config import CheckpointError

# Magenta's summary names (base_model.py, music_vae_train.py) wherever Magenta logs the quantity.
STEP_COLUMNS = (
    "step",
    "epoch",
    "loss",
    "losses/r_loss",
    "losses/kl_bits",
    "losses/kl_beta",
    "metrics/accuracy",
    "global_norm",  # before clipping, as Magenta's
    "learning_rate",
    "teacher_probability",  # scheduled sampling: chance that a decoder input is the true token
)
EPOCH_COLUMNS = (
    "epoch",
    "step",
    "train/loss",
    "train/losses/r_loss",
    "train/losses/kl_bits",
    "train/losses/kl_beta",
    "train/metrics/accuracy",
    "valid/loss",
    "valid/losses/r_loss",
    "valid/losses/kl_bits",
    "valid/losses/kl_beta",
    "valid/metrics/accuracy",
    "learning_rate",  # of the epoch's last step; a plateau cut shows in the next row
    "global_norm/mean",
    "global_norm/max",
    "seconds",  # wall time of the epoch, validation included
    "sequences_per_second",  # training throughput, validation excluded
)
TIMING_COLUMNS = ("seconds", "sequences_per_second")

# between progress-bar updates (the runner keeps only a bar's last state); steps.csv gets the steps since
# the last update then too, so that a step never waits for the device to hand back its values
PROGRESS_SECONDS = 10.0


class CsvLog:
    """A CSV file written a row at a time; on resume cut back to the size the checkpoint recorded."""

    def __init__(self, path: Path, columns: tuple[str, ...], resume_size: int | None):
        self.path, self.columns = path, columns
        if resume_size is None:
            with open(path, "w", newline="") as file:
                csv.writer(file).writerow(columns)
        else:
            self._truncate(resume_size)
        self.file: TextIO = open(path, "a", newline="")
        self.writer = csv.writer(self.file)

    def _truncate(self, size: int) -> None:
        actual = self.path.stat().st_size if self.path.exists() else -1
        if actual < size:
            raise CheckpointError(
                f"{self.path} holds {max(actual, 0)} bytes but the checkpoint recorded {size}: the log was "
                "changed or deleted after the checkpoint; restore it or start the run over in a new folder"
            )
        with open(self.path, "r+b") as file:
            file.truncate(size)
        with open(self.path, newline="") as file:
            header = tuple(next(csv.reader(file), ()))
        if header != self.columns:
            raise CheckpointError(f"{self.path} has columns {header}, expected {self.columns}")

    def write(self, rows: Iterable[dict[str, float | int]]) -> None:
        """Append ``rows`` and flush, so a notebook can follow a run as it trains."""
        self.writer.writerows([row[column] for column in self.columns] for row in rows)
        self.file.flush()

    def flush(self) -> int:
        """Flush to the OS (enough to survive a killed process) and return the file size in bytes."""
        self.file.flush()
        return os.fstat(self.file.fileno()).st_size

    def close(self) -> None:
        self.file.close()


@dataclass
class PendingStep:
    """A step whose logged values are still on the device: they are read many steps at a time
    (``Trainer.write_pending``), since reading them at once would make every step wait for the device."""

    step: int
    epoch: int
    sums: Tensor  # ``batch_sums``, added over processes
    global_norm: Tensor  # before clipping
    beta: float
    learning_rate: float
    teacher_probability: float
    seconds: float = 0.0  # wall time of the step, batch preparation included


def per_sequence_means(sums: list[float], beta: float) -> dict[str, float]:
    """Per-sequence means of ``batch_sums`` under Magenta's names."""
    sequences, loss, r_loss, kl, correct, tokens = sums
    return {
        "loss": loss / sequences,
        "losses/r_loss": r_loss / sequences,
        "losses/kl_bits": kl / sequences / NATS_PER_BIT,
        "losses/kl_beta": beta,
        "metrics/accuracy": correct / tokens,
    }


def step_row(record: PendingStep, sums: list[float], global_norm: float) -> dict[str, float]:
    """A steps.csv row: ``record``'s step with its ``batch_sums`` and global norm, read off the device."""
    return {
        "step": record.step,
        "epoch": record.epoch,
        **per_sequence_means(sums, record.beta),
        "global_norm": global_norm,
        "learning_rate": record.learning_rate,
        "teacher_probability": record.teacher_probability,
    }


def add_to_epoch_sums(sums: dict[str, float], row: dict[str, float], sequences: int, seconds: float) -> None:
    """Add a step's row (``step_row``) of ``sequences`` windows, trained in ``seconds``,
    to the epoch's running ``sums``."""
    for name, value in (
        ("sequences", sequences),
        ("loss", row["loss"] * sequences),
        ("r_loss", row["losses/r_loss"] * sequences),
        ("kl_bits", row["losses/kl_bits"] * sequences),
        ("beta", row["losses/kl_beta"]),
        ("accuracy", row["metrics/accuracy"]),
        ("global_norm", row["global_norm"]),
        ("steps", 1),
        ("train_seconds", seconds),
    ):
        sums[name] = sums.get(name, 0.0) + value
    sums["global_norm_max"] = max(sums.get("global_norm_max", 0.0), row["global_norm"])
    sums["learning_rate"] = row["learning_rate"]


def epoch_row(
    epoch: int, step: int, sums: dict[str, float], valid: dict[str, float], seconds: float
) -> dict[str, float]:
    """An epochs.csv row: the epoch's training means from ``add_to_epoch_sums``' ``sums`` beside the validation ones."""
    steps, sequences = sums["steps"], sums["sequences"]
    return {
        "epoch": epoch,
        "step": step,
        "train/loss": sums["loss"] / sequences,
        "train/losses/r_loss": sums["r_loss"] / sequences,
        "train/losses/kl_bits": sums["kl_bits"] / sequences,
        "train/losses/kl_beta": sums["beta"] / steps,
        "train/metrics/accuracy": sums["accuracy"] / steps,
        **{f"valid/{name}": value for name, value in valid.items()},
        "learning_rate": sums["learning_rate"],
        "global_norm/mean": sums["global_norm"] / steps,
        "global_norm/max": sums["global_norm_max"],
        "seconds": seconds,
        "sequences_per_second": sequences / sums["train_seconds"],
    }


# ---------------------------------------------------------------------------------------------
# Reading the logs: the loss spikes the thesis saw

SPIKE_WINDOW = 100  # previous steps whose median a step is compared with
SPIKE_RATIO = 1.2  # a spike lies at least 20 % above that median
RECOVERED_RATIO = 1.2  # a next step below this many times the median: the loss came straight back


def loss_spikes(steps: pd.DataFrame) -> pd.DataFrame:
    """Rows of steps.csv whose loss lies ``SPIKE_RATIO`` times above the median of the steps just before it.

    The median of the ``SPIKE_WINDOW`` previous steps (at least half of them) follows the falling
    trend from behind, so a falling loss never counts as a spike, the fast fall at the start
    included. Adds ``running_median``, ``ratio`` and ``next_ratio`` (the following step's loss
    over the same median: how fast the loss comes back).
    """
    loss = steps["loss"]
    median = loss.shift(1).rolling(SPIKE_WINDOW, min_periods=SPIKE_WINDOW // 2).median()
    spikes = steps.assign(running_median=median, ratio=loss / median, next_ratio=loss.shift(-1) / median)
    return spikes[(loss > SPIKE_RATIO * median).fillna(False)].reset_index(drop=True)


def describe_spikes(steps: pd.DataFrame, spikes: pd.DataFrame, grad_clip: float) -> str:
    """Sentences on what the logs say about the spikes: how many, recovery, gradient norms, learning rate."""
    clipped_overall = (steps["global_norm"] > grad_clip).mean()
    clipping = (
        f"The gradient norm exceeds the clipping threshold of {grad_clip:g} on {clipped_overall:.0%} of all steps "
        f"(median norm {steps['global_norm'].median():.1f}), so clipping caps every update's size rather than "
        "reacting to spikes. "
        if clipped_overall > 0.9
        else f"The gradient norm exceeds the clipping threshold of {grad_clip:g} on {clipped_overall:.0%} of steps. "
    )
    if spikes.empty:
        return f"No loss spikes in {len(steps):,} steps (none {SPIKE_RATIO:g}x above the recent median). " + clipping
    recovery = spikes["next_ratio"].median()
    return (
        f"{len(spikes)} spikes in {len(steps):,} steps; the median spike is {spikes['ratio'].median():.2f}x the "
        f"median loss of the {SPIKE_WINDOW} steps before it, and the next step is at {recovery:.2f}x: "
        + (
            "the loss comes straight back, so a spike is one hard batch, not a divergence. "
            if recovery < RECOVERED_RATIO
            else "the loss stays up for more than one step. "
        )
        + f"At spikes the gradient norm is {spikes['global_norm'].median() / steps['global_norm'].median():.1f}x the "
        f"typical one. " + clipping + spike_rates(spikes["learning_rate"], steps["learning_rate"])
    )


def spike_rates(at_spikes: pd.Series, all_steps: pd.Series) -> str:
    """Which learning rates the spikes fell at, beside the run's own range when they do not span it."""
    spiked = f"{at_spikes.min():.2g}..{at_spikes.max():.2g}"
    used = f"{all_steps.min():.2g}..{all_steps.max():.2g}"
    if spiked == used:
        return f"Spikes fall across the whole range of learning rates the run used ({used})."
    return f"Spikes fall at learning rates {spiked} (the run used {used})."
