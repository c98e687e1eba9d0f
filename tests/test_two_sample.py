"""The two-sample test, precision and recall, and novelty on hand-made sets with known answers."""

import numpy as np
import pandas as pd
import pytest
from conftest import scale_windows

from musicvae_lib import two_sample
from musicvae_lib.representation import Note, notes_to_tokens

C4, E4, G4 = 60, 64, 67


def melody(*notes: tuple[int, int, int]) -> np.ndarray:
    """One 32-step window from (start_step, end_step, pitch_midi) triples."""
    return notes_to_tokens([Note(*note) for note in notes], 32)


def quarter_note_windows(n: int, seed: int) -> np.ndarray:
    """Quarter notes (4 steps) of random pitches MIDI 55..79, leaps of any size: unlike ``scale_windows``."""
    pitches = np.random.default_rng(seed).integers(55, 80, (n, 8))
    windows = np.zeros((n, 32), np.uint8)
    windows[:, 0:32:4] = pitches - 21 + 2
    return windows


# melody_features ------------------------------------------------------------------------------


def test_melody_features_count_what_a_hand_built_melody_holds():
    window = melody((0, 2, C4), (2, 4, E4), (8, 12, G4))  # NOTE_OFFs at 4 and 12
    silent = np.zeros(32, np.uint8)
    table = two_sample.melody_features(np.stack([window, silent]))
    assert table.shape == (2, 90)
    row = table.iloc[0]
    assert [row[f"onsets at 16th {p}"] for p in (0, 2, 8, 1)] == [1, 1, 1, 0]
    assert (row["interval +4"], row["interval +3"], row["interval 0"]) == (1, 1, 0)
    assert (row["pitch class C"], row["pitch class E"], row["pitch class G"], row["pitch class D"]) == (1, 1, 1, 0)
    assert [row[f"{c} above the first note"] for c in (0, 4, 7)] == [1, 1, 1]
    assert (row["note length 2"], row["note length 4"], row["note length > 16"]) == (2, 1, 0)
    assert (row["notes"], row["note-offs"], row["silent steps"]) == (3, 2, 24)
    assert (row["pitch range"], row["lowest pitch"], row["highest pitch"]) == (7, C4, G4)
    empty = table.iloc[1]
    assert empty["notes"] == 0 and empty["silent steps"] == 32 and empty["note-offs"] == 0
    assert np.isnan(empty["pitch range"]) and np.isnan(empty["lowest pitch"]) and np.isnan(empty["highest pitch"])


def test_melody_features_of_a_set_without_any_note():
    table = two_sample.melody_features(np.zeros((3, 32), np.uint8))  # an untrained decoder's reconstructions, say
    assert table.shape == (3, 90)
    assert (table["notes"] == 0).all() and (table["silent steps"] == 32).all()
    assert table["pitch range"].isna().all() and (table["0 above the first note"] == 0).all()


def test_melody_features_pool_wide_intervals_and_long_notes():
    window = melody((0, 20, C4), (20, 24, C4 + 14), (24, 28, C4 - 1))  # up 14, down 15; one note of 20 steps
    row = two_sample.melody_features(window).iloc[0]
    assert (row["interval > +12"], row["interval < -12"], row["note length > 16"]) == (1, 1, 1)
    assert row["2 above the first note"] == 1 and row["11 above the first note"] == 1  # D5 and B3 above C4


# univariate_auc -------------------------------------------------------------------------------


def test_univariate_auc_is_the_mann_whitney_probability_and_ranks_by_separation():
    real = pd.DataFrame({"a": [0, 0, 1, 1], "b": [5, 5, 5, 5]})
    other = pd.DataFrame({"a": [1, 1, 2, 2], "b": [5, 5, 5, 5]})
    table = two_sample.univariate_auc(real, other)
    assert list(table["feature"]) == ["a", "b"]
    # P(other > real) + P(equal) / 2 over the 16 pairs: 12 larger, 4 equal
    assert table.loc[0, "auc"] == pytest.approx(14 / 16)
    assert table.loc[1, "auc"] == 0.5 and table.loc[1, "separation"] == 0
    assert (table.loc[0, "mean_real"], table.loc[0, "mean_other"]) == (0.5, 1.5)


# two_sample_test ------------------------------------------------------------------------------


def test_two_samples_of_one_distribution_sit_at_chance():
    result = two_sample.two_sample_test(scale_windows(150, seed=1), scale_windows(150, seed=2), seed=0)
    assert result.n_per_set == 150 and len(result.fold_aucs) == two_sample.FOLDS
    assert 0.35 < result.auc < 0.65
    assert result.low < 0.5 < result.high


def test_disjoint_sets_are_told_apart_and_the_differing_feature_is_named():
    result = two_sample.two_sample_test(scale_windows(100, seed=1), quarter_note_windows(100, seed=2), seed=0)
    assert result.auc > 0.99 and result.low > 0.95
    by_feature = result.separating.set_index("feature")["auc"]
    assert result.separating.iloc[0]["separation"] == 0.5  # a feature that alone separates every pair comes first
    # scales: 15 eighth notes and no quarter note; the other set the reverse
    assert (by_feature["note length 2"], by_feature["note length 4"]) == (0.0, 1.0)


