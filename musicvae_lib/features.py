"""Musical features of melody windows, vectorised over a set ([n_windows, steps] token arrays).

All on the 16th-note grid (steps), never in seconds (docs/evaluation.md). A note lasts from
its onset to the next event of its window (another onset or a NOTE_OFF), or to the window end.
Notes are counted by onset. Per-window features follow docs/evaluation.md part C in order (C1..C12)
and return float [n], NaN for a window without notes (and, for features of consecutive notes,
with fewer than 2); ``feature_table`` gathers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from musicvae_lib.representation import (
    FIRST_PITCH_TOKEN,
    MIN_PITCH,
    N_CLASSES,
    NO_EVENT,
    STEPS_PER_BAR,
    Note,
    check_windows,
    tokens_to_stream,
)


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
    """A set of windows as int64 [n, steps] (``check_windows``); one window [steps] becomes [1, steps]."""
    return check_windows(windows, one_window=True).astype(np.int64, copy=False)


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


def notes_per_window(windows: np.ndarray) -> np.ndarray:
    """Number of notes (onsets) in each window: int [n]."""
    array = as_windows(windows)
    return np.bincount(notes_of(array).window, minlength=len(array))


METRICAL_LEVELS = ("bar", "half bar", "beat", "eighth", "sixteenth")  # strongest first


def metrical_level(position: int) -> str:
    """Level of a 16th position within a 4/4 bar: bar (0), half bar (8), beat (4, 12), eighth (even), sixteenth (odd).

    The grouping of docs/evaluation.md C9; music21's beatStrength gives 1, .5, .25, .125, .0625 in 4/4.
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


# --------------------------------------------------------------------------------------------
# Per-window features (docs/evaluation.md part C). Every per-window scalar is a float [n] and NaN
# where it is undefined: for a window without notes, and for interval and inter-onset features
# also for a window with a single note. muspy returns 0 for some of these and NaN for others;
# one rule here keeps set means honest (count empty windows separately: ``notes_per_window``).

PITCH_BINS = 128  # MIDI pitches, as muspy's histograms
N_PITCH_CLASSES = 12
MAJOR_SCALE = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)  # C major, pitch classes 0..11
NATURAL_MINOR_SCALE = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], bool)  # C natural minor
SCALES = np.stack([np.roll(scale, root) for scale in (MAJOR_SCALE, NATURAL_MINOR_SCALE) for root in range(12)])  # 24x12


def _per_window_counts(window: np.ndarray, values: np.ndarray, n_windows: int, n_bins: int) -> np.ndarray:
    """How often each value 0..n_bins-1 occurs in each window: int [n_windows, n_bins]."""
    flat = np.bincount(window * n_bins + values, minlength=n_windows * n_bins)
    return flat.reshape(n_windows, n_bins)


def _per_window_mean(window: np.ndarray, values: np.ndarray, n_windows: int) -> np.ndarray:
    """Mean of ``values`` per window: float [n_windows]; NaN for a window with no value."""
    counts = np.bincount(window, minlength=n_windows)
    sums = np.bincount(window, weights=values, minlength=n_windows)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _no_note_to_nan(values: np.ndarray, n_notes: np.ndarray) -> np.ndarray:
    return np.where(n_notes > 0, values, np.nan)


def _pitch_class_counts(windows: np.ndarray) -> np.ndarray:
    """Notes per pitch class (0 = C) in each window: int [n, 12]."""
    array = as_windows(windows)
    notes = notes_of(array)
    return _per_window_counts(notes.window, notes.pitch_midi % N_PITCH_CLASSES, len(array), N_PITCH_CLASSES)


