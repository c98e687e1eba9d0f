"""Do generated melodies pass for real? Strong tests of a generated set against held-out melodies
(docs/evaluation.md E).

- E1 classifier two-sample test (Lopez-Paz & Oquab, "Revisiting Classifier Two-Sample Tests",
  ICLR 2017): a classifier learns to tell the generated melodies from as many held-out real ones
  by features that do not depend on the model (``melody_features``); its cross-validated ROC AUC
  is 0.5 when the sets cannot be told apart and 1 when every melody can. Beside it, the features
  that separate the sets most, one at a time (``univariate_auc``).
- E2 fidelity and coverage: k-nearest-neighbour precision and recall (Kynkäänniemi et al.,
  "Improved Precision and Recall Metric for Assessing Generative Models", NeurIPS 2019) in the
  standardized space of ``features.feature_table``.
- E3 novelty beside copies: each melody's distance to its nearest training window
  (``originality.nearest_neighbours``) and its copies (``originality.copy_mask``), against the same
  for the held-out test melodies, which copy stock figures too.

A set that passes has an AUC near that of two real sets (a training sample against the test
melodies: the floor, as the splits hold different tunes), precision and recall near theirs, and
no more copies and no smaller distances to training than the test melodies have.

Empty rule: the tests (``two_sample_test``, ``precision_recall``, ``novelty_table``,
``realism_table``) raise ValueError for a set without melodies, since a test on no melody has no
answer; per-melody features follow features.py (NaN where undefined).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import NearestNeighbors

from musicvae_lib.features import (
    N_PITCH_CLASSES,
    _per_window_counts,
    as_windows,
    feature_table,
    note_pairs,
    notes_of,
    notes_per_window,
    pitch_range,
)
from musicvae_lib.originality import copy_mask, nearest_neighbours
from musicvae_lib.representation import NOTE_OFF, STEPS_PER_BAR

FOLDS = 5  # cross-validation folds of the classifier, as in the first measurement
N_BOOT = 200  # bootstrap rounds behind the 95% interval of the AUC
K_NEIGHBOURS = 3  # Kynkäänniemi et al.'s k for the manifold radii
LARGEST_INTERVAL = 12  # intervals beyond an octave are pooled by direction
LONGEST_NOTE = 16  # note lengths above a bar are pooled
CHUNK_ROWS = 1024  # rows of a distance matrix computed at once in precision_recall: 1024 x n floats
PITCH_CLASS_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def checked_set(windows: np.ndarray, name: str) -> np.ndarray:
    """``windows`` as int64 [n, steps]; ValueError naming the set when it holds no melody."""
    array = as_windows(windows)
    if len(array) == 0:
        raise ValueError(f"`{name}` holds no melody: a two-sample measure needs at least one melody in each set")
    return array


# --------------------------------------------------------------------------------------------
# The classifier's features


def melody_features(windows: np.ndarray) -> pd.DataFrame:
    """Plain features of each melody that do not depend on any model: one row per window, 90 columns.

    Counts per window, 0 when there is nothing to count:
    - ``onsets at 16th p``: onsets at position p (0..15) of the bar, over all bars (C9);
    - ``interval s``: consecutive-note intervals of s semitones, s in -12..+12, and ``interval < -12``,
      ``interval > +12`` (C6);
    - ``pitch class c``: notes of pitch class C..B, and ``c above the first note``: notes c semitones
      (mod 12) above the window's first note, the key-free view (C5);
    - ``note length l``: notes l steps long, l in 1..16, and ``note length > 16`` (C7);
    - ``notes``, ``note-offs`` (NOTE_OFF tokens: rests started) and ``silent steps`` (C10).
    And the register: ``pitch range``, ``lowest pitch``, ``highest pitch`` in semitones / MIDI
    pitch, NaN for a window without notes (C1).
    """
    array = as_windows(windows)
    n = len(array)
    notes = notes_of(array)
    pairs = note_pairs(array)
    columns: dict[str, np.ndarray] = {}

    onsets = _per_window_counts(notes.window, notes.start_step % STEPS_PER_BAR, n, STEPS_PER_BAR)
    columns |= {f"onsets at 16th {p}": onsets[:, p] for p in range(STEPS_PER_BAR)}

    clipped = np.clip(pairs.interval_semitones, -LARGEST_INTERVAL - 1, LARGEST_INTERVAL + 1) + LARGEST_INTERVAL + 1
    intervals = _per_window_counts(pairs.window, clipped, n, 2 * LARGEST_INTERVAL + 3)
    interval_names = (
        [f"interval < -{LARGEST_INTERVAL}"]
        + [f"interval {s:+d}" if s else "interval 0" for s in range(-LARGEST_INTERVAL, LARGEST_INTERVAL + 1)]
        + [f"interval > +{LARGEST_INTERVAL}"]
    )
    columns |= dict(zip(interval_names, intervals.T))

    classes = _per_window_counts(notes.window, notes.pitch_midi % N_PITCH_CLASSES, n, N_PITCH_CLASSES)
    columns |= {f"pitch class {name}": classes[:, c] for c, name in enumerate(PITCH_CLASS_NAMES)}
    first_note = np.ones(len(notes.window), dtype=bool)  # empty when no window of the set has a note
    first_note[1:] = notes.window[1:] != notes.window[:-1]
    first_pitch = np.zeros(n, dtype=np.int64)
    first_pitch[notes.window[first_note]] = notes.pitch_midi[first_note]
    relative = (notes.pitch_midi - first_pitch[notes.window]) % N_PITCH_CLASSES
    above = _per_window_counts(notes.window, relative, n, N_PITCH_CLASSES)
    columns |= {f"{c} above the first note": above[:, c] for c in range(N_PITCH_CLASSES)}

    lengths = _per_window_counts(notes.window, np.minimum(notes.length_steps, LONGEST_NOTE + 1), n, LONGEST_NOTE + 2)
    columns |= {f"note length {length}": lengths[:, length] for length in range(1, LONGEST_NOTE + 1)}
    columns[f"note length > {LONGEST_NOTE}"] = lengths[:, LONGEST_NOTE + 1]

    sounding = np.bincount(notes.window, weights=notes.length_steps, minlength=n)
    columns |= {
        "notes": notes_per_window(array),
        "note-offs": (array == NOTE_OFF).sum(axis=1),
        "silent steps": array.shape[1] - sounding,
    }
    lowest = np.full(n, np.nan)
    highest = np.full(n, np.nan)
    has_notes = columns["notes"] > 0
    order = np.lexsort((notes.pitch_midi, notes.window))  # by window, then pitch
    by_window = notes.window[order]
    starts = np.searchsorted(by_window, np.arange(n))
    ends = np.searchsorted(by_window, np.arange(n), side="right")
    lowest[has_notes] = notes.pitch_midi[order][starts[has_notes]]
    highest[has_notes] = notes.pitch_midi[order][ends[has_notes] - 1]
    columns |= {"pitch range": pitch_range(array), "lowest pitch": lowest, "highest pitch": highest}
    return pd.DataFrame({name: np.asarray(values, dtype=float) for name, values in columns.items()})


# --------------------------------------------------------------------------------------------
# E1 classifier two-sample test


@dataclass(frozen=True)
class TwoSampleTest:
    """A classifier two-sample test of one set against the real one.

    auc: ROC AUC of the out-of-fold probabilities of all melodies pooled (0.5: indistinguishable);
    low, high: its 95% bootstrap interval over melodies; fold_aucs: the AUC of each fold (their
    spread shows the classifier's own variance); n_per_set: melodies of each set tested (equal);
    separating: ``univariate_auc`` of the same melodies, most separating first.
    """

    auc: float
    low: float
    high: float
    fold_aucs: tuple[float, ...]
    n_per_set: int
    separating: pd.DataFrame


def equal_samples(real: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Both sets cut to the size of the smaller by rows drawn without replacement (order kept); equal sets are kept."""
    size = min(len(real), len(other))
    cut = [
        rows if len(rows) == size else rows[np.sort(rng.choice(len(rows), size, replace=False))]
        for rows in (real, other)
    ]
    return cut[0], cut[1]


def univariate_auc(real_features: pd.DataFrame, other_features: pd.DataFrame) -> pd.DataFrame:
    """Per feature, how well it alone tells the sets apart, most separating first.

    ``auc`` = P(value of an other melody > value of a real melody) + P(equal) / 2, the ROC AUC of
    the feature as a score (Mann-Whitney); above 0.5 the other set has more of it. Melodies where a
    feature is NaN are left out of that feature (NaN AUC if a set has no value). Columns: feature,
    auc, separation = |auc - 0.5|, mean_real, mean_other; sorted by separation, then feature name.
    """
    rows = []
    for column in real_features.columns:
        real, other = real_features[column].to_numpy(float), other_features[column].to_numpy(float)
        real, other = real[~np.isnan(real)], other[~np.isnan(other)]
        if len(real) and len(other):
            labels = np.r_[np.zeros(len(real)), np.ones(len(other))]
            values = np.r_[real, other]
            auc = float(roc_auc_score(labels, values)) if values.min() < values.max() else 0.5
        else:
            auc = float("nan")
        rows.append(
            {
                "feature": column,
                "auc": auc,
                "separation": abs(auc - 0.5),
                "mean_real": float(real.mean()) if len(real) else float("nan"),
                "mean_other": float(other.mean()) if len(other) else float("nan"),
            }
        )
    table = pd.DataFrame(rows)
    return table.sort_values(["separation", "feature"], ascending=[False, True], kind="stable").reset_index(drop=True)


def two_sample_test(
    real: np.ndarray, other: np.ndarray, seed: int, folds: int = FOLDS, n_bootstrap: int = N_BOOT
) -> TwoSampleTest:
    """Classifier two-sample test of ``other`` (label 1) against ``real`` (label 0), docs/evaluation.md E1.

    The larger set is cut to the size of the smaller (``equal_samples``), so that 0.5 is chance.
    Each melody is described by ``melody_features``; a gradient-boosted tree classifier
    (scikit-learn's HistGradientBoostingClassifier, default sizes, no early stopping, NaN handled
    natively) is trained on ``folds`` - 1 folds of a stratified split and scores the held-out fold.
    The AUC is that of all out-of-fold scores together; the 95% interval is the 2.5 and 97.5
    percentiles of the AUC over ``n_bootstrap`` resamples of the melodies (with replacement, each
    set resampled on its own). Everything is drawn from ``seed``: the same seed gives the same result.

    real, other: int [n, steps] token windows of one length.
    """
    real, other = checked_set(real, "real"), checked_set(other, "other")
    if real.shape[1] != other.shape[1]:
        raise ValueError(f"both sets must hold windows of one length, got {real.shape[1]} and {other.shape[1]} steps")
    if folds < 2:
        raise ValueError(f"`folds` must be at least 2, got {folds}")
    rng = np.random.default_rng(seed)
    real, other = equal_samples(real, other, rng)
    if len(real) < folds:
        raise ValueError(f"each set needs at least `folds` = {folds} melodies for cross-validation, got {len(real)}")
    real_features, other_features = melody_features(real), melody_features(other)
    inputs = pd.concat([real_features, other_features], ignore_index=True).to_numpy()
    labels = np.r_[np.zeros(len(real)), np.ones(len(other))]
    scores = np.zeros(len(labels))
    fold_aucs = []
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(inputs, labels)
    for train_rows, held_out in splits:
        classifier = HistGradientBoostingClassifier(early_stopping=False, random_state=seed)
        classifier.fit(inputs[train_rows], labels[train_rows])
        scores[held_out] = classifier.predict_proba(inputs[held_out])[:, 1]
        fold_aucs.append(float(roc_auc_score(labels[held_out], scores[held_out])))
    low, high = bootstrap_auc_interval(labels, scores, n_bootstrap, rng)
    return TwoSampleTest(
        auc=float(roc_auc_score(labels, scores)),
        low=low,
        high=high,
        fold_aucs=tuple(fold_aucs),
        n_per_set=len(real),
        separating=univariate_auc(real_features, other_features),
    )


def bootstrap_auc_interval(
    labels: np.ndarray, scores: np.ndarray, n_bootstrap: int, rng: np.random.Generator
) -> tuple[float, float]:
    """2.5 and 97.5 percentiles of the ROC AUC over resamples of each class with replacement; NaN, NaN for 0 rounds."""
    if n_bootstrap == 0:
        return float("nan"), float("nan")
    negative, positive = scores[labels == 0], scores[labels == 1]
    both = np.r_[np.zeros(len(negative)), np.ones(len(positive))]
    estimates = [
        roc_auc_score(both, np.r_[rng.choice(negative, len(negative)), rng.choice(positive, len(positive))])
        for _ in range(n_bootstrap)
    ]
    low, high = np.percentile(estimates, [2.5, 97.5])
    return float(low), float(high)


# --------------------------------------------------------------------------------------------
# E2 precision and recall with k-NN manifolds


@dataclass(frozen=True)
class PrecisionRecall:
    """precision: share of the other set inside the real set's manifold (fidelity); recall: share of the
    real set inside the other set's manifold (coverage). Both in [0, 1]."""

    precision: float
    recall: float


def standardized(real: pd.DataFrame, other: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Both feature tables as (x - mean_real) / std_real per column, NaN set to 0 (the real mean).

    A column constant over the real set is only centred (divided by 1). A window without notes has
    NaN features; it is still told apart by its note count (``n_notes`` 0).
    """
    mean = real.mean().to_numpy()
    std = real.std(ddof=0).to_numpy()
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    return tuple(np.nan_to_num((table.to_numpy(float) - mean) / std, nan=0.0) for table in (real, other))


def manifold_radii(points: np.ndarray, k: int) -> np.ndarray:
    """Distance of each point to its k-th nearest other point of the set: float [n]."""
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    return distances[:, k]  # column 0 is the point itself (or a duplicate of it: distance 0 either way)


def share_inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """Share of ``points`` within the radius of at least one centre (||p - c|| <= r_c)."""
    inside = np.zeros(len(points), dtype=bool)
    squared_norms = (centres**2).sum(axis=1)
    for first in range(0, len(points), CHUNK_ROWS):
        chunk = points[first : first + CHUNK_ROWS]
        squared = (chunk**2).sum(axis=1)[:, None] - 2 * chunk @ centres.T + squared_norms[None, :]  # (chunk, centres)
        inside[first : first + CHUNK_ROWS] = (squared <= radii[None, :] ** 2 + 1e-9).any(axis=1)
    return float(inside.mean())


def precision_recall(real: np.ndarray, other: np.ndarray, k: int = K_NEIGHBOURS) -> PrecisionRecall:
    """k-NN precision and recall of ``other`` against ``real`` (Kynkäänniemi et al. 2019), docs/evaluation.md E2.

    Each melody is a point of ``features.feature_table`` standardized by the real set
    (``standardized``). The manifold of a set is the union of balls around its points, each of
    radius the distance to the point's k-th nearest neighbour in its own set. precision = share of
    the other melodies inside the real manifold (are they realistic?); recall = share of the real
    melodies inside the other manifold (is the real variety covered?). High precision with low
    recall: safe but narrow; the reverse: varied but unreal. Two equal sets score 1 and 1. Use
    sets of equal size: the radii shrink as a set grows.

    real, other: int [n, steps] token windows; each needs more than ``k`` melodies.
    """
    real, other = checked_set(real, "real"), checked_set(other, "other")
    if k < 1:
        raise ValueError(f"`k` must be at least 1, got {k}")
    for name, rows in (("real", real), ("other", other)):
        if len(rows) <= k:
            raise ValueError(
                f"`{name}` needs more than k = {k} melodies for k-nearest-neighbour radii, got {len(rows)}"
            )
    real_points, other_points = standardized(feature_table(real), feature_table(other))
    return PrecisionRecall(
        precision=share_inside(other_points, real_points, manifold_radii(real_points, k)),
        recall=share_inside(real_points, other_points, manifold_radii(other_points, k)),
    )


# --------------------------------------------------------------------------------------------
# E3 novelty beside copies


def nearest_training_distance(
    windows: np.ndarray, training_windows: np.ndarray, seed: int, max_reference: int | None = None
) -> np.ndarray:
    """1 - the similarity of each window to its nearest training window (``originality.nearest_neighbours``): float [n].

    0 for a copy up to transposition; the share of steps that differ from the best match otherwise.
    ``max_reference`` searches a sample of that many training windows drawn with ``seed``.
    """
    windows = checked_set(windows, "windows")
    rng = np.random.default_rng(seed)
    return 1.0 - nearest_neighbours(windows, training_windows, max_reference, rng).similarity


def closer_than(distances: np.ndarray, reference: np.ndarray) -> float:
    """P(d < d_ref) + P(d = d_ref) / 2 for a distance of ``distances`` and one of ``reference`` (nearest-training
    distances): 0.5 when a set lies as far from training as the reference melodies, above when closer."""
    labels = np.r_[np.zeros(len(distances)), np.ones(len(reference))]
    both = np.r_[distances, reference]
    return float(roc_auc_score(labels, both)) if both.min() < both.max() else 0.5


def novelty_table(
    sets: Mapping[str, np.ndarray],
    test_windows: np.ndarray,
    training_windows: np.ndarray,
    seed: int,
    max_reference: int | None = None,
) -> pd.DataFrame:
    """Copies and distances to the nearest training window of each set beside the test melodies'
    (docs/evaluation.md E3).

    One row per set, the test melodies first ("test"): melodies, copy_rate (share equal to a
    training window up to transposition, D1), nn_distance_median and nn_distance_q25 (of
    ``nearest_training_distance``, D2), and closer_than_test = P(d_set < d_test) + P(equal) / 2 for
    a melody of the set and a test melody: 0.5 when the set lies as far from training as real
    unseen tunes do, above when it keeps closer (memorising), below when further (unlike any tune).
    Every set searches the same training windows (``max_reference`` drawn with ``seed``).
    """
    distances = {"test": nearest_training_distance(test_windows, training_windows, seed, max_reference)}
    for name, windows in sets.items():
        if name == "test":
            raise ValueError("`sets` must not hold a set named 'test': the test melodies are the reference row")
        distances[name] = nearest_training_distance(windows, training_windows, seed, max_reference)
    all_sets = {"test": test_windows, **sets}
    rows = []
    for name, distance in distances.items():
        rows.append(
            {
                "set": name,
                "melodies": len(distance),
                "copy_rate": float(copy_mask(all_sets[name], training_windows).mean()),
                "nn_distance_median": float(np.median(distance)),
                "nn_distance_q25": float(np.quantile(distance, 0.25)),
                "closer_than_test": closer_than(distance, distances["test"]),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# The three together


# realism_table's columns, one row per set (notebook 04's 04_two_sample.csv, 07's 07_two_sample_by_prior.csv)
TABLE_COLUMNS = (
    "set",
    "melodies",
    "tested",
    "auc",
    "auc_low",
    "auc_high",
    "auc_fold_std",
    "precision",
    "recall",
    "copy_rate",
    "nn_distance_median",
    "nn_distance_q25",
    "closer_than_test",
)


def realism_table(
    sets: Mapping[str, np.ndarray],
    test_windows: np.ndarray,
    training_windows: np.ndarray,
    seed: int,
    folds: int = FOLDS,
    n_bootstrap: int = N_BOOT,
    k: int = K_NEIGHBOURS,
    max_reference: int | None = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """E1-E3 for each set against the held-out test melodies: one row per set, and each set's separating features.

    ``sets`` maps a name to windows: generated sets, and the real baselines a reader compares
    them with, e.g. a training sample (the floor: two real sets that differ only by split) and
    reconstructions. Each set is tested against the test melodies cut to its size with ``seed``
    (``equal_samples``, the same test sample for sets of one size). Columns: set, melodies (of the
    set), tested (melodies of each side in E1 and E2: the smaller of the set and the test melodies),
    auc, auc_low, auc_high, auc_fold_std (``two_sample_test``), precision, recall
    (``precision_recall``), then ``novelty_table``'s columns; the novelty of the test melodies
    themselves is its first row, "test", with no AUC.
    """
    test = checked_set(test_windows, "test_windows")
    rows, separating = [], {}
    for name, windows in sets.items():
        real, other = equal_samples(test, checked_set(windows, name), np.random.default_rng(seed))
        tested = two_sample_test(real, other, seed, folds, n_bootstrap)
        fidelity = precision_recall(real, other, k)
        rows.append(
            {
                "set": name,
                "tested": tested.n_per_set,
                "auc": tested.auc,
                "auc_low": tested.low,
                "auc_high": tested.high,
                "auc_fold_std": float(np.std(tested.fold_aucs)),
                "precision": fidelity.precision,
                "recall": fidelity.recall,
            }
        )
        separating[name] = tested.separating
    novelty = novelty_table(sets, test, training_windows, seed, max_reference)
    table = novelty.merge(
        pd.DataFrame(
            rows, columns=["set", "tested", "auc", "auc_low", "auc_high", "auc_fold_std", "precision", "recall"]
        ),
        on="set",
        how="left",
    )
    return table[list(TABLE_COLUMNS)], separating


def separating_table(separating: Mapping[str, pd.DataFrame], top: int = 10) -> pd.DataFrame:
    """The ``top`` rows of each set's ``univariate_auc`` in one table, a ``set`` column first:
    what a run folder keeps."""
    return pd.concat([table.head(top).assign(set=name) for name, table in separating.items()], ignore_index=True)[
        ["set", "feature", "auc", "separation", "mean_real", "mean_other"]
    ]


def describe_separating(separating: pd.DataFrame, top: int = 3) -> str:
    """The ``top`` features of ``univariate_auc`` in words: 'note-offs (0.53 against 0.30 in real melodies,
    AUC 0.70)'."""
    parts = [
        f"{row.feature} ({row.mean_other:.2f} against {row.mean_real:.2f} per real melody, AUC {row.auc:.2f})"
        for row in separating.head(top).itertuples()
    ]
    return "; ".join(parts)


def describe_realism(table: pd.DataFrame, name: str, floor: str) -> str:
    """One sentence on set ``name`` of ``realism_table`` beside the real baseline ``floor`` and the test melodies."""
    row, base, test = (table.set_index("set").loc[key] for key in (name, floor, "test"))
    return (
        f"A classifier tells {name} from held-out test melodies with ROC AUC {row['auc']:.2f} "
        f"(95% interval {row['auc_low']:.2f}-{row['auc_high']:.2f}; 0.5 = indistinguishable), against "
        f"{base['auc']:.2f} for {floor}. Precision {row['precision']:.2f} and recall {row['recall']:.2f} "
        f"({floor}: {base['precision']:.2f} and {base['recall']:.2f}). {row['copy_rate']:.1%} copy a training "
        f"window up to transposition ({test['copy_rate']:.1%} of the test melodies do); the median distance to the "
        f"nearest training window is {row['nn_distance_median']:.2f} ({test['nn_distance_median']:.2f} for test), and "
        f"one of these melodies lies closer to training than a test melody with probability "
        f"{row['closer_than_test']:.2f}."
    )
