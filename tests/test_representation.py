import numpy as np
import pretty_midi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicvae_lib.representation import (
    MAX_PITCH,
    MIN_PITCH,
    N_CLASSES,
    NOTE_OFF,
    WINDOW_STEPS,
    Note,
    canonical_tokens,
    check_windows,
    midi_to_tokens,
    monophonic,
    notes_to_tokens,
    pitch_to_token,
    stream_to_tokens,
    token_to_pitch,
    tokens_to_midi,
    tokens_to_notes,
    tokens_to_stream,
    write_midi,
)

C4, E4, G4 = 60, 64, 67


def test_class_layout_matches_magenta():
    assert N_CLASSES == 90
    assert pitch_to_token(MIN_PITCH) == 2 and pitch_to_token(MAX_PITCH) == 89
    assert token_to_pitch(pitch_to_token(C4)) == C4


@pytest.mark.parametrize("pitch", [20, 109])
def test_out_of_range_pitch_is_an_error(pitch):
    with pytest.raises(ValueError, match="21..108"):
        pitch_to_token(pitch)


def test_note_off_and_no_event_are_not_pitches():
    for token in (0, NOTE_OFF, N_CLASSES):
        with pytest.raises(ValueError):
            token_to_pitch(token)


def test_encoding_of_a_hand_built_melody():
    # C4 quarter, rest eighth, E4 eighth running into G4 held past the window end
    notes = [Note(0, 4, C4), Note(6, 8, E4), Note(8, 40, G4)]
    tokens = notes_to_tokens(notes, WINDOW_STEPS)
    expected = np.zeros(WINDOW_STEPS, np.uint8)
    expected[0], expected[4], expected[6], expected[8] = (
        pitch_to_token(C4),
        NOTE_OFF,
        pitch_to_token(E4),
        pitch_to_token(G4),
    )
    np.testing.assert_array_equal(tokens, expected)
    assert tokens_to_notes(tokens) == [Note(0, 4, C4), Note(6, 8, E4), Note(8, 32, G4)]


def test_monophonic_keeps_highest_of_simultaneous_notes_and_cuts_overlaps():
    chord_then_overlap = [Note(0, 8, C4), Note(0, 8, G4), Note(0, 8, E4), Note(4, 12, C4)]
    assert monophonic(chord_then_overlap) == [Note(0, 4, G4), Note(4, 12, C4)]


def test_note_begun_before_the_window_leaves_its_note_off():
    tokens = notes_to_tokens([Note(-4, 2, C4)], 8)
    np.testing.assert_array_equal(tokens, [0, 0, NOTE_OFF, 0, 0, 0, 0, 0])


def test_stray_note_off_is_canonicalised_away():
    tokens = np.array([NOTE_OFF, 0, pitch_to_token(C4), NOTE_OFF, NOTE_OFF, 0, 0, 0], np.uint8)
    np.testing.assert_array_equal(canonical_tokens(tokens), [0, 0, pitch_to_token(C4), NOTE_OFF, 0, 0, 0, 0])


def test_tokens_outside_the_classes_are_rejected():
    with pytest.raises(ValueError, match="0..89"):
        tokens_to_notes(np.array([0, 95, 0]))


@st.composite
def monophonic_notes(draw, n_steps=WINDOW_STEPS):
    """Non-overlapping notes within the window, pitches in range."""
    boundaries = sorted(draw(st.sets(st.integers(0, n_steps), min_size=0, max_size=16)))
    notes = []
    for start, end in zip(boundaries, boundaries[1:]):
        if draw(st.booleans()):
            notes.append(Note(start, end, draw(st.integers(MIN_PITCH, MAX_PITCH))))
    return notes


@settings(max_examples=200, deadline=None)
@given(monophonic_notes())
def test_notes_tokens_notes_round_trip(notes):
    assert tokens_to_notes(notes_to_tokens(notes, WINDOW_STEPS)) == notes


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, N_CLASSES - 1), min_size=WINDOW_STEPS, max_size=WINDOW_STEPS))
def test_canonical_tokens_round_trip_and_are_idempotent(token_list):
    canonical = canonical_tokens(np.array(token_list, np.uint8))
    np.testing.assert_array_equal(notes_to_tokens(tokens_to_notes(canonical), WINDOW_STEPS), canonical)
    np.testing.assert_array_equal(canonical_tokens(canonical), canonical)


