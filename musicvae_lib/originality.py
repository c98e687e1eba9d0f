"""Originality of generated windows against the training windows (docs/evaluation.md, part D).

- D1 exact copies: a window is a copy if it equals a training window up to transposition; a
  literal (untransposed) copy rate is given beside it for comparison.
- D2 nearest-neighbour similarity: per window, the most similar training window under the best
  transposition, and that similarity.
- D3 n-gram novelty and diversity: share of interval and inter-onset-interval (IOI) n-grams never
  seen in training, distinct n-grams, and the mean pairwise distance within a set.

Empty rule, the same for every function here: a quantity that averages over no item is NaN (the
rates of an empty set, the novelty and distinct share of a set without any n-gram, the pairwise
distance of a set of fewer than two windows). Per-step quantities (keys, similarities) are defined
for every window, silent ones included: silence is a state of a step like any other.

Notes are read as in ``features.notes_of``: a note lasts from its onset to the next event of its
window (another onset or a NOTE_OFF) or to the window end; steps before the first event are silent.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from musicvae_lib.features import as_windows, notes_of
from musicvae_lib.representation import FIRST_PITCH_TOKEN, MAX_PITCH, MIN_PITCH, NO_EVENT

PITCH_SPAN = MAX_PITCH - MIN_PITCH  # 87: the largest interval two tokens can encode
NgramKind = Literal["interval", "ioi"]
NGRAM_KINDS: tuple[NgramKind, ...] = ("interval", "ioi")
MAX_NGRAM = 7  # n-grams are packed into int64 codes, 8 bits per element
PAIRS_PER_CHUNK = 131_072  # window pairs compared at once in nearest_neighbours: two int16 arrays of 8 MB


def matching_steps(windows: np.ndarray, training_windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets as checked int64 arrays [n, steps]; ValueError if their window lengths differ."""
    array, training = as_windows(windows), as_windows(training_windows)
    if array.shape[1] != training.shape[1]:
        raise ValueError(
            f"windows have {array.shape[1]} steps but training windows {training.shape[1]}: compare windows of one "
            "length"
        )
    return array, training


# D1: exact copies ----------------------------------------------------------------------------