def _entropy_bits(counts: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits of each row's normalised histogram, 0 log 0 = 0: float [n]; NaN for an empty row."""
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        probabilities = counts / totals
        entropy = -np.nansum(probabilities * np.log2(probabilities), axis=1)  # as muspy: 0 * log 0 is NaN, skipped
    return _no_note_to_nan(entropy, totals[:, 0])


# --------------------------------------------------------------------------------------------
# C1 pitch range and pitches used


def pitch_range(windows: np.ndarray) -> np.ndarray:
    """Highest minus lowest MIDI pitch of each window: float [n]; NaN if the window has no note.

    docs/evaluation.md C1; muspy ``pitch_range`` (which gives 0 for no note).
    """
    array = as_windows(windows)
    notes = notes_of(array)
    highest = np.full(len(array), -np.inf)
    lowest = np.full(len(array), np.inf)
    np.maximum.at(highest, notes.window, notes.pitch_midi)
    np.minimum.at(lowest, notes.window, notes.pitch_midi)
    result = highest - lowest
    result[~np.isfinite(result)] = np.nan
    return result


def n_pitches_used(windows: np.ndarray) -> np.ndarray:
    """Distinct MIDI pitches in each window: float [n]; NaN if the window has no note.

    docs/evaluation.md C1; muspy ``n_pitches_used`` (which gives 0 for no note).
    """
    array = as_windows(windows)
    notes = notes_of(array)
    counts = _per_window_counts(notes.window, notes.pitch_midi, len(array), PITCH_BINS)
    used = (counts > 0).sum(axis=1)
    return _no_note_to_nan(used.astype(float), used)


def n_pitch_classes_used(windows: np.ndarray) -> np.ndarray:
    """Distinct pitch classes (pitch mod 12) in each window: float [n]; NaN if the window has no note.

    docs/evaluation.md C1; muspy ``n_pitch_classes_used`` (which gives 0 for no note).
    """
    used = (_pitch_class_counts(windows) > 0).sum(axis=1)
    return _no_note_to_nan(used.astype(float), used)


# --------------------------------------------------------------------------------------------
# C2 pitch entropy


def pitch_entropy(windows: np.ndarray) -> np.ndarray:
    """Entropy in bits of each window's note-count pitch histogram: float [n]; NaN if the window has no note.

    -sum_p P(p) log2 P(p), P(p) = notes of MIDI pitch p / notes (onsets, not steps).
    docs/evaluation.md C2; muspy ``pitch_entropy``.
    """
    array = as_windows(windows)
    notes = notes_of(array)
    return _entropy_bits(_per_window_counts(notes.window, notes.pitch_midi, len(array), PITCH_BINS))


def pitch_class_entropy(windows: np.ndarray) -> np.ndarray:
    """Entropy in bits of each window's note-count pitch-class histogram: float [n]; NaN if the window has no note.

    -sum_c P(c) log2 P(c) over the 12 pitch classes; 0 for one pitch class, at most log2(12).
    docs/evaluation.md C2; muspy ``pitch_class_entropy`` (Wu and Yang 2020).
    """
    return _entropy_bits(_pitch_class_counts(windows))


# --------------------------------------------------------------------------------------------
# C3 diatonicity


def _best_scale_notes(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Notes in the best-fitting of the 24 major and natural-minor scales, and all notes, per window."""
    counts = _pitch_class_counts(windows)
    in_scale = counts @ SCALES.T.astype(np.int64)  # (n, 24)
    return in_scale.max(axis=1), counts.sum(axis=1)


def scale_consistency(windows: np.ndarray) -> np.ndarray:
    """Largest share of a window's notes that lie in one scale: float [n]; NaN if the window has no note.

    max over the 12 major and 12 natural-minor scales of (notes in the scale / notes), notes
    counted by onset. docs/evaluation.md C3 (diatonicity); muspy ``scale_consistency`` (Mogren 2016).
    """
    best, total = _best_scale_notes(windows)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _no_note_to_nan(best / np.maximum(total, 1), total)


def non_diatonic_notes(windows: np.ndarray) -> np.ndarray:
    """Notes of a window outside its best-fitting scale: float [n]; NaN if the window has no note.

    notes - max over the 24 major and natural-minor scales of the notes in the scale, i.e.
    notes * (1 - scale_consistency). docs/evaluation.md C3.
    """
    best, total = _best_scale_notes(windows)
    return _no_note_to_nan((total - best).astype(float), total)


def c_diatonic_share(windows: np.ndarray) -> np.ndarray:
    """Share of a window's notes whose pitch class is in the C major scale: float [n]; NaN if the window has no note.

    The MusicVAE paper's "C diatonic" attribute (Roberts et al. 2018, section 5 and supplement,
    figure 8; the paper gives no formula, this is the share of notes, counted by onset).
    """
    counts = _pitch_class_counts(windows)
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _no_note_to_nan(counts[:, MAJOR_SCALE].sum(axis=1) / np.maximum(total, 1), total)


# --------------------------------------------------------------------------------------------
# C4 key and key clarity (music21)

KEY_METHOD = "krumhansl"  # Krumhansl-Kessler profiles; music21's plain analyze('key') uses Aarden-Essen


def key_and_clarity(windows: np.ndarray) -> pd.DataFrame:
    """Key of each window and how clearly it holds, by music21's Krumhansl-Schmuckler analysis; NaN if no note.

    One row per window: ``key``, music21's name ("G major", "E minor"), and ``key_clarity``, the
    winning key's ``correlationCoefficient``: Pearson correlation of the window's duration-weighted
    pitch-class histogram with the Krumhansl-Kessler profile of that key. Both are missing (NaN to
    pandas) for a window without notes. docs/evaluation.md C4: ``analyze('krumhansl')``, not music21's
    default 'key' (Aarden-Essen weights). A Python loop over music21 streams, ~20 ms a window.
    """
    rows = []
    for window in as_windows(windows):
        if not (window >= FIRST_PITCH_TOKEN).any():
            rows.append({"key": None, "key_clarity": np.nan})
            continue
        key = tokens_to_stream(window).analyze(KEY_METHOD)
        rows.append({"key": key.name, "key_clarity": float(key.correlationCoefficient)})
    return pd.DataFrame(rows, columns=["key", "key_clarity"])


def mode_shares(keys: pd.DataFrame) -> pd.Series:
    """Share of each mode ("major", "minor") among the keys of ``key_and_clarity``'s table;
    windows without a key left out."""
    return keys["key"].dropna().str.split().str[1].value_counts(normalize=True)


def top_keys(keys: Mapping[str, pd.DataFrame], n: int = 5) -> pd.DataFrame:
    """The ``n`` most frequent keys of each set's ``key_and_clarity`` table, most frequent first: one column per set.

    A set with fewer than ``n`` distinct keys has missing entries (NaN) at the bottom of its column.
    """
    return pd.DataFrame(
        {name: pd.Series(table["key"].value_counts().head(n).index.tolist()) for name, table in keys.items()}
    )


# --------------------------------------------------------------------------------------------
# C5 pitch-class histogram and transitions


def _pitch_class_weights(windows: np.ndarray, duration_weighted: bool) -> np.ndarray:
    """Notes (or their steps) per pitch class in each window: float [n, 12]."""
    array = as_windows(windows)
    notes = notes_of(array)
    weights = notes.length_steps if duration_weighted else np.ones(len(notes.window))
    bins = notes.window * N_PITCH_CLASSES + notes.pitch_midi % N_PITCH_CLASSES
    flat = np.bincount(bins, weights=weights, minlength=len(array) * N_PITCH_CLASSES)
    return flat.reshape(len(array), N_PITCH_CLASSES)


def window_pitch_class_histograms(windows: np.ndarray, duration_weighted: bool = False) -> np.ndarray:
    """Normalised pitch-class histogram of each window: float [n, 12] (column 0 = C); a NaN row if no note.

    Rows sum to 1. Each note counts once, or by its length in steps if ``duration_weighted``.
    docs/evaluation.md C5; pretty_midi ``get_pitch_class_histogram(use_duration,
    normalize=True)``.
    """
    weights = _pitch_class_weights(windows, duration_weighted)
    with np.errstate(invalid="ignore", divide="ignore"):
        return weights / weights.sum(axis=1, keepdims=True)


def pitch_class_histogram(windows: np.ndarray, duration_weighted: bool = False) -> np.ndarray:
    """Normalised pitch-class histogram of the whole set: float [12] (index 0 = C); all NaN if no note.

    Sums to 1. Every note of every window counts once, or by its length in steps if
    ``duration_weighted`` (so windows of many notes weigh more than in a mean of per-window
    histograms). docs/evaluation.md C5.
    """
    weights = _pitch_class_weights(windows, duration_weighted).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return weights / weights.sum()


@dataclass(frozen=True)
class NotePairs:
    """Every pair of consecutive notes within a window (across rests), in window then time order.

    window: int [n_pairs] row of the set; first_pitch_midi, second_pitch_midi: int [n_pairs];
    interval_semitones: second minus first pitch (signed, up is positive); ioi_steps: onset of the
    second minus onset of the first (inter-onset interval, >= 1). A window of k notes gives k-1 pairs.
    """

    window: np.ndarray
    first_pitch_midi: np.ndarray
    second_pitch_midi: np.ndarray
    interval_semitones: np.ndarray
    ioi_steps: np.ndarray


def note_pairs(windows: np.ndarray) -> NotePairs:
    """The consecutive note pairs of every window; pairs never span two windows (docs/evaluation.md C5, C6, C8)."""
    notes = notes_of(windows)
    same_window = notes.window[1:] == notes.window[:-1]
    first, second = notes.pitch_midi[:-1][same_window], notes.pitch_midi[1:][same_window]
    return NotePairs(
        window=notes.window[1:][same_window],
        first_pitch_midi=first,
        second_pitch_midi=second,
        interval_semitones=second - first,
        ioi_steps=np.diff(notes.start_step)[same_window],
    )


def pitch_class_transitions(windows: np.ndarray) -> np.ndarray:
    """Pitch-class transitions between consecutive notes over the set: int [12, 12], [from, to].

    Consecutive notes of a window count even when a rest lies between them; pairs never span two
    windows. docs/evaluation.md C5. pretty_midi's ``get_pitch_class_transition_matrix`` counts only
    notes that end where another starts, so it agrees on melodies without rests.
    """
    pairs = note_pairs(windows)
    flat = np.bincount(
        pairs.first_pitch_midi % N_PITCH_CLASSES * N_PITCH_CLASSES + pairs.second_pitch_midi % N_PITCH_CLASSES,
        minlength=N_PITCH_CLASSES * N_PITCH_CLASSES,
    )
    return flat.reshape(N_PITCH_CLASSES, N_PITCH_CLASSES)


# --------------------------------------------------------------------------------------------
# C6 intervals

# (lowest, highest) absolute interval in semitones. The first four partition all intervals;
# "beyond an octave" is a subset of "large leap".
INTERVAL_CATEGORIES = {
    "repeat (0)": (0, 0),
    "step (1-2)": (1, 2),
    "leap (3-7)": (3, 7),
    "large leap (>=8)": (8, np.inf),
    "beyond an octave (>12)": (13, np.inf),
}


def mean_abs_interval(windows: np.ndarray) -> np.ndarray:
    """Mean absolute interval in semitones between consecutive notes of each window: float [n]; NaN if < 2 notes.

    Rests between notes do not break a pair. docs/evaluation.md C6; mgeval ``avg_pitch_shift``; the
    MusicVAE paper's "average interval" attribute.
    """
    pairs = note_pairs(windows)
    return _per_window_mean(pairs.window, np.abs(pairs.interval_semitones), len(as_windows(windows)))


def largest_interval(windows: np.ndarray) -> np.ndarray:
    """Largest absolute interval in semitones between consecutive notes of each window: float [n]; NaN if < 2 notes.

    The thesis' "largest pitch jump"; docs/evaluation.md C6.
    """
    array = as_windows(windows)
    pairs = note_pairs(array)
    largest = np.full(len(array), -1.0)
    np.maximum.at(largest, pairs.window, np.abs(pairs.interval_semitones).astype(float))
    largest[largest < 0] = np.nan
    return largest


def interval_shares(windows: np.ndarray) -> dict[str, float]:
    """Share of the set's consecutive-note intervals in each of ``INTERVAL_CATEGORIES``; NaN if there is none.

    By absolute size: repeats (0), steps (1-2), leaps (3-7), large leaps (>=8) sum to 1;
    "beyond an octave" (>12) is part of the large leaps. There is no interval when no window has
    2 notes. docs/evaluation.md C6.
    """
    sizes = np.abs(note_pairs(windows).interval_semitones)
    return {
        name: (float(((sizes >= low) & (sizes <= high)).mean()) if len(sizes) else float("nan"))
        for name, (low, high) in INTERVAL_CATEGORIES.items()
    }


# --------------------------------------------------------------------------------------------
# C7 note lengths, C8 inter-onset intervals


def mean_note_length(windows: np.ndarray) -> np.ndarray:
    """Mean note length in steps (16ths) of each window: float [n]; NaN if the window has no note.

    A note lasts until the next onset or NOTE_OFF, or the window end (module docstring).
    docs/evaluation.md C7; ``note_length_counts`` gives the histogram.
    """
    array = as_windows(windows)
    notes = notes_of(array)
    return _per_window_mean(notes.window, notes.length_steps, len(array))


def ioi_counts(windows: np.ndarray) -> np.ndarray:
    """Inter-onset intervals per length in steps over the set: int [steps] (index = steps; 0 never occurs).

    docs/evaluation.md C8; ``mean_ioi`` gives the mean per window.
    """
    array = as_windows(windows)
    return np.bincount(note_pairs(array).ioi_steps, minlength=array.shape[1])


def mean_ioi(windows: np.ndarray) -> np.ndarray:
    """Mean inter-onset interval in steps of each window: float [n]; NaN if the window has < 2 notes.

    Onset of each note minus onset of the note before, within the window, i.e. (last onset -
    first onset) / (notes - 1). docs/evaluation.md C8.
    """
    pairs = note_pairs(windows)
    return _per_window_mean(pairs.window, pairs.ioi_steps, len(as_windows(windows)))


# --------------------------------------------------------------------------------------------
# C9 syncopation (onsets per metrical level)


def _onset_share(windows: np.ndarray, on_position: np.ndarray) -> np.ndarray:
    """Share of each window's onsets whose position in the bar (0..15) is marked in ``on_position`` [16]."""
    array = as_windows(windows)
    notes = notes_of(array)
    return _per_window_mean(notes.window, on_position[notes.start_step % STEPS_PER_BAR].astype(float), len(array))


def syncopation_16th(windows: np.ndarray) -> np.ndarray:
    """Share of a window's onsets on odd 16th positions (1, 3, .., 15): float [n]; NaN if the window has no note.

    The MusicVAE paper's "16th note syncopation" attribute: its supplement (figure 10) marks as
    syncopated the notes that start off the 8th-note grid; the paper gives no formula, this is
    the share of onsets. docs/evaluation.md C9 "share on odd 16ths" (music21 beatStrength 0.0625).
    """
    return _onset_share(windows, np.arange(STEPS_PER_BAR) % 2 == 1)


def syncopation_8th(windows: np.ndarray) -> np.ndarray:
    """Share of a window's onsets on off-beat 8th positions (2, 6, 10, 14): float [n]; NaN if the window has no note.

    The MusicVAE paper's "8th note syncopation" attribute: its supplement (figure 11) marks as
    syncopated the notes that start on an 8th between quarter-note beats; the paper gives no
    formula, this is the share of onsets. The eighth level of docs/evaluation.md C9 (music21
    beatStrength 0.125 in 4/4); onsets on odd 16ths are not counted here.
    """
    return _onset_share(windows, np.arange(STEPS_PER_BAR) % 4 == 2)


# --------------------------------------------------------------------------------------------
# C10 density and silence


def note_density(windows: np.ndarray) -> np.ndarray:
    """Notes (onsets) per bar of 16 steps in each window: float [n]; NaN if the window has no note.

    docs/evaluation.md C10; the MusicVAE paper's "note density" attribute.
    """
    array = as_windows(windows)
    n_notes = notes_per_window(array)
    return _no_note_to_nan(n_notes / (array.shape[1] / STEPS_PER_BAR), n_notes)


def silence_share(windows: np.ndarray) -> np.ndarray:
    """Share of a window's steps where no note sounds: float [n]; NaN if the window has no note.

    Silent: steps before the first onset and from a NOTE_OFF to the next onset. docs/evaluation.md C10.
    """
    array = as_windows(windows)
    notes = notes_of(array)
    sounding = np.bincount(notes.window, weights=notes.length_steps, minlength=len(array))
    return _no_note_to_nan(1.0 - sounding / array.shape[1], notes_per_window(array))


# --------------------------------------------------------------------------------------------
# C11 bar-to-bar groove similarity


def groove_similarity(windows: np.ndarray) -> np.ndarray:
    """Bar-to-bar similarity of onset patterns: float [n]; NaN if the window has no note.

    1 - Hamming(onsets of bar b, onsets of bar b+1) / 16, each bar a binary vector of its 16
    positions; for windows longer than 2 bars the mean over consecutive bar pairs. 1 when the two
    bars have the same rhythm. docs/evaluation.md C11 (MusDr grooving similarity, Wu and Yang 2020).
    Windows must hold whole bars, at least 2.
    """
    array = as_windows(windows)
    n_bars, rest = divmod(array.shape[1], STEPS_PER_BAR)
    if rest or n_bars < 2:
        raise ValueError(f"`windows` must hold at least 2 whole bars of {STEPS_PER_BAR} steps, got {array.shape[1]}")
    onsets = (array >= FIRST_PITCH_TOKEN).reshape(len(array), n_bars, STEPS_PER_BAR)
    hamming = (onsets[:, 1:] != onsets[:, :-1]).sum(axis=2)  # (n, bars - 1)
    return _no_note_to_nan(1.0 - hamming.mean(axis=1) / STEPS_PER_BAR, notes_per_window(array))


# --------------------------------------------------------------------------------------------
# C12 monophony


def polyphony(notes: Sequence[Note]) -> float:
    """Mean number of distinct pitches sounding at the steps where at least one sounds; NaN if no note sounds.

    docs/evaluation.md C12; muspy ``polyphony`` on the step grid. 1.0 for a monophonic line, hence for
    the notes of every token window (``tokens_to_notes``): a token sequence cannot hold a chord.
    """
    if not notes:
        return float("nan")
    length = max(note.end_step for note in notes)
    roll = np.zeros((max(length, 0), PITCH_BINS), bool)
    for note in notes:
        roll[max(note.start_step, 0) : note.end_step, note.pitch_midi] = True
    sounding_steps = np.count_nonzero(roll.any(axis=1))
    return float(roll.sum() / sounding_steps) if sounding_steps else float("nan")


def is_monophonic(notes: Sequence[Note]) -> bool:
    """Whether at most one note sounds at every step; True for no note.

    Two overlapping notes of one pitch count as two (muspy's ``polyphony`` sees one).
    docs/evaluation.md C12. True for the notes of every token window; use it on notes read from MIDI
    before they are made monophonic (``representation.monophonic``).
    """
    latest_end = None
    for note in sorted((note for note in notes if note.end_step > note.start_step), key=lambda note: note.start_step):
        if latest_end is not None and note.start_step < latest_end:
            return False
        latest_end = note.end_step if latest_end is None else max(latest_end, note.end_step)
    return True


# --------------------------------------------------------------------------------------------
# All scalar features of a window in one table

FEATURE_UNITS = {  # column of ``feature_table`` -> axis label with unit
    "pitch_range": "pitch range (semitones)",
    "n_pitches_used": "distinct pitches (count)",
    "n_pitch_classes_used": "distinct pitch classes (count)",
    "pitch_entropy": "pitch entropy (bits)",
    "pitch_class_entropy": "pitch-class entropy (bits)",
    "scale_consistency": "notes in the best of 24 scales (share)",
    "non_diatonic_notes": "notes outside the best scale (count)",
    "c_diatonic_share": "notes in C major (share)",
    "mean_abs_interval": "mean |interval| (semitones)",
    "mean_note_length": "mean note length (steps, 16ths)",
    "mean_ioi": "mean inter-onset interval (steps, 16ths)",
    "note_density": "note density (notes per bar)",
    "silence_share": "silent steps (share)",
    "syncopation_8th": "onsets on off-beat 8ths (share)",
    "syncopation_16th": "onsets on odd 16ths (share)",
    "groove_similarity": "bar-to-bar onset similarity (1 - Hamming/16)",
    "n_notes": "notes (count)",
}

FEATURE_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {  # column -> function of a set of windows
    "pitch_range": pitch_range,
    "n_pitches_used": n_pitches_used,
    "n_pitch_classes_used": n_pitch_classes_used,
    "pitch_entropy": pitch_entropy,
    "pitch_class_entropy": pitch_class_entropy,
    "scale_consistency": scale_consistency,
    "non_diatonic_notes": non_diatonic_notes,
    "c_diatonic_share": c_diatonic_share,
    "mean_abs_interval": mean_abs_interval,
    "mean_note_length": mean_note_length,
    "mean_ioi": mean_ioi,
    "note_density": note_density,
    "silence_share": silence_share,
    "syncopation_8th": syncopation_8th,
    "syncopation_16th": syncopation_16th,
    "groove_similarity": groove_similarity,
    "n_notes": notes_per_window,
}

# the MusicVAE paper's five attribute-vector attributes (section 5, supplement figures 6-11)
ATTRIBUTES = ("note_density", "c_diatonic_share", "mean_abs_interval", "syncopation_8th", "syncopation_16th")


def feature_table(windows: np.ndarray) -> pd.DataFrame:
    """Every per-window scalar feature: one row per window, a column per entry of ``FEATURE_FUNCTIONS``, in its order.

    NaN where a feature is undefined (no note; fewer than 2 notes for mean_abs_interval and
    mean_ioi); ``n_notes`` is 0 there and tells the cases apart. The key (``key_and_clarity``)
    is left out: it loops over music21 streams, ~20 ms a window.
    """
    array = as_windows(windows)
    return pd.DataFrame({column: function(array) for column, function in FEATURE_FUNCTIONS.items()})


def attributes(windows: np.ndarray) -> pd.DataFrame:
    """The MusicVAE paper's five attributes (``ATTRIBUTES``) per window, from ``feature_table``
    (docs/evaluation.md B5)."""
    return feature_table(windows)[list(ATTRIBUTES)]


def set_overview(sets: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """One row per set: melodies, distinct melodies, melodies without a note, mean notes and mean pitch range.

    Means leave out melodies where the feature is undefined (pitch range of a melody without notes).
    """
    rows = []
    for name, windows in sets.items():
        array = as_windows(windows)
        notes = notes_per_window(array)
        rows.append(
            {
                "set": name,
                "melodies": len(array),
                "distinct": len(np.unique(array, axis=0)),
                "without a note": int((notes == 0).sum()),
                "notes per melody": notes.mean(),
                "pitch range (semitones)": np.nanmean(pitch_range(array)),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Histograms of several sets side by side (notebooks 05 and 06)

RHYTHM_FEATURES = (
    "note_density",
    "silence_share",
    "mean_note_length",
    "mean_ioi",
    "syncopation_8th",
    "syncopation_16th",
    "groove_similarity",
)
MELODY_FEATURES = (
    "pitch_range",
    "n_pitches_used",
    "n_pitch_classes_used",
    "pitch_entropy",
    "pitch_class_entropy",
    "scale_consistency",
    "non_diatonic_notes",
    "mean_abs_interval",
)


def onset_position_shares(windows: np.ndarray) -> np.ndarray:
    """Share of the set's onsets at each 16th position of the bar: float [16]; NaN if the set has no onset."""
    counts = onset_position_counts(windows).astype(float)
    return counts / counts.sum() if counts.sum() else np.full(len(counts), np.nan)


def length_shares(counts: np.ndarray, longest: int = 16) -> pd.Series:
    """Shares of a length histogram (index = length in steps, as ``note_length_counts``),
    lengths above ``longest`` pooled.

    Index 1..longest and f">{longest}"; NaN everywhere if the histogram is empty.
    """
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    binned = [*counts[1 : longest + 1], counts[longest + 1 :].sum()]
    labels = [str(length) for length in range(1, longest + 1)] + [f">{longest}"]
    return pd.Series(np.asarray(binned) / total if total else np.full(len(binned), np.nan), index=labels)


def diatonicity_table(feature_tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per set (a column) of ``feature_table``s, four means: a row per measure (notebook 06).

    mean diatonicity (``scale_consistency``), the share of fully diatonic melodies (consistency 1),
    non-diatonic notes per melody, and the share of notes in C major (``c_diatonic_share``).
    """
    return pd.DataFrame(
        {
            name: {
                "mean diatonicity": table["scale_consistency"].mean(),
                "fully diatonic melodies": (table["scale_consistency"] == 1).mean(),
                "non-diatonic notes per melody": table["non_diatonic_notes"].mean(),
                "notes in C major": table["c_diatonic_share"].mean(),
            }
            for name, table in feature_tables.items()
        }
    )


def shares_by_set(sets: dict[str, np.ndarray], shares_of: Callable[[np.ndarray], Mapping | pd.Series]) -> pd.DataFrame:
    """One column per set of ``shares_of(windows)`` (a dict or Series of category -> share)."""
    return pd.DataFrame({name: pd.Series(shares_of(windows)) for name, windows in sets.items()})
