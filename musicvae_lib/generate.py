"""Melodies from the prior of a trained MusicVAE, and the MIDI files a DAW opens.

The sets of notebook 04, one per temperature, drawn by ``inference.sample_melodies`` from the
run's prior (batched and seeded: the same model, seed and temperature give the same melodies on the same device), saved
for chapters 05 and 06 and written as MIDI files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musicvae_lib.inference import LatentDensity, sample_melodies
from musicvae_lib.model import MusicVAE
from musicvae_lib.representation import NO_EVENT, NOTE_OFF, STEPS_PER_BAR, TOKEN_DTYPE, write_midi

DEFAULT_TEMPERATURES = (0.5, 1.0, 1.5)


def set_name(temperature: float) -> str:
    """Name of the set sampled at ``temperature``: "T=0.5", or "greedy" for temperature 0."""
    return "greedy" if temperature == 0 else f"T={temperature:g}"


def sequence_title(name: str, index: int) -> str:
    """How the chapters name a melody of a set, after the thesis' "Sequence Nr. k": 1-based, set first."""
    return f"{name}, Sequence Nr. {index + 1}"


def file_stem(name: str) -> str:
    """A set's name made safe for file names: "T=0.5" -> "T0.5"."""
    return name.replace("=", "")


def sample_sets(
    model: MusicVAE,
    n: int,
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES,
    seed: int = 0,
    prior: LatentDensity | None = None,
) -> dict[str, np.ndarray]:
    """``n`` melodies at each temperature, keyed by ``set_name``; each set its own seed (seed + index).

    z comes from ``prior`` (the run's, ``prior.load_study_prior(...).density``), N(0, I) without one.
    """
    return {
        set_name(t): sample_melodies(model, n, t, seed + index, prior=prior) for index, t in enumerate(temperatures)
    }


def save_sets(sets: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write the sets to one .npz file (keys as given) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **sets)
    return path


def load_sets(path: str | Path) -> dict[str, np.ndarray]:
    """The sets written by ``save_sets``, in their saved order."""
    with np.load(Path(path), allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files}


def melody_file_name(prefix: str, index: int) -> str:
    """``prefix_0007.mid``: 1-based, zero-padded, so files sort in the order of their set."""
    return f"{prefix}_{index + 1:04d}.mid"


def write_melodies(
    windows: np.ndarray, folder: str | Path, prefix: str, program: int = 0, tempo_qpm: float = 120
) -> list[Path]:
    """One MIDI file per melody (``melody_file_name``), one track, General MIDI ``program``, 4/4."""
    folder = Path(folder)
    return [
        write_midi(window, folder / melody_file_name(prefix, index), program, tempo_qpm)
        for index, window in enumerate(np.asarray(windows))
    ]


def in_a_row(windows: np.ndarray, rest_bars: int = 1) -> np.ndarray:
    """The melodies one after another with ``rest_bars`` of silence between: tokens [n * (steps + rest)].

    Each rest begins with NOTE_OFF so the last note of a melody ends with its window.
    """
    windows = np.asarray(windows)
    if windows.ndim != 2:
        raise ValueError(f"`windows` must have shape [n, steps], got {windows.shape}")
    rest = np.full((len(windows), rest_bars * STEPS_PER_BAR), NO_EVENT, dtype=TOKEN_DTYPE)
    if rest_bars:
        rest[:, 0] = NOTE_OFF
    return np.concatenate([windows.astype(TOKEN_DTYPE), rest], axis=1).ravel()


def write_medley(
    windows: np.ndarray, path: str | Path, program: int = 0, tempo_qpm: float = 120, rest_bars: int = 1
) -> Path:
    """One MIDI file holding every melody of a set in a row (``in_a_row``)."""
    return write_midi(in_a_row(windows, rest_bars), path, program, tempo_qpm)