@settings(max_examples=60, deadline=None)
@given(monophonic_notes())
def test_midi_round_trip(notes):
    tokens = notes_to_tokens(notes, WINDOW_STEPS)
    np.testing.assert_array_equal(midi_to_tokens(tokens_to_midi(tokens), WINDOW_STEPS), tokens)


@settings(max_examples=40, deadline=None)
@given(monophonic_notes())
def test_music21_round_trip(notes):
    tokens = notes_to_tokens(notes, WINDOW_STEPS)
    np.testing.assert_array_equal(stream_to_tokens(tokens_to_stream(tokens), WINDOW_STEPS), tokens)


def test_midi_file_has_tempo_program_and_one_track(tmp_path):
    tokens = notes_to_tokens([Note(0, 16, C4), Note(16, 32, G4)], WINDOW_STEPS)
    path = tmp_path / "melody.mid"
    tokens_to_midi(tokens, tempo_qpm=120, program=73).write(str(path))
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(str(path))
    assert len(midi.instruments) == 1 and midi.instruments[0].program == 73
    assert midi.get_tempo_changes()[1][0] == pytest.approx(120)
    assert [round(n.end, 3) for n in midi.instruments[0].notes] == [2.0, 4.0]  # 16 steps = 2 s at 120 qpm


def test_stream_with_off_grid_note_is_an_error():
    from music21 import note, stream

    part = stream.Part([note.Note("C4", quarterLength=1 / 3)])
    with pytest.raises(ValueError, match="16th grid"):
        stream_to_tokens(part, WINDOW_STEPS)


# --- MIDI files ---


def test_write_midi_round_trips_through_pretty_midi(tmp_path):
    tokens = notes_to_tokens(
        [Note(*note) for note in ((0, 4, 60), (4, 6, 62), (6, 8, 62), (12, 20, 64), (28, 32, 79))], 32
    )
    tokens[24] = NOTE_OFF  # a NOTE_OFF with no sounding note: the same music as NO_EVENT
    path = write_midi(tokens, tmp_path / "nested" / "melody.mid", program=40, tempo_qpm=100)

    midi = pretty_midi.PrettyMIDI(str(path))
    assert path.exists()
    assert [instrument.program for instrument in midi.instruments] == [40]
    assert midi.get_tempo_changes()[1].tolist() == pytest.approx([100.0])
    notes = midi.instruments[0].notes
    assert [note.pitch for note in notes] == [60, 62, 62, 64, 79]
    # 0.15 s per step at 100 qpm
    assert [time for note in notes for time in (note.start, note.end)] == pytest.approx(
        [0.0, 0.6, 0.6, 0.9, 0.9, 1.2, 1.8, 3.0, 4.2, 4.8], abs=1e-3
    )
    assert np.array_equal(midi_to_tokens(midi, 32, tempo_qpm=100), canonical_tokens(tokens))


def test_write_midi_of_a_rest_melody_has_a_track_without_notes(tmp_path):
    midi = pretty_midi.PrettyMIDI(str(write_midi(np.zeros(32, dtype=np.uint8), tmp_path / "rest.mid")))

    assert sum(len(instrument.notes) for instrument in midi.instruments) == 0


def test_check_windows_is_one_contract_for_every_set_of_windows():
    windows = np.array([[2, 0, 1, 89], [0, 0, 0, 0]], dtype=np.uint8)
    assert check_windows(windows) is windows and check_windows(windows, 4).dtype == np.uint8  # no copy, no cast
    assert check_windows(windows[0], one_window=True).shape == (1, 4)
    with pytest.raises(ValueError, match=r"`valid_windows` must have shape \[n_windows, 32\], got \(2, 4\)"):
        check_windows(windows, 32, "valid_windows")
    with pytest.raises(ValueError, match=r"`windows` must have shape \[n_windows, steps\], got \(4,\)"):
        check_windows(windows[0])
    with pytest.raises(ValueError, match=r"`windows` is empty \(shape \(0, 4\)\)"):
        check_windows(windows[:0], allow_empty=False)
    assert check_windows(windows[:0]).shape == (0, 4)
    with pytest.raises(ValueError, match=r"`sample`: tokens must be integers in 0..89, got values \[ 0  2 90\]"):
        check_windows(np.array([[0, 2, 90]]), name="sample")
