import muspy
import numpy as np
import pandas as pd
import pretty_midi
import pytest
from music21 import pitch

from musicvae_lib import features, folk_melodies
from musicvae_lib.representation import (
    NOTE_OFF,
    Note,
    notes_to_tokens,
    pitch_to_token,
    tokens_to_midi,
    tokens_to_notes,
    tokens_to_stream,
)

C4, D4, G4 = 60, 62, 67


@pytest.fixture
def two_windows():
    first = notes_to_tokens([Note(0, 4, C4), Note(6, 8, D4), Note(8, 32, G4)], 32)
    silent = np.zeros(32, np.uint8)
    return np.stack([first, silent])


def test_notes_of_reads_onsets_lengths_and_pitches(two_windows):
    notes = features.notes_of(two_windows)
    assert notes.window.tolist() == [0, 0, 0]
    assert notes.start_step.tolist() == [0, 6, 8]
    assert notes.length_steps.tolist() == [4, 2, 24]  # the last note is held to the window end
    assert notes.pitch_midi.tolist() == [C4, D4, G4]


def test_counts_over_a_set(two_windows):
    classes = features.class_counts(two_windows)
    assert classes.sum() == 64 and classes[NOTE_OFF] == 1 and classes[pitch_to_token(G4)] == 1
    assert classes[0] == 64 - 4
    assert features.pitch_counts(two_windows) == {C4: 1, D4: 1, G4: 1}
    assert features.onset_position_counts(two_windows).tolist() == [1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    lengths = features.note_length_counts(two_windows)
    assert len(lengths) == 33 and lengths[[2, 4, 24]].tolist() == [1, 1, 1] and lengths.sum() == 3
    assert features.notes_per_window(two_windows).tolist() == [3, 0]


def test_pitch_range_is_nan_for_a_window_without_notes(two_windows):
    ranges = features.pitch_range(two_windows)
    assert ranges[0] == G4 - C4 and np.isnan(ranges[1])


def test_one_window_is_a_set_of_one(two_windows):
    assert features.notes_per_window(two_windows[0]).tolist() == [3]
    with pytest.raises(ValueError, match="n_windows, steps"):
        features.notes_of(np.zeros((2, 2, 32)))


def test_metrical_levels_follow_music21_beat_strength_in_four_four():
    # one 16th note on every position of a 4/4 bar; music21 gives 1, .5, .25, .125, .0625 by level
    window = notes_to_tokens([Note(step, step + 1, C4) for step in range(16)], 16)
    strengths = [n.beatStrength for n in tokens_to_stream(window).flatten().notes]
    level_of_strength = dict(zip([1.0, 0.5, 0.25, 0.125, 0.0625], features.METRICAL_LEVELS))
    assert [features.metrical_level(p) for p in range(16)] == [level_of_strength[s] for s in strengths]


def test_onset_level_shares_sum_to_one_or_are_nan():
    shares = features.onset_level_shares(np.array([4, 1, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]))
    assert shares == {"bar": 0.5, "half bar": 0.125, "beat": 0.25, "eighth": 0.0, "sixteenth": 0.125}
    assert all(np.isnan(v) for v in features.onset_level_shares(np.zeros(16)).values())
    with pytest.raises(ValueError, match="position"):
        features.metrical_level(16)


# ---------------------------------------------------------------------------------------------
# Per-window features on hand-built melodies, expected values written out

E4, F4, A4, B4, C5, CS5 = 64, 65, 69, 71, 72, 73
NAMES = ["empty", "all rests", "one note", "scale", "jump"]


@pytest.fixture
def melodies():
    """Five windows: no event, only NOTE_OFFs, one held G4, a C major scale, a chromatic jumpy line."""
    rests = np.full(32, NOTE_OFF, np.uint8)
    one_note = notes_to_tokens([Note(4, 12, G4)], 32)  # 4 silent steps before it, NOTE_OFF at 12
    scale = notes_to_tokens([Note(4 * i, 4 * i + 4, p) for i, p in enumerate([C4, D4, E4, F4, G4, A4, B4, C5])], 32)
    # onsets 0, 2, 6 | 19 (bar 2, position 3); C4 C4 C#5 D4: intervals 0, +13, -11; rests between
    jump = notes_to_tokens([Note(0, 2, C4), Note(2, 3, C4), Note(6, 8, CS5), Note(19, 20, D4)], 32)
    return np.stack([np.zeros(32, np.uint8), rests, one_note, scale, jump])


NAN = np.nan
EXPECTED = {  # one value per window of ``melodies``: empty, all rests, one note, scale, jump
    "pitch_range": [NAN, NAN, 0, 12, 13],
    "n_pitches_used": [NAN, NAN, 1, 8, 3],
    "n_pitch_classes_used": [NAN, NAN, 1, 7, 3],
    "pitch_entropy": [NAN, NAN, 0, 3, 1.5],  # scale: 8 equally likely pitches; jump: 1/2, 1/4, 1/4
    "pitch_class_entropy": [NAN, NAN, 0, 2.75, 1.5],  # scale: C twice, 6 others once
    "scale_consistency": [NAN, NAN, 1, 1, 0.75],  # no scale holds C, C# and D
    "non_diatonic_notes": [NAN, NAN, 0, 0, 1],
    "c_diatonic_share": [NAN, NAN, 1, 1, 0.75],
    "mean_abs_interval": [NAN, NAN, NAN, 12 / 7, 8],  # scale 2 2 1 2 2 2 1; jump 0 13 11
    "mean_note_length": [NAN, NAN, 8, 4, 1.5],  # jump 2 1 2 1
    "mean_ioi": [NAN, NAN, NAN, 4, 19 / 3],  # jump 2 4 13
    "note_density": [NAN, NAN, 0.5, 4, 2],
    "silence_share": [NAN, NAN, 0.75, 0, 26 / 32],
    "syncopation_8th": [NAN, NAN, 0, 0, 0.5],  # jump: positions 2 and 6 of 0, 2, 6, 3
    "syncopation_16th": [NAN, NAN, 0, 0, 0.25],  # jump: position 3
    "groove_similarity": [NAN, NAN, 15 / 16, 1, 12 / 16],  # jump: {0, 2, 6} vs {3}
    "n_notes": [0, 0, 1, 8, 4],
}


def test_feature_table_gives_the_written_out_values(melodies):
    table = features.feature_table(melodies)
    assert list(table.columns) == list(EXPECTED) == list(features.FEATURE_UNITS)
    for column, expected in EXPECTED.items():
        np.testing.assert_allclose(table[column].to_numpy(float), expected, rtol=1e-12, err_msg=column)
    assert table["n_notes"].dtype.kind == "i"


def test_the_registry_names_each_feature_function_and_unit_once():
    assert list(features.FEATURE_FUNCTIONS) == list(features.FEATURE_UNITS)
    for column, function in features.FEATURE_FUNCTIONS.items():
        name = "notes_per_window" if column == "n_notes" else column
        assert function is getattr(features, name), column  # the column is named after its function
        assert function.__doc__, column
    assert len(set(features.FEATURE_FUNCTIONS.values())) == len(features.FEATURE_FUNCTIONS)
    assert set(features.ATTRIBUTES) <= set(features.FEATURE_UNITS)
    assert set(features.RHYTHM_FEATURES) | set(features.MELODY_FEATURES) <= set(features.FEATURE_UNITS)


def test_a_row_of_the_table_is_the_features_of_its_window_alone(melodies):
    table = features.feature_table(melodies)
    for row, window in enumerate(melodies):
        alone = features.feature_table(window[None])
        pd.testing.assert_frame_equal(alone, table.iloc[[row]].reset_index(drop=True), check_exact=True)
    assert features.attributes(melodies).columns.tolist() == list(features.ATTRIBUTES)


def test_features_of_one_window_are_a_set_of_one(melodies):
    table = features.feature_table(melodies[3])
    assert len(table) == 1 and table["pitch_entropy"].iloc[0] == 3.0


def test_pitch_class_histograms_count_notes_or_steps(melodies):
    scale, jump = melodies[3], melodies[4]
    c_major = [1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1]
    assert features.pitch_class_histogram(scale).tolist() == [
        (count + (pc == 0)) / 8 for pc, count in enumerate(c_major)
    ]
    assert features.pitch_class_histogram(jump)[:3].tolist() == [2 / 4, 1 / 4, 1 / 4]
    assert features.pitch_class_histogram(jump, duration_weighted=True)[:3].tolist() == [3 / 6, 2 / 6, 1 / 6]
    per_window = features.window_pitch_class_histograms(melodies, duration_weighted=True)
    assert per_window.shape == (5, 12) and np.isnan(per_window[:2]).all()
    np.testing.assert_allclose(per_window[2:].sum(axis=1), 1.0)
    assert per_window[2, G4 % 12] == 1.0
    # the set histogram pools notes: scale and jump give C 4 of 12 notes, not the mean of 2/8 and 2/4
    assert features.pitch_class_histogram(melodies[3:])[0] == 4 / 12
    assert np.isnan(features.pitch_class_histogram(melodies[:2])).all()


def test_pitch_class_transitions_cross_rests_but_not_windows(melodies):
    transitions = features.pitch_class_transitions(melodies)
    assert transitions.sum() == 7 + 3  # 8 notes of the scale, 4 of the jump
    assert transitions[0, 0] == 1  # C4 C4 of the jump; the scale's last C5 does not lead into the jump
    assert transitions[1, 2] == 1  # C#5 to D4 across the rest of steps 8..18
    assert transitions[11, 0] == 1 and transitions[0, 2] == 1  # B4 C5 and C4 D4 of the scale
    assert features.pitch_class_transitions(melodies[:3]).sum() == 0


def test_note_pairs_and_interval_shares(melodies):
    pairs = features.note_pairs(melodies)
    assert pairs.window.tolist() == [3] * 7 + [4] * 3
    assert pairs.interval_semitones[-3:].tolist() == [0, 13, -11]
    assert pairs.ioi_steps[-3:].tolist() == [2, 4, 13]
    assert pairs.first_pitch_midi[-1] == CS5 and pairs.second_pitch_midi[-1] == D4
    # the scale's 7 steps and the jump's 0, 13, 11: categories overlap only in the last
    shares = features.interval_shares(melodies)
    assert list(shares) == ["repeat (0)", "step (1-2)", "leap (3-7)", "large leap (>=8)", "beyond an octave (>12)"]
    assert list(shares.values()) == pytest.approx([0.1, 0.7, 0.0, 0.2, 0.1])
    assert sum(list(shares.values())[:4]) == pytest.approx(1.0)
    assert all(np.isnan(v) for v in features.interval_shares(melodies[:3]).values())


def test_ioi_counts(melodies):
    counts = features.ioi_counts(melodies)
    assert len(counts) == 32 and counts[4] == 7 + 1 and counts[2] == 1 and counts[13] == 1 and counts.sum() == 10


def test_groove_similarity_over_longer_windows_and_bad_lengths():
    # bars with onsets {0}, {0}, {0, 8}: Hamming 0 then 1, mean 0.5
    window = notes_to_tokens([Note(0, 4, C4), Note(16, 20, C4), Note(32, 36, C4), Note(40, 44, D4)], 48)
    assert features.groove_similarity(window).tolist() == [1 - 0.5 / 16]
    for steps in (16, 40):
        with pytest.raises(ValueError, match="at least 2 whole bars"):
            features.groove_similarity(np.zeros((1, steps), np.uint8))


def test_key_and_clarity_uses_krumhansl_and_is_empty_for_no_note(melodies):
    keys = features.key_and_clarity(melodies[[0, 3]])
    assert keys["key"].isna().tolist() == [True, False] and keys["key"].iloc[1] == "C major"
    assert np.isnan(keys["key_clarity"].iloc[0]) and 0.5 < keys["key_clarity"].iloc[1] <= 1.0


def test_polyphony_and_monophony_of_note_lists():
    chord = [Note(0, 8, C4), Note(0, 4, E4), Note(4, 8, G4), Note(8, 12, C4)]
    assert features.polyphony(chord) == 20 / 12  # two pitches on steps 0..7, one on 8..11
    assert not features.is_monophonic(chord)
    same_pitch_overlap = [Note(0, 4, C4), Note(2, 6, C4)]
    assert features.polyphony(same_pitch_overlap) == 1.0 and not features.is_monophonic(same_pitch_overlap)
    line = [Note(0, 4, C4), Note(4, 8, D4), Note(10, 12, C4), Note(12, 12, G4)]  # the last lasts no step
    assert features.polyphony(line) == 1.0 and features.is_monophonic(line)
    assert np.isnan(features.polyphony([])) and features.is_monophonic([])


# ---------------------------------------------------------------------------------------------
# Cross-checks on real folk melodies against muspy, pretty_midi and music21


@pytest.fixture(scope="module")
def folk_windows():
    """About 120 windows of 10 Essen folk songs spread over the collection (~0.3 s)."""
    essen = folk_melodies.read_folk_tunes(["essenFolksong"])
    tunes = [tune for tune in essen if folk_melodies.has_accepted_meter(tune)][::200]
    windows = np.concatenate([folk_melodies.tune_windows(tune, 2).windows for tune in tunes])
    assert len(windows) > 50 and (windows == NOTE_OFF).any()  # rests included
    return windows


def as_muspy(notes):
    """A muspy Music of step-grid notes at resolution 4 (time steps per quarter): no rounding."""
    muspy_notes = [muspy.Note(time=n.start_step, pitch=n.pitch_midi, duration=n.end_step - n.start_step) for n in notes]
    return muspy.Music(resolution=4, tracks=[muspy.Track(notes=muspy_notes)])


MUSPY_TWINS = [
    "pitch_range",
    "n_pitches_used",
    "n_pitch_classes_used",
    "pitch_entropy",
    "pitch_class_entropy",
    "scale_consistency",
]


@pytest.mark.parametrize("name", MUSPY_TWINS)
def test_agrees_exactly_with_muspy(folk_windows, melodies, name):
    windows = np.concatenate([folk_windows, melodies[2:]])
    ours = getattr(features, name)(windows)
    theirs = [getattr(muspy, name)(as_muspy(tokens_to_notes(window))) for window in windows]
    assert ours.tolist() == theirs
    assert len(set(theirs)) > 3  # the windows differ in this feature, so agreement says something


def test_token_windows_are_monophonic_as_muspy_sees_them(folk_windows):
    for window in folk_windows:
        notes = tokens_to_notes(window)
        assert features.is_monophonic(notes)
        assert features.polyphony(notes) == muspy.polyphony(as_muspy(notes)) == 1.0
    chord = [Note(0, 8, C4), Note(0, 4, E4), Note(4, 8, G4), Note(8, 12, C4)]
    assert features.polyphony(chord) == muspy.polyphony(as_muspy(chord)) == 20 / 12


@pytest.mark.parametrize("duration_weighted", [False, True])
def test_pitch_class_histograms_agree_with_pretty_midi(folk_windows, duration_weighted):
    ours = features.window_pitch_class_histograms(folk_windows, duration_weighted)
    theirs = [
        tokens_to_midi(w).instruments[0].get_pitch_class_histogram(use_duration=duration_weighted, normalize=True)
        for w in folk_windows
    ]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    # the whole set: windows one after another in one track
    melody = pretty_midi.Instrument(0)
    for i, window in enumerate(folk_windows):
        for note in tokens_to_midi(window).instruments[0].notes:
            seconds = 4.0 * i  # a window of 32 steps lasts 4 s at 120 qpm
            melody.notes.append(pretty_midi.Note(90, note.pitch, note.start + seconds, note.end + seconds))
    pooled = melody.get_pitch_class_histogram(use_duration=duration_weighted, normalize=True)
    ours_pooled = features.pitch_class_histogram(folk_windows, duration_weighted)
    np.testing.assert_allclose(ours_pooled, pooled, rtol=1e-12, atol=0)


def test_transitions_agree_with_pretty_midi_once_rests_are_closed(folk_windows):
    # pretty_midi links a note only to one starting where it ends: holding every note through its
    # rest (NOTE_OFF -> NO_EVENT) gives the same note order with no gaps
    legato = np.where(folk_windows == NOTE_OFF, 0, folk_windows)
    theirs = sum(tokens_to_midi(w).instruments[0].get_pitch_class_transition_matrix() for w in legato)
    ours = features.pitch_class_transitions(folk_windows)
    assert ours.tolist() == theirs.astype(int).tolist() and ours.sum() > 100
    with_rests = sum(tokens_to_midi(w).instruments[0].get_pitch_class_transition_matrix() for w in folk_windows)
    assert with_rests.sum() < ours.sum()  # rests do break pretty_midi's transitions


def test_syncopation_matches_music21_beat_strength(folk_windows):
    windows = folk_windows[:40]
    expected_16th, expected_8th = [], []
    for window in windows:
        onsets = [n for n in tokens_to_stream(window).flatten().notes if n.tie is None or n.tie.type == "start"]
        strengths = np.array([n.beatStrength for n in onsets])
        expected_16th.append(np.mean(strengths == 0.0625))
        expected_8th.append(np.mean(strengths == 0.125))
    assert features.syncopation_16th(windows).tolist() == pytest.approx(expected_16th)
    assert features.syncopation_8th(windows).tolist() == pytest.approx(expected_8th)
    assert max(expected_8th) > 0  # some windows have off-beat eighths


# Krumhansl-Kessler profiles as music21 (and Humdrum keycor) give them, C first
KK_MAJOR = [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]
KK_MINOR = [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]


def test_key_clarity_is_the_best_krumhansl_correlation(folk_windows):
    windows = folk_windows[:30]
    keys = features.key_and_clarity(windows)
    profiles = [np.roll(KK_MAJOR, root) for root in range(12)] + [np.roll(KK_MINOR, root) for root in range(12)]
    histograms = features.window_pitch_class_histograms(windows, duration_weighted=True)
    best = [max(np.corrcoef(h, p)[0, 1] for p in profiles) for h in histograms]
    np.testing.assert_allclose(keys["key_clarity"], best, rtol=1e-9)
    tonic_pc = [pitch.Pitch(name.split()[0]).pitchClass for name in keys["key"]]
    best_pc = [int(np.argmax([np.corrcoef(h, p)[0, 1] for p in profiles])) % 12 for h in histograms]
    assert tonic_pc == best_pc


def test_length_shares_pool_the_long_lengths_and_sum_to_one():
    counts = np.zeros(33, int)
    counts[[1, 4, 20, 32]] = [2, 1, 1, 0]
    shares = features.length_shares(counts, longest=16)
    assert shares["1"] == 0.5 and shares["4"] == 0.25 and shares[">16"] == 0.25
    assert shares.sum() == pytest.approx(1.0) and len(shares) == 17
    assert features.length_shares(np.zeros(33, int)).isna().all()


def test_shares_by_set_keeps_one_column_per_set():
    table = features.shares_by_set({"a": np.array([1, 2]), "b": np.array([3])}, lambda w: {"x": len(w), "y": 0})
    assert list(table.columns) == ["a", "b"] and table.loc["x"].tolist() == [2, 1]


def test_onset_position_shares_sum_to_one_or_are_nan():
    window = notes_to_tokens([Note(0, 4, 60), Note(4, 8, 62), Note(16, 18, 64), Note(19, 20, 65)], 32)
    shares = features.onset_position_shares(window[None])
    assert shares[0] == 0.5 and shares[4] == 0.25 and shares[3] == 0.25
    assert np.isnan(features.onset_position_shares(np.zeros((1, 32), int))).all()


def test_largest_interval_is_the_biggest_jump_either_way_or_nan():
    windows = np.stack(
        [
            notes_to_tokens([Note(0, 4, 60), Note(4, 8, 72), Note(8, 12, 65)], 32),  # +12, -7
            notes_to_tokens([Note(0, 4, 60)], 32),
        ]
    )
    largest = features.largest_interval(windows)
    assert largest[0] == 12 and np.isnan(largest[1])


def test_set_overview_counts_distinct_and_empty_melodies(melodies):
    sets = {"all": melodies, "twice": np.concatenate([melodies[3:4], melodies[3:4]])}
    overview = features.set_overview(sets).set_index("set")
    assert overview.loc["all", "melodies"] == 5 and overview.loc["twice", "distinct"] == 1
    assert overview.loc["all", "without a note"] == 2  # the empty and the all-rest window
    assert overview.loc["all", "notes per melody"] == pytest.approx((0 + 0 + 1 + 8 + 4) / 5)
    assert overview.loc["twice", "pitch range (semitones)"] == features.pitch_range(melodies[3:4])[0]


def test_diatonicity_table_gives_four_means_per_set():
    tables = {
        "a": pd.DataFrame(
            {"scale_consistency": [1.0, 0.75], "non_diatonic_notes": [0, 2], "c_diatonic_share": [1.0, 0.5]}
        ),
        "b": pd.DataFrame({"scale_consistency": [1.0], "non_diatonic_notes": [0], "c_diatonic_share": [0.25]}),
    }
    table = features.diatonicity_table(tables)
    assert list(table.columns) == ["a", "b"]
    assert table["a"].tolist() == [0.875, 0.5, 1.0, 0.75]
    assert table["b"].tolist() == [1.0, 1.0, 0.0, 0.25]
    assert list(table.index) == [
        "mean diatonicity",
        "fully diatonic melodies",
        "non-diatonic notes per melody",
        "notes in C major",
    ]


def test_mode_shares_and_top_keys_leave_windows_without_a_key_out():
    keys = {
        "a": pd.DataFrame({"key": ["G major", "E minor", "G major", None], "key_clarity": [0.9, 0.8, 0.7, np.nan]}),
        "b": pd.DataFrame({"key": ["D minor"], "key_clarity": [0.6]}),
    }
    assert features.mode_shares(keys["a"]).to_dict() == pytest.approx({"major": 2 / 3, "minor": 1 / 3})
    assert features.top_keys(keys, 1).to_dict("list") == {"a": ["G major"], "b": ["D minor"]}
    padded = features.top_keys(keys, 5)  # b has one key: the rest of its column is missing
    assert padded["a"].tolist() == ["G major", "E minor"] and padded["b"].iloc[0] == "D minor"
    assert padded["b"].isna().tolist() == [False, True]
