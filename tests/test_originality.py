import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicvae_lib import originality
from musicvae_lib.features import notes_of
from musicvae_lib.representation import NOTE_OFF, Note, notes_to_tokens, tokens_to_notes

C4, D4, E4, F4, G4, B4, C5 = 60, 62, 64, 65, 67, 71, 72


def melody(*notes: tuple[int, int, int]) -> np.ndarray:
    """One 32-step window from (start_step, end_step, pitch_midi) triples."""
    return notes_to_tokens([Note(*note) for note in notes], 32)


def transposed(window: np.ndarray, semitones: int) -> np.ndarray:
    shifted = window.astype(np.int64)
    shifted[shifted >= 2] += semitones
    return shifted.astype(np.uint8)


SILENT = np.zeros(32, np.uint8)
TUNE = melody((0, 4, C4), (4, 8, D4), (8, 16, E4), (16, 30, G4))


def brute_force_similarity(window_a: np.ndarray, window_b: np.ndarray) -> float:
    """D2 similarity from tokens_to_notes and every shift, one pair at a time."""

    def states(window):
        pitch = np.full(32, -1000)  # silent
        onset = np.zeros(32, bool)
        for note in tokens_to_notes(window):
            pitch[note.start_step : note.end_step] = note.pitch_midi
            onset[note.start_step] = True
        return pitch, onset

    pitch_a, onset_a = states(window_a)
    pitch_b, onset_b = states(window_b)
    both_silent = np.sum((pitch_a == -1000) & (pitch_b == -1000))
    comparable = (pitch_a != -1000) & (pitch_b != -1000) & (onset_a == onset_b)
    shifts = np.arange(-90, 91)[:, None]
    best_sounding = np.max(np.sum(comparable & (pitch_a + shifts == pitch_b), axis=1))
    return (both_silent + best_sounding) / 32


