"""A run folder with a tiny trained model, for the explorer, export and browser tests.

The layout notebooks 01 and 03 write (``dataset/{train,valid,test}.npy``, ``training/model.pt``),
made in seconds: varied random melodies, so that every attribute varies and has a vector, and a
real (short) training of the ``tiny`` preset.
"""

from pathlib import Path

import numpy as np
import torch

from musicvae_lib import training
from musicvae_lib.loss import LossConfig
from musicvae_lib.model import preset
from musicvae_lib.representation import FIRST_PITCH_TOKEN, MIN_PITCH, NOTE_OFF

C_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])


def varied_windows(n: int, seed: int) -> np.ndarray:
    """Melodies of 32 steps with random density, step size and scale: uint8 [n, 32], each with a note at step 0."""
    rng = np.random.default_rng(seed)
    windows = np.zeros((n, 32), np.uint8)
    for row in windows:
        onsets = rng.random(32) < rng.uniform(0.15, 0.7)
        onsets[0] = True
        diatonic = rng.random() < 0.7
        pitch, leap = 60 + int(rng.integers(-5, 6)), int(rng.integers(1, 6))
        for step in np.flatnonzero(onsets):
            pitch = int(np.clip(pitch + rng.integers(-leap, leap + 1), 48, 84))
            if diatonic:
                pitch = 12 * (pitch // 12) + int(C_MAJOR[np.abs(C_MAJOR - pitch % 12).argmin()])
            row[step] = pitch - MIN_PITCH + FIRST_PITCH_TOKEN
        if rng.random() < 0.5:
            row[31] = NOTE_OFF if not onsets[31] else row[31]
    return windows


def make_run(run_dir: Path) -> Path:
    """Write splits and train the tiny model into ``run_dir`` (two short epochs, one thread); returns it."""
    splits = {"train": varied_windows(256, 0), "valid": varied_windows(32, 1), "test": varied_windows(24, 2)}
    (run_dir / "dataset").mkdir(parents=True)
    for name, windows in splits.items():
        np.save(run_dir / "dataset" / f"{name}.npy", windows)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = training.TrainConfig(batch_size=32, max_epochs=2, bf16=False, learning_rate=3e-3)
        training.train(
            preset("tiny"), LossConfig(), config, splits["train"], splits["valid"], run_dir / "training", device="cpu"
        )
    finally:
        torch.set_num_threads(threads)
    return run_dir