def test_the_same_seed_gives_the_same_test_and_the_larger_set_is_cut():
    real, other = (
        scale_windows(120, seed=1),
        np.concatenate([scale_windows(60, seed=3), quarter_note_windows(140, seed=4)]),
    )
    first = two_sample.two_sample_test(real, other, seed=7)
    second = two_sample.two_sample_test(real, other, seed=7)
    assert first.n_per_set == 120
    assert (first.auc, first.low, first.high, first.fold_aucs) == (
        second.auc,
        second.low,
        second.high,
        second.fold_aucs,
    )
    pd.testing.assert_frame_equal(first.separating, second.separating)


def test_two_sample_test_rejects_empty_and_too_small_sets():
    with pytest.raises(ValueError, match="`other` holds no melody"):
        two_sample.two_sample_test(scale_windows(10, 0), np.zeros((0, 32), np.uint8), seed=0)
    with pytest.raises(ValueError, match="at least `folds` = 5 melodies"):
        two_sample.two_sample_test(scale_windows(3, 0), scale_windows(3, 1), seed=0)
    with pytest.raises(ValueError, match="one length"):
        two_sample.two_sample_test(scale_windows(10, 0), np.zeros((10, 64), np.uint8), seed=0)


# precision_recall -----------------------------------------------------------------------------


def test_equal_sets_have_full_precision_and_recall():
    windows = np.concatenate([scale_windows(20, 0), quarter_note_windows(20, 1)])
    assert two_sample.precision_recall(windows, windows) == two_sample.PrecisionRecall(1.0, 1.0)


def test_far_apart_sets_have_neither_precision_nor_recall():
    result = two_sample.precision_recall(scale_windows(20, 0), quarter_note_windows(20, 1))
    assert (result.precision, result.recall) == (0.0, 0.0)


def test_a_set_that_covers_one_kind_of_real_melody_is_precise_but_recalls_half():
    real = np.concatenate([scale_windows(30, 0), quarter_note_windows(30, 1)])
    # the narrow set is the real scales: it lies on the real manifold and covers none of the quarter-note melodies
    result = two_sample.precision_recall(real, scale_windows(30, 0))
    assert result.precision == 1.0
    assert result.recall == pytest.approx(0.5)


def test_precision_recall_rejects_sets_too_small_for_k():
    with pytest.raises(ValueError, match="more than k = 3"):
        two_sample.precision_recall(scale_windows(3, 0), scale_windows(10, 1))
    with pytest.raises(ValueError, match="`real` holds no melody"):
        two_sample.precision_recall(np.zeros((0, 32), np.uint8), scale_windows(10, 1))


# novelty --------------------------------------------------------------------------------------


def test_novelty_puts_copies_at_distance_zero_beside_the_test_melodies():
    training = scale_windows(30, 0)
    test = scale_windows(10, 1)  # transposed copies of training scales
    table = two_sample.novelty_table({"new": quarter_note_windows(10, 2)}, test, training, seed=0).set_index("set")
    assert list(table.index) == ["test", "new"]
    assert table.loc["test", "copy_rate"] == 1.0 and table.loc["test", "nn_distance_median"] == 0.0
    assert table.loc["test", "closer_than_test"] == 0.5
    assert table.loc["new", "copy_rate"] == 0.0 and table.loc["new", "nn_distance_median"] > 0.3
    assert table.loc["new", "closer_than_test"] == 0.0  # every new melody lies further than every test melody


def test_novelty_table_keeps_the_name_test_for_the_reference():
    with pytest.raises(ValueError, match="named 'test'"):
        two_sample.novelty_table({"test": scale_windows(5, 0)}, scale_windows(5, 1), scale_windows(5, 2), seed=0)


# realism_table --------------------------------------------------------------------------------


def test_realism_table_sets_each_set_beside_the_floor_and_the_test_melodies():
    training, test = scale_windows(60, 0), scale_windows(40, 1)
    sets = {"train": scale_windows(40, 2), "unreal": quarter_note_windows(50, 3)}
    table, separating = two_sample.realism_table(sets, test, training, seed=0, n_bootstrap=20)
    table = table.set_index("set")
    assert list(table.index) == ["test", "train", "unreal"]
    assert np.isnan(table.loc["test", "auc"]) and np.isnan(table.loc["test", "tested"])
    assert (table.loc["unreal", "melodies"], table.loc["unreal", "tested"]) == (50, 40)  # cut to the test melodies
    assert table.loc["unreal", "auc"] > 0.95 > table.loc["train", "auc"]
    assert (table.loc["train", "precision"], table.loc["train", "recall"]) == (1.0, 1.0)
    assert table.loc["unreal", "copy_rate"] == 0.0 and table.loc["train", "copy_rate"] == 1.0
    assert set(separating) == {"train", "unreal"}
    sentence = two_sample.describe_realism(table.reset_index(), "unreal", "train")
    assert "ROC AUC 1.00" in sentence and "against" in sentence and "0.0% copy" in sentence
    assert sentence.count("unreal") == 1  # a prior's long name is said once