def random_windows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Windows over a narrow pitch range, so that pairs share steps and shifts matter."""
    tokens = rng.integers(50, 60, size=(n, 32))
    tokens[rng.random((n, 32)) < 0.55] = 0
    tokens[rng.random((n, 32)) < 0.1] = NOTE_OFF
    return tokens.astype(np.uint8)


# D1 ---------------------------------------------------------------------------------------------


def test_a_transposed_copy_has_the_same_key_and_a_one_step_change_does_not():
    moved_onset = melody((0, 4, C4), (5, 8, D4), (8, 16, E4), (16, 30, G4))
    longer_last = melody((0, 4, C4), (4, 8, D4), (8, 16, E4), (16, 31, G4))
    other_interval = melody((0, 4, C4), (4, 8, D4), (8, 16, F4), (16, 30, G4))
    keys = originality.transposition_invariant_keys(
        np.stack([TUNE, transposed(TUNE, 5), transposed(TUNE, -12), moved_onset, longer_last, other_interval])
    )
    assert keys.shape == (6,)
    assert keys[0] == keys[1] == keys[2]
    assert all(keys[0] != keys[other] for other in (3, 4, 5))


def test_keys_of_windows_without_notes_and_with_one_note():
    off_at_start = SILENT.copy()
    off_at_start[0] = NOTE_OFF
    one_note = melody((2, 10, C4))
    keys = originality.transposition_invariant_keys(
        np.stack([SILENT, SILENT, off_at_start, one_note, melody((2, 10, G4)), melody((2, 11, C4))])
    )
    assert keys[0] == keys[1] and keys[0] != keys[2]  # silent windows: the literal rest pattern
    assert keys[3] == keys[4]  # one note: only its rhythm counts
    assert keys[3] != keys[5] and keys[3] != keys[0]


def test_copy_mask_literal_and_up_to_transposition():
    moved_onset = melody((0, 4, C4), (5, 8, D4), (8, 16, E4), (16, 30, G4))
    generated = np.stack([TUNE, transposed(TUNE, 3), moved_onset, SILENT])
    training = np.stack([TUNE, melody((0, 32, C4))])
    assert originality.copy_mask(generated, training).tolist() == [True, True, False, False]
    assert originality.copy_mask(generated, training, transposition_invariant=False).tolist() == [
        True,
        False,
        False,
        False,
    ]
    assert originality.exact_copy_rate(generated, training) == 0.5
    assert originality.exact_copy_rate(generated, training, transposition_invariant=False) == 0.25
    assert originality.exact_copy_rate(generated, np.stack([SILENT])) == 0.25  # the silent window copies


def test_copy_rate_of_an_empty_set_is_nan_and_lengths_must_match():
    assert np.isnan(originality.exact_copy_rate(np.zeros((0, 32), np.uint8), TUNE))
    with pytest.raises(ValueError, match="32 steps but training windows 16"):
        originality.copy_mask(TUNE, np.zeros((1, 16), np.uint8))


# D2 ---------------------------------------------------------------------------------------------


def test_a_training_window_and_its_transposition_are_their_own_nearest_neighbours():
    other = melody((0, 8, C4), (8, 16, D4), (16, 32, E4))
    training = np.stack([SILENT, other, TUNE, transposed(TUNE, 2)])
    result = originality.nearest_neighbours(np.stack([TUNE, transposed(TUNE, -7), other]), training)
    assert result.similarity.tolist() == [1.0, 1.0, 1.0]
    assert result.index.tolist() == [2, 2, 1]  # the lowest of the tied rows 2 and 3


def test_similarity_by_hand_half_the_steps_under_either_shift():
    query = melody((0, 8, C4), (8, 16, D4), (16, 32, E4))
    training = melody((0, 8, C4), (8, 16, D4), (16, 32, G4))
    # shift 0: steps 0..15 agree; shift +3: steps 16..31; never both
    assert originality.nearest_neighbours(query, training).similarity.tolist() == [0.5]


def test_silent_steps_agree_only_with_silent_steps():
    full_note = melody((0, 32, C4))
    half_note = melody((0, 16, C4))
    assert originality.nearest_neighbours(SILENT, SILENT).similarity.tolist() == [1.0]
    assert originality.nearest_neighbours(SILENT, full_note).similarity.tolist() == [0.0]
    assert originality.nearest_neighbours(SILENT, half_note).similarity.tolist() == [0.5]
    repeated = melody((0, 16, C4), (16, 32, C4))  # same pitch, but step 16 is an onset, not a hold
    assert originality.nearest_neighbours(repeated, full_note).similarity.tolist() == [31 / 32]


def test_a_note_off_that_ends_nothing_is_a_d2_match_but_not_a_d1_copy():
    redundant_off = TUNE.copy()
    redundant_off[31] = NOTE_OFF  # G4 already ended at step 30
    assert originality.nearest_neighbours(redundant_off, TUNE).similarity.tolist() == [1.0]
    assert not originality.copy_mask(redundant_off, TUNE)[0]


def test_step_states_sound_exactly_the_steps_of_notes_of():
    windows = random_windows(np.random.default_rng(3), 50)
    code, silent = originality.step_states(windows, rest_code=-1)
    assert int((silent == 0).sum()) == int(notes_of(windows).length_steps.sum())
    assert np.array_equal(code == -1, silent == 1)


def test_nearest_neighbours_equal_a_brute_force_search():
    rng = np.random.default_rng(0)
    training = random_windows(rng, 40)
    queries = np.concatenate([random_windows(rng, 10), transposed(training[[7]], 4)])
    result = originality.nearest_neighbours(queries, training)
    brute = np.array([[brute_force_similarity(query, reference) for reference in training] for query in queries])
    assert np.array_equal(result.similarity, brute.max(axis=1))
    assert np.array_equal(result.index, brute.argmax(axis=1))
    assert result.similarity[-1] == 1.0 and 0 < result.similarity[:-1].min() < 1


def test_a_training_subsample_is_seeded_and_indexes_the_full_training_set():
    rng = np.random.default_rng(1)
    training = random_windows(rng, 40)
    queries = random_windows(rng, 5)
    first = originality.nearest_neighbours(queries, training, max_reference=10, rng=np.random.default_rng(7))
    again = originality.nearest_neighbours(queries, training, max_reference=10, rng=np.random.default_rng(7))
    full = originality.nearest_neighbours(queries, training)
    assert np.array_equal(first.index, again.index)
    assert set(first.index) <= set(np.random.default_rng(7).choice(40, size=10, replace=False))
    pair_similarity = [brute_force_similarity(q, training[i]) for q, i in zip(queries, first.index)]
    assert np.array_equal(first.similarity, pair_similarity)
    assert np.all(first.similarity <= full.similarity)
    with pytest.raises(ValueError, match="pass `rng`"):
        originality.nearest_neighbours(queries, training, max_reference=10)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(-20, 20))
def test_every_transposed_copy_is_a_copy_with_similarity_one(seed, semitones):
    window = random_windows(np.random.default_rng(seed), 1)[0]
    copy = transposed(window, semitones)
    assert originality.copy_mask(copy, window)[0]
    assert originality.nearest_neighbours(copy, window).similarity[0] == 1.0


# D3 ---------------------------------------------------------------------------------------------

# training: C D E F G on quarter notes; intervals 2 2 1 2, IOIs 4 4 4 4
TRAINING = np.stack([melody((0, 4, C4), (4, 8, D4), (8, 12, E4), (12, 16, F4), (16, 20, G4))])
# seen: intervals 2 2 1, IOIs 4 4 4
SEEN = melody((0, 4, C4), (4, 8, D4), (8, 12, E4), (12, 16, F4))
# intervals 4 3 5 -1 (all new), IOIs 4 4 4 2 (4 4 4 seen, 4 4 2 new)
NEW = melody((0, 4, C4), (4, 8, E4), (8, 12, G4), (12, 14, C5), (14, 20, B4))


def test_ngrams_span_n_plus_one_notes_within_a_window():
    grams = originality.ngrams(np.stack([SEEN, NEW]), 3, "interval")
    assert grams.window.tolist() == [0, 1, 1]
    assert grams.values.tolist() == [[2, 2, 1], [4, 3, 5], [3, 5, -1]]
    iois = originality.ngrams(np.stack([SEEN, NEW]), 3, "ioi")
    assert iois.values.tolist() == [[4, 4, 4], [4, 4, 4], [4, 4, 2]]
    assert originality.ngrams(np.stack([SEEN, NEW]), 4, "interval").values.tolist() == [[4, 3, 5, -1]]


def test_ngrams_reject_unknown_kinds_and_lengths():
    with pytest.raises(ValueError, match="`kind` must be one of"):
        originality.ngrams(SEEN, 3, "pitch")
    with pytest.raises(ValueError, match="`n` must lie in 1..7, got 8"):
        originality.ngrams(SEEN, 8, "ioi")


def test_novelty_by_hand_on_two_windows():
    generated = np.stack([SEEN, NEW])
    assert originality.ngram_novelty(generated, TRAINING, 3, "interval") == pytest.approx(2 / 3)
    assert originality.ngram_novelty(generated, TRAINING, 3, "ioi") == pytest.approx(1 / 3)
    assert originality.ngram_novelty(generated, TRAINING, 4, "interval") == 1.0  # SEEN has no 4-gram


def test_novelty_is_zero_for_the_training_set_and_one_for_unseen_intervals():
    assert originality.ngram_novelty(TRAINING, TRAINING, 3, "interval") == 0.0
    assert originality.ngram_novelty(TRAINING, TRAINING, 4, "ioi") == 0.0
    leaps = melody((0, 4, C4), (4, 8, C5), (8, 12, C4), (12, 16, C5))
    assert originality.ngram_novelty(leaps, TRAINING, 3, "interval") == 1.0
    assert originality.ngram_novelty(leaps, TRAINING, 3, "ioi") == 0.0  # its rhythm is the training rhythm


def test_sets_without_ngrams_give_nan():
    edge_cases = np.stack([SILENT, melody((0, 32, C4)), melody((0, 8, C4), (8, 16, D4), (16, 24, E4))])
    assert originality.ngrams(edge_cases, 3, "interval").values.shape == (0, 3)
    assert np.isnan(originality.ngram_novelty(edge_cases, TRAINING, 3, "interval"))
    count, share = originality.distinct_ngrams(edge_cases, 3, "ioi")
    assert count == 0 and np.isnan(share)


def test_distinct_ngrams_count_and_share():
    generated = np.stack([SEEN, NEW])
    assert originality.distinct_ngrams(generated, 3, "interval") == (3, 1.0)
    count, share = originality.distinct_ngrams(generated, 3, "ioi")
    assert count == 2 and share == pytest.approx(2 / 3)


def test_mean_pairwise_distance_over_all_pairs_by_hand():
    one, two = SILENT.copy(), SILENT.copy()
    one[:3] = NOTE_OFF
    two[:5] = NOTE_OFF
    rng = np.random.default_rng(0)
    assert originality.mean_pairwise_distance(np.stack([SILENT, one]), 10, rng) == 3 / 32
    # pairs: 3, 5 and 2 steps apart
    assert originality.mean_pairwise_distance(np.stack([SILENT, one, two]), 10, rng) == pytest.approx(10 / 96)
    assert np.isnan(originality.mean_pairwise_distance(np.stack([one]), 10, rng))


def test_sampled_pairwise_distance_is_seeded_and_near_the_full_mean():
    windows = random_windows(np.random.default_rng(2), 60)
    exact = originality.mean_pairwise_distance(windows, 60 * 59 // 2, np.random.default_rng(0))
    sampled = originality.mean_pairwise_distance(windows, 400, np.random.default_rng(5))
    assert sampled == originality.mean_pairwise_distance(windows, 400, np.random.default_rng(5))
    assert sampled != exact and abs(sampled - exact) < 0.02


# The table --------------------------------------------------------------------------------------


def test_originality_table_rows_and_training_baseline():
    training = np.stack([TRAINING[0], TUNE])
    table = originality.originality_table({"training": training, "generated": np.stack([SEEN, NEW])}, training, seed=0)
    assert table.index.tolist() == ["training", "generated"]
    assert table.columns.tolist() == [
        "n_windows", "copy_rate", "copy_rate_literal", "nn_similarity_mean", "nn_similarity_median",
        "novelty_interval_3", "distinct_share_interval_3", "novelty_interval_4", "distinct_share_interval_4",
        "novelty_ioi_3", "distinct_share_ioi_3", "novelty_ioi_4", "distinct_share_ioi_4", "mean_pairwise_distance",
    ]  # fmt: skip
    baseline = table.loc["training"]
    assert baseline["copy_rate"] == baseline["copy_rate_literal"] == baseline["nn_similarity_mean"] == 1.0
    assert baseline["novelty_interval_3"] == 0.0 and baseline["novelty_ioi_4"] == 0.0
    generated = table.loc["generated"]
    assert generated["n_windows"] == 2 and generated["copy_rate"] == 0.0
    assert generated["novelty_interval_3"] == pytest.approx(2 / 3)
    assert generated["mean_pairwise_distance"] == pytest.approx(np.mean(SEEN != NEW))


def test_describe_originality_sets_a_set_beside_the_test_melodies():
    table = pd.DataFrame(
        {
            "copy_rate": [0.125, 0.0],
            "copy_rate_literal": [0.05, 0.0],
            "nn_similarity_mean": [0.8, 0.6],
            "novelty_interval_4": [0.3, 0.5],
        },
        index=["T=1.0", "test"],
    )
    assert originality.describe_originality(table, "T=1.0") == (
        "12.5% of the T=1.0 melodies copy a training window up to transposition (5.0% literally), against 0.0% of "
        "the held-out test melodies. The nearest training window matches 80% of the steps on average (60% for test); "
        "30% of its interval 4-grams are new (50% for test)."
    )
    with pytest.raises(ValueError, match=r"lacks rows \['T=0.5'\] or columns \[\]"):
        originality.describe_originality(table, "T=0.5")
    with pytest.raises(ValueError, match=r"columns \['novelty_interval_4'\]"):
        originality.describe_originality(table.drop(columns="novelty_interval_4"), "T=1.0")
