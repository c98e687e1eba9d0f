import numpy as np
import pytest

from musicvae_lib import features
from musicvae_lib.representation import NOTE_OFF, Note, notes_to_tokens, pitch_to_token, tokens_to_stream

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
