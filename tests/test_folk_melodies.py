"""The folk reader against hand-made ABC with windows written out by hand, and against note_seq.

note_seq 0.0.5's ABC parser (``note_seq.abc_parser``, Magenta's own) is the independent oracle on
real corpus tunes. It reads a subset of ABC (no rests, tuplets, chords, grace notes or variant
endings), ignores ties and broken rhythms across a line end, so it is asked only about the tunes
it reads whole; music21's known departures from the ABC standard (see ``folk_melodies``) are pinned by tests
of their own, so that a change in either reader shows.
"""

import re
import warnings

import numpy as np
import pytest
from music21 import converter
from note_seq import abc_parser

from musicvae_lib import folk_melodies
from musicvae_lib.representation import NO_EVENT, NOTE_OFF, Note, notes_to_tokens, pitch_to_token

A4, B4, C5, G4 = 69, 71, 72, 67

HAND_BUILT = """X:7
T:Hand built
M:4/4
L:1/8
K:C
C2 | C2E2 G2c2 | (3cBA G2 z4 | "Am"[CEA]2 {g}A2 A4- | A2B2 c4 |
"""


def windows_of(abc: str, bars: int = 2, **options) -> folk_melodies.TuneResult:
    (tune,) = folk_melodies.split_abc_tunes(abc, "test", "test.abc")
    return folk_melodies.tune_windows(tune, bars, **options)


def test_split_abc_tunes_reads_number_title_and_every_meter():
    text = "% header comment\n" + HAND_BUILT + "\nX:8\nT:Second\nM:C|\nK:G\nG8|[M:3/4]G6|\n"
    first, second = folk_melodies.split_abc_tunes(text, "test", "test.abc")
    assert (first.number, first.title, first.meters) == ("7", "Hand built", ("4/4",))
    assert (second.number, second.meters) == ("8", ("2/2", "3/4"))
    assert folk_melodies.has_accepted_meter(second)


def test_hand_built_tune_gives_the_one_clean_window():
    # bar 0 is a pickup; bars 1-2 and 2-3 hold a triplet; bars 3-4: chord (top note A), grace note
    # dropped, chord symbol dropped, A tied across the bar line into one note.
    result = windows_of(HAND_BUILT)
    expected = np.zeros(32, np.uint8)
    expected[[0, 4, 8, 20, 24]] = [pitch_to_token(p) for p in (A4, A4, A4, B4, C5)]
    assert result.skip_reason is None
    np.testing.assert_array_equal(result.windows, [expected])
    assert result.bar_index.tolist() == [3]
    assert result.window_drops == {folk_melodies.DROP_OFF_GRID: 2}
    assert result.meter == "4/4"


def test_rests_give_note_off_and_a_silent_window_is_dropped():
    result = windows_of("X:1\nM:4/4\nL:1/4\nK:C\nG z z z | z4 | z4 | G4 |\n")
    # windows: bars 0-1 (G then rests), 1-2 (silence: no onset), 2-3 (G at bar 2's step 0)
    assert result.window_drops == {folk_melodies.DROP_NO_ONSET: 1}
    first, last = result.windows
    assert first[0] == pitch_to_token(G4) and first[4] == NOTE_OFF and (first[5:] == 0).all()
    assert (last[:16] == 0).all() and last[16] == pitch_to_token(G4)


def test_windows_never_span_a_meter_change():
    abc = "X:1\nM:4/4\nL:1/4\nK:C\nC D E F | G A B c |[M:3/4] c B A | G F E |[M:4/4] D C D E | F G A B |\n"
    result = windows_of(abc)
    assert result.bar_index.tolist() == [0, 4]


def test_cut_time_bars_are_sixteen_steps():
    result = windows_of("X:1\nM:C|\nL:1/8\nK:C\nC2E2G2c2 | c8 |\n")
    assert result.meter == "2/2"
    assert len(result.windows) == 1 and result.windows[0][16] == pitch_to_token(C5)


def test_longer_windows_use_consecutive_complete_bars():
    abc = "X:1\nM:4/4\nL:1/4\nK:C\n" + " | ".join(["C D E F"] * 5) + " |\n"
    result = windows_of(abc, bars=4)
    assert result.windows.shape == (2, 64)


def test_tune_without_two_complete_bars_is_skipped():
    assert windows_of("X:1\nM:4/4\nL:1/4\nK:C\nC D | E F G A | B |\n").skip_reason == folk_melodies.SKIP_NO_BARS


