"""Musical features of melody windows, vectorised over a set ([n_windows, steps] token arrays).

All on the 16th-note grid (steps), never in seconds (../shared/EVALUATION.md). A note lasts from
its onset to the next event of its window (another onset or a NOTE_OFF), or to the window end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicvae_lib.representation import FIRST_PITCH_TOKEN, MIN_PITCH, N_CLASSES, NO_EVENT, STEPS_PER_BAR


@dataclass(frozen=True)
class NoteArrays:
    """Every note of a set of windows, one entry per note, in window then time order.

    window: int [n_notes] row of the set; start_step, length_steps: int [n_notes];
    pitch_midi: int [n_notes].
    """

    window: np.ndarray
    start_step: np.ndarray
    length_steps: np.ndarray
    pitch_midi: np.ndarray


def as_windows(windows: np.ndarray) -> np.ndarray:
    """A set of windows as a 2-D integer array [n, steps]; one window [steps] becomes [1, steps]."""
    array = np.asarray(windows)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"`windows` must have shape [n_windows, steps], got {array.shape}")
    return array.astype(np.int64, copy=False)


def notes_of(windows: np.ndarray) -> NoteArrays:
    """The notes of every window (see the module docstring for where a note ends)."""
    array = as_windows(windows)
    rows, cols = np.nonzero(array != NO_EVENT)  # row-major: sorted by window, then step
    next_col = np.full_like(cols, array.shape[1])
    same_row = rows[1:] == rows[:-1]
    next_col[:-1][same_row] = cols[1:][same_row]
    onset = array[rows, cols] >= FIRST_PITCH_TOKEN
    return NoteArrays(
        window=rows[onset],
        start_step=cols[onset],
        length_steps=(next_col - cols)[onset],
        pitch_midi=array[rows, cols][onset] - FIRST_PITCH_TOKEN + MIN_PITCH,
    )


def class_counts(windows: np.ndarray) -> np.ndarray:
    """How often each of the 90 token classes occurs over the set: int [90]."""
    return np.bincount(as_windows(windows).ravel(), minlength=N_CLASSES)


def pitch_counts(windows: np.ndarray) -> dict[int, int]:
    """Note count per MIDI pitch over the set (onsets, not steps)."""
    pitches, counts = np.unique(notes_of(windows).pitch_midi, return_counts=True)
    return dict(zip(pitches.tolist(), counts.tolist()))


def onset_position_counts(windows: np.ndarray) -> np.ndarray:
    """Onsets per position within the bar (0..15, 16th notes) over the set: int [16]."""
    return np.bincount(notes_of(windows).start_step % STEPS_PER_BAR, minlength=STEPS_PER_BAR)


def note_length_counts(windows: np.ndarray) -> np.ndarray:
    """Notes per length in steps over the set: int [steps + 1] (index = length; 0 never occurs)."""
    array = as_windows(windows)
    return np.bincount(notes_of(array).length_steps, minlength=array.shape[1] + 1)


def pitch_range(windows: np.ndarray) -> np.ndarray:
    """Highest minus lowest MIDI pitch of each window: float [n]; NaN if the window has no note."""
    array = as_windows(windows)
    notes = notes_of(array)
    highest = np.full(len(array), -np.inf)
    lowest = np.full(len(array), np.inf)
    np.maximum.at(highest, notes.window, notes.pitch_midi)
    np.minimum.at(lowest, notes.window, notes.pitch_midi)
    result = highest - lowest
    result[~np.isfinite(result)] = np.nan
    return result


def notes_per_window(windows: np.ndarray) -> np.ndarray:
    """Number of notes (onsets) in each window: int [n]."""
    array = as_windows(windows)
    return np.bincount(notes_of(array).window, minlength=len(array))


METRICAL_LEVELS = ("bar", "half bar", "beat", "eighth", "sixteenth")  # strongest first


def metrical_level(position: int) -> str:
    """Level of a 16th position within a 4/4 bar: bar (0), half bar (8), beat (4, 12), eighth (even), sixteenth (odd).

    The grouping of EVALUATION.md C9; music21's beatStrength gives 1, .5, .25, .125, .0625 in 4/4.
    """
    if not 0 <= position < STEPS_PER_BAR:
        raise ValueError(f"`position` must lie in 0..{STEPS_PER_BAR - 1}, got {position}")
    if position == 0:
        return "bar"
    if position == 8:
        return "half bar"
    if position % 4 == 0:
        return "beat"
    return "eighth" if position % 2 == 0 else "sixteenth"


def onset_level_shares(onset_counts: np.ndarray) -> dict[str, float]:
    """Share of onsets on each metrical level, from onsets per 16th position [16]; NaN if no onset."""
    counts = np.asarray(onset_counts, dtype=float)
    total = counts.sum()
    shares = {level: 0.0 for level in METRICAL_LEVELS}
    for position, count in enumerate(counts):
        shares[metrical_level(position)] += count
    return {level: (value / total if total else float("nan")) for level, value in shares.items()}