def row_keys(codes: np.ndarray) -> np.ndarray:
    """One fixed-width bytes key per row of a uint8 array [n, steps]: numpy void [n]; equal iff the rows are."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    return codes.view(f"V{codes.shape[1]}").reshape(len(codes))


def transposition_invariant_keys(windows: np.ndarray) -> np.ndarray:
    """Key of each window up to transposition: numpy void [n] (``steps`` bytes each).

    The key is the token pattern with each note-on replaced by its pitch relative to the window's
    first note: step code 0 for NO_EVENT, 1 for NOTE_OFF, ``2 + 87 + pitch - first_pitch`` (2..176)
    for an onset. It therefore holds the rhythm (positions of onsets and NOTE_OFFs, hence the note
    lengths) and the intervals between consecutive notes (differences of relative pitches), and
    nothing else: two windows have equal keys iff one is a transposition of the other
    (docs/evaluation.md D1). A window without notes keeps its literal pattern of NO_EVENTs and
    NOTE_OFFs, so it equals exactly the silent windows with the same pattern.

    windows: int [n, steps] or one window [steps].
    """
    array = as_windows(windows)
    onset = array >= FIRST_PITCH_TOKEN
    first_token = array[np.arange(len(array)), onset.argmax(axis=1)]  # unused in a row without onsets
    relative = FIRST_PITCH_TOKEN + PITCH_SPAN + array - first_token[:, None]
    return row_keys(np.where(onset, relative, array))


def copy_mask(windows: np.ndarray, training_windows: np.ndarray, transposition_invariant: bool = True) -> np.ndarray:
    """Whether each window is a copy of some training window: bool [n].

    A copy has the same ``transposition_invariant_keys`` as a training window or, with
    ``transposition_invariant=False``, the same tokens at every step (a literal copy).
    """
    array, training = matching_steps(windows, training_windows)
    if transposition_invariant:
        return np.isin(transposition_invariant_keys(array), transposition_invariant_keys(training))
    return np.isin(row_keys(array), row_keys(training))


def exact_copy_rate(windows: np.ndarray, training_windows: np.ndarray, transposition_invariant: bool = True) -> float:
    """Share of windows that copy a training window (see ``copy_mask``), docs/evaluation.md D1; NaN for an empty set."""
    mask = copy_mask(windows, training_windows, transposition_invariant)
    return float(mask.mean()) if mask.size else float("nan")


# D2: nearest-neighbour similarity --------------------------------------------------------------


class NearestNeighbours(NamedTuple):
    """Per window of a set, its most similar training window.

    similarity: float [n] in [0, 1] (see ``nearest_neighbours``); index: int [n] row of the
    training set passed in (not of a subsample), the lowest such row among ties.
    """

    similarity: np.ndarray
    index: np.ndarray


def step_states(windows: np.ndarray, rest_code: int) -> tuple[np.ndarray, np.ndarray]:
    """Each step's state as one int16 code, and whether it is silent.

    Returns ``code`` int16 [n, steps]: ``pitch_midi - 21 + 256 * onset`` where a note sounds
    (0..343), ``rest_code`` where none does; and ``silent`` float32 [n, steps] (1.0 where silent).
    Two sounding steps are in the same state up to a shift of s semitones iff their codes differ
    by exactly s with |s| <= 87: a different onset flag moves the difference by 256.
    """
    array = as_windows(windows)
    steps = np.arange(array.shape[1])
    last_event = np.maximum.accumulate(np.where(array != NO_EVENT, steps, 0), axis=1)
    sounding_token = np.take_along_axis(array, last_event, axis=1)  # (n, steps): token of the last event so far
    sounding = sounding_token >= FIRST_PITCH_TOKEN
    onset = array >= FIRST_PITCH_TOKEN
    code = np.where(sounding, sounding_token - FIRST_PITCH_TOKEN + 256 * onset, rest_code).astype(np.int16)
    return code, (~sounding).astype(np.float32)


def most_common_shift_count(sorted_differences: np.ndarray) -> np.ndarray:
    """Per column, how often its most frequent shift occurs: int16 [pairs].

    sorted_differences: int16 [steps, pairs], each column the step code differences of one pair
    of windows (see ``step_states``), sorted, so that equal differences form runs. A shift is a
    difference s with |s| <= 87; the answer is the longest run of one shift (0 if none). The loop
    runs over the steps, each iteration a vector operation over all pairs.
    """
    n_pairs = sorted_differences.shape[1]
    longest = np.zeros(n_pairs, dtype=np.int16)
    run = np.zeros(n_pairs, dtype=np.int16)
    for step, differences in enumerate(sorted_differences):
        if step:
            run *= differences == sorted_differences[step - 1]
        run += 1
        is_shift = (differences >= -PITCH_SPAN) & (differences <= PITCH_SPAN)
        np.maximum(longest, run * is_shift, out=longest)
    return longest


def nearest_neighbours(
    windows: np.ndarray,
    training_windows: np.ndarray,
    max_reference: int | None = None,
    rng: np.random.Generator | None = None,
) -> NearestNeighbours:
    """Most similar training window of each window under the best transposition (docs/evaluation.md D2).

    The state of step t of a window is "silent" if no note sounds there, else the pair
    (pitch_midi of the sounding note, whether it starts at t). The similarity of windows a and b is

        sim(a, b) = max over integer shifts s of (1 / steps) * #{t : state_a(t) + s == state_b(t)}

    where adding s raises a sounding pitch by s semitones and leaves silence silent: the share of
    steps on which both are silent, or both sound the same pitch (after transposing a by s) with
    the same onset flag. Every shift is tried, so sim is transposition invariant and a
    transposed copy scores 1 (a D1 copy always does; the converse fails only for NOTE_OFFs that
    end nothing, which D1 counts and D2 does not). A held pitch is compared on every step it
    sounds, so long notes weigh by their length.

    Computation, exact: the silent-silent agreements of all pairs are one matrix product; for the
    sounding steps, the per-step code differences of a pair (``step_states``) are sorted and the
    longest run of one shift is the best count (``most_common_shift_count``). Pairs are compared in
    chunks of ``PAIRS_PER_CHUNK``.

    windows: int [n, steps]; training_windows: int [n_train, steps].
    max_reference: compare against at most this many training windows, drawn without
    replacement by ``rng`` (required then); None compares against all.
    Returns ``NearestNeighbours(similarity float [n], index int [n])``.
    """
    array, training = matching_steps(windows, training_windows)
    if len(training) == 0:
        raise ValueError("`training_windows` is empty: nearest neighbours need at least one training window")
    reference_rows = np.arange(len(training))
    if max_reference is not None and max_reference < len(training):
        if rng is None:
            raise ValueError(
                f"`max_reference`={max_reference} subsamples the training set: pass `rng`, a numpy Generator"
            )
        reference_rows = np.sort(rng.choice(len(training), size=max_reference, replace=False))
    n_steps = array.shape[1]
    # rest codes far apart and opposite in sign: any difference involving silence falls outside |s| <= 87
    query_code, query_silent = step_states(array, rest_code=10_000)
    reference_code, reference_silent = step_states(training[reference_rows], rest_code=-10_000)

    similarity = np.zeros(len(array))
    index = np.zeros(len(array), dtype=np.int64)
    chunk = max(1, PAIRS_PER_CHUNK // len(reference_rows))
    for first in range(0, len(array), chunk):
        rows = slice(first, first + chunk)
        difference = reference_code[None, :, :] - query_code[rows, None, :]  # (chunk, n_ref, steps)
        difference.sort(axis=-1)
        size = len(difference)
        by_step = np.ascontiguousarray(difference.reshape(-1, n_steps).T)  # (steps, chunk * n_ref)
        sounding_agreements = most_common_shift_count(by_step).reshape(size, -1)
        agreements = sounding_agreements + query_silent[rows] @ reference_silent.T  # (chunk, n_ref)
        best = agreements.argmax(axis=1)
        similarity[rows] = agreements[np.arange(size), best] / n_steps
        index[rows] = reference_rows[best]
    return NearestNeighbours(similarity, index)


# D3: n-gram novelty and diversity ---------------------------------------------------------------


class Ngrams(NamedTuple):
    """The n-grams of a set of windows, one row per occurrence, in window then time order.

    window: int [m] row of the set; values: int [m, n].
    """

    window: np.ndarray
    values: np.ndarray


def ngrams(windows: np.ndarray, n: int, kind: NgramKind) -> Ngrams:
    """Every n-gram of consecutive intervals or IOIs within each window (none crosses a window edge).

    ``kind="interval"``: the intervals pitch_midi[i+1] - pitch_midi[i] in semitones between
    consecutive notes; ``kind="ioi"``: the inter-onset intervals start_step[i+1] - start_step[i]
    in steps. An n-gram is n consecutive such values, so it spans n + 1 notes: a window of k notes
    has max(0, k - n) of each kind.

    windows: int [n_windows, steps]. Returns ``Ngrams(window int [m], values int [m, n])``.
    """
    if kind not in NGRAM_KINDS:
        raise ValueError(f"`kind` must be one of {NGRAM_KINDS}, got {kind!r}")
    if not 1 <= n <= MAX_NGRAM:
        raise ValueError(f"`n` must lie in 1..{MAX_NGRAM}, got {n}")
    notes = notes_of(as_windows(windows))
    if len(notes.window) <= n:
        return Ngrams(np.zeros(0, dtype=np.int64), np.zeros((0, n), dtype=np.int64))
    steps = np.diff(notes.pitch_midi if kind == "interval" else notes.start_step)  # between notes i and i+1
    first_note = np.flatnonzero(notes.window[:-n] == notes.window[n:])  # notes first..first+n share a window
    return Ngrams(notes.window[first_note], sliding_window_view(steps, n)[first_note])


def ngram_codes(windows: np.ndarray, n: int, kind: NgramKind) -> np.ndarray:
    """Each n-gram occurrence of ``ngrams`` packed into one int64 (8 bits per value): int64 [m]."""
    values = ngrams(windows, n, kind).values + 128  # intervals lie in -87..87, IOIs in 1..steps-1
    return values @ (256 ** np.arange(n, dtype=np.int64))


def ngram_novelty(windows: np.ndarray, training_windows: np.ndarray, n: int, kind: NgramKind) -> float:
    """Share of the set's n-gram occurrences that never occur in the training set (docs/evaluation.md D3).

    novelty = #{occurrences whose n-gram is absent from training} / #{occurrences}, with n-grams as
    in ``ngrams``; NaN if the set has no n-gram. The share of novel n-grams of generated text, as in
    McCoy et al., "How much do language models copy from their training data?" (TACL 2023), here
    over interval or IOI n-grams.
    """
    array, training = matching_steps(windows, training_windows)
    codes = ngram_codes(array, n, kind)
    if codes.size == 0:
        return float("nan")
    return float(np.mean(~np.isin(codes, ngram_codes(training, n, kind))))


class DistinctNgrams(NamedTuple):
    """Distinct n-grams of a set: count int, share float = count / occurrences (NaN if none)."""

    count: int
    share: float


def distinct_ngrams(windows: np.ndarray, n: int, kind: NgramKind) -> DistinctNgrams:
    """Number of distinct n-grams of the set and their share of all occurrences (docs/evaluation.md D3).

    share = #distinct / #occurrences in (0, 1], 1 when no n-gram repeats; NaN if the set has no
    n-gram. The distinct-n of Li et al., "A Diversity-Promoting Objective Function for Neural
    Conversation Models" (NAACL 2016), over interval or IOI n-grams.
    """
    codes = ngram_codes(windows, n, kind)
    count = len(np.unique(codes))
    return DistinctNgrams(count, count / codes.size if codes.size else float("nan"))


def mean_pairwise_distance(windows: np.ndarray, sample: int, rng: np.random.Generator) -> float:
    """Mean normalised Hamming distance between two different windows of the set (docs/evaluation.md D3).

    distance(a, b) = #{t : token_a(t) != token_b(t)} / steps, on the literal tokens (a transposed
    copy is far). If the set has at most ``sample`` unordered pairs, all of them are averaged;
    otherwise ``sample`` ordered pairs (i, j), i != j, drawn uniformly with replacement by ``rng``.
    NaN for a set of fewer than two windows.
    """
    array = as_windows(windows)
    n = len(array)
    if n < 2:
        return float("nan")
    if n * (n - 1) // 2 <= sample:
        first, second = np.triu_indices(n, k=1)
    else:
        first = rng.integers(0, n, size=sample)
        second = (first + rng.integers(1, n, size=sample)) % n  # never equal to first
    return float(np.mean(array[first] != array[second]))


# The table --------------------------------------------------------------------------------------


def originality_table(
    sets: dict[str, np.ndarray],
    training_windows: np.ndarray,
    seed: int,
    max_reference: int | None = None,
    pair_sample: int = 20_000,
) -> pd.DataFrame:
    """Part D of docs/evaluation.md for several sets against one training set: one row per set.

    Columns: n_windows; copy_rate (D1, up to transposition) and copy_rate_literal;
    nn_similarity_mean and nn_similarity_median (D2); novelty_<kind>_<n> and
    distinct_share_<kind>_<n> for kind interval and ioi, n 3 and 4 (D3); mean_pairwise_distance
    (D3, on ``pair_sample`` pairs). Each set gets its own ``np.random.default_rng(seed)``, so all sets
    are compared with the same training subsample (``max_reference``) and a row does not depend on
    the other sets. Feed the held-out test windows as one set: they show how original real music is.
    """
    training = as_windows(training_windows)
    rows = {}
    for name, windows in sets.items():
        rng = np.random.default_rng(seed)
        similarity = nearest_neighbours(windows, training, max_reference, rng).similarity
        row = {
            "n_windows": len(as_windows(windows)),
            "copy_rate": exact_copy_rate(windows, training),
            "copy_rate_literal": exact_copy_rate(windows, training, transposition_invariant=False),
            "nn_similarity_mean": float(similarity.mean()) if similarity.size else float("nan"),
            "nn_similarity_median": float(np.median(similarity)) if similarity.size else float("nan"),
        }
        for kind in NGRAM_KINDS:
            for n in (3, 4):
                row[f"novelty_{kind}_{n}"] = ngram_novelty(windows, training, n, kind)
                row[f"distinct_share_{kind}_{n}"] = distinct_ngrams(windows, n, kind).share
        row["mean_pairwise_distance"] = mean_pairwise_distance(windows, pair_sample, rng)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


ORIGINALITY_MEASURES = ("copy_rate", "copy_rate_literal", "nn_similarity_mean", "novelty_interval_4")


def describe_originality(table: pd.DataFrame, name: str) -> str:
    """A paragraph on how original the melodies of set ``name`` are, beside the held-out test melodies.

    ``table`` is ``originality_table``'s, with rows ``name`` and "test": the share that copies a
    training window up to transposition (and literally), the nearest training window's share of
    matching steps, the share of new interval 4-grams.
    """
    missing_rows = [row for row in (name, "test") if row not in table.index]
    missing_columns = [column for column in ORIGINALITY_MEASURES if column not in table.columns]
    if missing_rows or missing_columns:
        raise ValueError(
            f"the originality table lacks rows {missing_rows} or columns {missing_columns}: "
            "make it with originality_table over the sets, the test set among them"
        )
    test, example = table.loc["test"], table.loc[name]
    return (
        f"{example['copy_rate']:.1%} of the {name} melodies copy a training window up to transposition "
        f"({example['copy_rate_literal']:.1%} literally), against {test['copy_rate']:.1%} of the held-out test "
        f"melodies. The nearest training window matches {example['nn_similarity_mean']:.0%} of the steps on "
        f"average ({test['nn_similarity_mean']:.0%} for test); {example['novelty_interval_4']:.0%} of its "
        f"interval 4-grams are new ({test['novelty_interval_4']:.0%} for test)."
    )