def test_unparseable_tune_is_skipped_not_raised():
    bad = "X:1\nT:bad\nM:4/4\nK:C\n|]]]:::[[[ &&& %%%% \x00\x01 K:ZZ ((((( \n"
    assert windows_of(bad).skip_reason == folk_melodies.SKIP_PARSE


REPEATED = """X:1
M:4/4
L:1/1
K:C
|: C | D |[1 E :|[2 F |: G | A :|
"""  # whole notes; as played: C D E C D F G A G A


def bar_pitches(result: folk_melodies.TuneResult) -> list[list[int]]:
    """Each window as the pitch starting each of its bars (whole-note tunes)."""
    return [[int(token) - pitch_to_token(60) + 60 for token in window[::16]] for window in result.windows]


def test_repeats_are_read_as_written_unless_expanded():
    c, d, e, f, g, a = 60, 62, 64, 65, 67, 69
    assert bar_pitches(windows_of(REPEATED)) == [[c, d], [d, e], [e, f], [f, g], [g, a]]
    played = windows_of(REPEATED, expand_repeats=True)
    assert bar_pitches(played) == [[c, d], [d, e], [e, c], [c, d], [d, f], [f, g], [g, a], [a, g], [g, a]]
    assert played.bar_index.tolist() == list(range(9))  # bars as played
    assert len(np.unique(played.windows, axis=0)) == 7  # a repeated passage gives its windows twice


def test_every_voice_is_read_when_asked():
    abc = "X:1\nM:4/4\nL:1/1\nK:C\nV:1\nc | d | e |\nV:2\nC | D | E |\n"
    assert bar_pitches(windows_of(abc)) == [[72, 74], [74, 76]]
    assert bar_pitches(windows_of(abc, all_parts=True)) == [[72, 74], [74, 76], [60, 62], [62, 64]]


def test_unknown_collection_names_the_valid_ones():
    with pytest.raises(ValueError, match="essenFolksong"):
        folk_melodies.collection_files("beatles")


# --- Hand-made ABC, windows written out by hand, note_seq agreeing ----------------------------

X = NO_EVENT
D_MAJOR_TUNE = "X:1\nT:Key, broken rhythm, octaves\nM:4/4\nL:1/8\nK:D\nA|d2f>e d2A2|B,2c'2 e4|\n"
# Pickup A (bar 0), then bar 1: d f#. e d A (f> dotted, e a 16th); bar 2: B3, C#6 (c'), e. One window, bars 1-2.
D_MAJOR_WINDOW = [74, X, X, X, 78, X, X, 76, 74, X, X, X, 69, X, X, X, 59, X, X, X, 85, X, X, X, 76] + [X] * 7


def note_seq_notes(abc: str) -> list[Note]:
    """The tune's notes as note_seq's ABC parser reads them, on the 16th grid; ValueError off the grid."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tunes, errors = abc_parser.parse_abc_tunebook(abc)
    if errors or len(tunes) != 1:
        raise ValueError(f"note_seq cannot read the tune: {errors}")
    (sequence,) = tunes.values()
    steps_per_second = 4 * (sequence.tempos[0].qpm if sequence.tempos else 120) / 60
    notes = []
    for note in sequence.notes:
        start, end = note.start_time * steps_per_second, note.end_time * steps_per_second
        if abs(start - round(start)) > 1e-6 or abs(end - round(end)) > 1e-6:
            raise ValueError(f"note_seq puts a note off the 16th grid at step {start:.3f}")
        notes.append(Note(round(start), round(end), note.pitch))
    return notes


def as_tokens(window) -> list[int]:
    """Hand-written window: MIDI pitches become their note-on tokens, X and NOTE_OFF stay."""
    return [value if value in (X, NOTE_OFF) else pitch_to_token(value) for value in window]


def test_key_broken_rhythm_and_octaves_give_the_hand_written_window():
    result = windows_of(D_MAJOR_TUNE)
    assert result.bar_index.tolist() == [1]
    np.testing.assert_array_equal(result.windows, [as_tokens(D_MAJOR_WINDOW)])
    oracle = notes_to_tokens(note_seq_notes(D_MAJOR_TUNE), 2 + 32)
    np.testing.assert_array_equal(oracle[2:34], as_tokens(D_MAJOR_WINDOW))


def test_an_accidental_holds_for_its_note_only_unlike_abc_2_1():
    # music21 reads ABC without a version line as ABC 1.3; note_seq carries it through the bar.
    abc = "X:1\nM:4/4\nL:1/4\nK:D\n=F F F F|=F F F F|\n"
    assert [note.pitch_midi for note in note_seq_notes(abc)] == [65] * 8
    (window,) = windows_of(abc).windows
    assert window[::4].tolist() == [pitch_to_token(p) for p in [65, 66, 66, 66] * 2]


def test_a_broken_rhythm_after_a_decoration_is_lost_unlike_note_seq():
    abc = "X:1\nM:4/4\nL:1/8\nK:D\nvF>uG A2 B4|d8|\n"
    assert [(n.start_step, n.end_step) for n in note_seq_notes(abc)][:2] == [(0, 3), (3, 4)]
    (window,) = windows_of(abc).windows
    assert np.flatnonzero(window[:8]).tolist() == [0, 2, 4]  # two equal eighths, then A


# --- note_seq on real corpus tunes ----------------------------------------------------------

_BODY = re.compile(r"(?ms)^K:.*?$(.*)")
_NOT_MUSIC = re.compile(r'"[^"]*"|^[A-Za-z]:.*$|\[[A-Za-z]:[^\]]*\]|%.*$', re.MULTILINE)
_BROKEN_AT_LINE_END = re.compile(r"[<>]\s*\\?\s*$", re.MULTILINE)
_NOTE = re.compile(r"(\^\^|\^|__|_|=)?([A-Ga-g])")


def tune_body(tune: folk_melodies.AbcTune) -> str:
    """The music after the K: line, without text in quotes, fields and comments."""
    body = _BODY.search(tune.text).group(1)
    return _NOT_MUSIC.sub("", body)


def accidental_may_carry(body: str) -> bool:
    """Whether some bar has a note after an accidental on the same letter: ABC 2.1 and music21 differ there."""
    for bar in re.split(r"[|\[\]:]", body):
        marked = set()
        for accidental, letter in _NOTE.findall(bar):
            if accidental:
                marked.add(letter.upper())
            elif letter.upper() in marked:
                return True
    return False


def corpus_sample() -> list[folk_melodies.AbcTune]:
    """Every third 4/4-2/2 Essen tune and every miscFolk one, of those note_seq reads whole."""
    sample = []
    for collection, every in (("essenFolksong", 3), ("miscFolk", 1)):
        tunes = [t for t in folk_melodies.read_folk_tunes([collection]) if folk_melodies.has_accepted_meter(t)]
        readable = [t for t in tunes if note_seq_reads_whole(t)]
        sample += readable[::every]
    return sample


def note_seq_reads_whole(tune: folk_melodies.AbcTune) -> bool:
    """note_seq reads the tune, with no tie (it ignores them) and no broken rhythm at a line end
    (it reads each line alone and drops the ``>``)."""
    if "-" in tune_body(tune) or _BROKEN_AT_LINE_END.search(tune_body(tune)):
        return False
    try:
        note_seq_notes(tune.text)
    except (ValueError, abc_parser.ABCParseError):
        return False
    return True


@pytest.fixture(scope="module")
def corpus_tunes() -> list[folk_melodies.AbcTune]:
    tunes = corpus_sample()
    assert len(tunes) > 120 and {t.collection for t in tunes} == {"essenFolksong", "miscFolk"}
    return tunes


def music21_notes(tune: folk_melodies.AbcTune) -> list[Note]:
    score = converter.parseData(tune.text, format="abc")
    notes, _, _ = folk_melodies.part_notes((score.parts[0] if score.parts else score).stripTies())
    return notes


def test_real_tunes_have_the_notes_note_seq_reads(corpus_tunes):
    """Pitches, onsets and ends agree exactly; where ABC 2.1 would carry an accidental, onsets and ends."""
    differ = []
    for tune in corpus_tunes:
        ours, theirs = sorted(music21_notes(tune)), sorted(note_seq_notes(tune.text))
        if accidental_may_carry(tune_body(tune)):
            ours, theirs = [n[:2] for n in ours], [n[:2] for n in theirs]
        if ours != theirs:
            differ.append(tune.name)
    assert not differ, f"{len(differ)} of {len(corpus_tunes)} tunes differ from note_seq, e.g. {differ[:3]}"


def test_real_windows_are_two_bar_slices_of_the_note_seq_tune(corpus_tunes):
    compared = 0
    for tune in corpus_tunes[::4]:
        if accidental_may_carry(tune_body(tune)):
            continue
        notes = note_seq_notes(tune.text)
        oracle = notes_to_tokens(notes, max(note.end_step for note in notes) + 32)
        slices = {oracle[start : start + 32].tobytes() for start in range(len(oracle) - 31)}
        result = folk_melodies.tune_windows(tune, 2)
        assert all(window.tobytes() in slices for window in result.windows), tune.name
        compared += len(result.windows)
    assert compared > 200
