"""Melody windows from MIDI files must equal Magenta's own chain, rebuilt here from note_seq calls.

note_seq 0.0.5 is the oracle: ``midi_io`` reads the file (pretty_midi, mido), ``sequences_lib``
splits and quantizes it, and ``magenta_windows`` below repeats what MusicVAE's
``OneHotMelodyConverter`` does with them for the cat-mel_2bar configs.
"""

import pickle
import random
import struct

import mido
import note_seq
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from note_seq import melodies_lib, melody_encoder_decoder, midi_io, sequences_lib

from musicvae_lib.midi_melodies import (
    PITCHED_PROGRAMS,
    SKIP_CORRUPT,
    SKIP_DRUMS_ONLY,
    SKIP_EMPTY_FILE,
    SKIP_NO_16_STEP_BARS,
    SKIP_NO_MELODY_PROGRAM,
    SKIP_NO_WINDOW,
    MidiWindows,
    melodies_from_midi_bytes,
    melody_windows_from_midi,
    windows_at_bars,
)
from musicvae_lib.representation import MAX_PITCH, MIN_PITCH, NO_EVENT, NOTE_OFF, pitch_to_token

TICKS_PER_STEP = 120  # files below use 480 ticks per quarter note
C4, D4, E4, F4, G4, A4 = 60, 62, 64, 65, 67, 69
X = NO_EVENT


# --- The oracle: Magenta's converter, step by step, on note_seq ---------------------------------

MAGENTA_ENCODING = melody_encoder_decoder.MelodyOneHotEncoding(MIN_PITCH, MAX_PITCH + 1)


def magenta_extract_melodies(quantized, max_steps_truncate: int) -> list:
    """magenta/pipelines/melody_pipelines.py ``extract_melodies`` (note_seq 0.0.5 no longer has it).

    Called by the converter with min_bars=1, gap_bars=1, min_unique_pitches=1,
    ignore_polyphonic_notes=True, pad_end=True, filter_drums=True.
    """
    melodies = []
    steps_per_bar = int(sequences_lib.steps_per_bar_in_quantized_sequence(quantized))
    for instrument in set(note.instrument for note in quantized.notes):
        search_start_step = 0
        while True:
            melody = melodies_lib.Melody()
            melody.from_quantized_sequence(
                quantized,
                instrument=instrument,
                search_start_step=search_start_step,
                gap_bars=1.0,
                ignore_polyphonic_notes=True,
                pad_end=True,
                filter_drums=True,
            )
            search_start_step = melody.end_step + (0 - melody.end_step) % steps_per_bar
            if not melody:
                break
            if len(melody) < melody.steps_per_bar:  # min_bars=1
                continue
            if len(melody) > max_steps_truncate:
                melody.set_length(max_steps_truncate - max_steps_truncate % melody.steps_per_bar)
            if np.count_nonzero(melody.get_note_histogram()) < 1:  # min_unique_pitches=1
                continue
            melodies.append(melody)
    return melodies


def magenta_windows(path, bars: int = 2, max_bars: int = 100) -> set[tuple[int, ...]]:
    """The unique windows ``OneHotMelodyConverter(valid_programs=range(32), max_bars=100,
    slice_bars=2, steps_per_quarter=4)`` makes of the file, before its sampling of 5."""
    windows = set()
    sequence = midi_io.midi_file_to_note_sequence(str(path))
    for piece in sequences_lib.split_note_sequence_on_time_changes(sequence):  # presplit_on_time_changes
        kept = [note for note in piece.notes if note.program in range(32) and MIN_PITCH <= note.pitch <= MAX_PITCH]
        del piece.notes[:]
        piece.notes.extend(kept)
        try:
            quantized = sequences_lib.quantize_note_sequence(piece, steps_per_quarter=4)
        except (note_seq.BadTimeSignatureError, note_seq.NonIntegerStepsPerBarError, note_seq.NegativeTimeError):
            continue
        if sequences_lib.steps_per_bar_in_quantized_sequence(quantized) != 16:
            continue
        for melody in magenta_extract_melodies(quantized, max_steps_truncate=16 * max_bars):
            for end in range(16 * bars, len(melody) + 1, 16):
                windows.add(tuple(MAGENTA_ENCODING.encode_event(event) for event in melody[end - 16 * bars : end]))
    return windows


def as_set(found: MidiWindows) -> set[tuple[int, ...]]:
    return set(map(tuple, found.windows.tolist()))


def assert_same_as_magenta(path, bars: int = 2, max_bars: int = 100) -> MidiWindows:
    found = melody_windows_from_midi(path, bars_per_window=bars, max_bars=max_bars)
    assert found.windows.dtype == np.uint8 and found.windows.shape[1:] == (16 * bars,)
    assert len(as_set(found)) == len(found.windows), "windows must be unique within a file"
    assert as_set(found) == magenta_windows(path, bars, max_bars)
    return found


# --- Writing test files --------------------------------------------------------------------------


def write_song(path, parts, tempos=((0, 500000),), meters=((0, 4, 4),)):
    """A type-1 MIDI file: a conductor track, then one track per part.

    ``parts``: [(program, channel, [(start_step, end_step, pitch), ...])]; ``tempos``: [(step,
    microseconds per quarter)]; ``meters``: [(step, numerator, denominator)]. Steps are 16th
    notes and may fall between ticks of the grid (2.5 is tick 300).
    """
    midi = mido.MidiFile(ticks_per_beat=4 * TICKS_PER_STEP)
    conductor = [(step, mido.MetaMessage("set_tempo", tempo=tempo)) for step, tempo in tempos]
    conductor += [(step, mido.MetaMessage("time_signature", numerator=n, denominator=d)) for step, n, d in meters]
    midi.tracks.append(_track(conductor))
    for program, channel, notes in parts:
        events = [(0, mido.Message("program_change", channel=channel, program=program))]
        for start, end, pitch in notes:
            events.append((start, mido.Message("note_on", channel=channel, note=pitch, velocity=90)))
            events.append((end, mido.Message("note_off", channel=channel, note=pitch)))
        midi.tracks.append(_track(events))
    midi.save(path)
    return path


def _track(events) -> mido.MidiTrack:
    """Events (step, message) as a track, note-offs before note-ons on a shared step."""
    track, last = mido.MidiTrack(), 0
    for step, message in sorted(events, key=lambda e: (e[0], e[1].type == "note_on")):
        tick = round(step * TICKS_PER_STEP)
        track.append(message.copy(time=tick - last))
        last = tick
    return track


def line(*notes_and_rests) -> list[tuple[int, int, int]]:
    """Consecutive notes from (pitch, steps) pairs; a pitch of None is a rest."""
    notes, step = [], 0
    for pitch, steps in notes_and_rests:
        if pitch is not None:
            notes.append((step, step + steps, pitch))
        step += steps
    return notes


def tokens(*pairs) -> tuple[int, ...]:
    """Expected window from (pitch or NOTE_OFF or X, steps held) pairs."""
    out = []
    for event, steps in pairs:
        out += [pitch_to_token(event) if event > NOTE_OFF else event] + [X] * (steps - 1)
    return tuple(out)


PIANO, GUITAR, BASS, VIOLIN = 0, 25, 33, 40


# --- Known answers ------------------------------------------------------------------------------


def test_two_bars_of_melody_are_one_window_ending_in_note_off(tmp_path):
    path = write_song(tmp_path / "a.mid", [(PIANO, 0, line((C4, 4), (D4, 4), (E4, 4), (F4, 4), (G4, 8)))])
    found = assert_same_as_magenta(path)
    assert as_set(found) == {tokens((C4, 4), (D4, 4), (E4, 4), (F4, 4), (G4, 8), (NOTE_OFF, 8))}
    assert found.skip_reason is None


def test_pickup_note_starts_the_window_at_its_bar(tmp_path):
    path = write_song(tmp_path / "a.mid", [(PIANO, 0, line((None, 12), (G4, 4), (C4, 16)))])
    assert as_set(assert_same_as_magenta(path)) == {tokens((X, 12), (G4, 4), (C4, 16))}


def test_highest_note_of_a_chord_wins_and_later_notes_cut_earlier_ones(tmp_path):
    chord = [(0, 16, C4), (0, 16, E4), (0, 16, G4)]
    overlap = [(16, 28, A4), (20, 24, D4)]  # D4 starts inside A4: A4 ends there, D4 ends at 24
    path = write_song(tmp_path / "a.mid", [(PIANO, 0, chord + overlap)])
    assert as_set(assert_same_as_magenta(path)) == {tokens((G4, 16), (A4, 4), (D4, 4), (NOTE_OFF, 8))}


@pytest.mark.parametrize(
    ("rest_steps", "expected"),
    [
        (15, {tokens((C4, 4), (NOTE_OFF, 15), (E4, 13)), tokens((X, 3), (E4, 17), (NOTE_OFF, 12))}),  # one melody
        (16, {tokens((X, 4), (E4, 17), (NOTE_OFF, 11))}),  # a bar of silence: C4 alone is too short
    ],
)
def test_a_bar_of_silence_ends_the_melody(tmp_path, rest_steps, expected):
    path = write_song(tmp_path / "a.mid", [(PIANO, 0, line((C4, 4), (None, rest_steps), (E4, 17)))])
    assert as_set(assert_same_as_magenta(path)) == expected


def test_melody_longer_than_max_bars_is_truncated_before_windows(tmp_path):
    bars = [(pitch, 8) for bar in range(120) for pitch in (40 + bar // 10, 60 + bar % 10)]  # no two bars alike
    path = write_song(tmp_path / "a.mid", [(PIANO, 0, line(*bars))])
    assert len(assert_same_as_magenta(path).windows) == 99  # bars 0..99 only, not 100..119
    assert len(assert_same_as_magenta(path, max_bars=120).windows) == 119


def test_meter_change_keeps_only_the_4_4_pieces(tmp_path):
    four_four = line((C4, 16), (D4, 16))
    three_four = [(32, 44, G4), (44, 56, A4)]  # two bars of 12 steps
    four_four_again = [(56, 72, E4), (72, 88, F4)]
    meters = [(0, 4, 4), (32, 3, 4), (56, 4, 4)]
    path = write_song(tmp_path / "a.mid", [(PIANO, 0, four_four + three_four + four_four_again)], meters=meters)
    assert as_set(assert_same_as_magenta(path)) == {tokens((C4, 16), (D4, 16)), tokens((E4, 16), (F4, 16))}


def test_half_a_step_rounds_up_as_in_note_seq(tmp_path):
    path = write_song(tmp_path / "a.mid", [(PIANO, 0, [(2.5, 6.5, C4), (6.5, 32, E4)])])
    assert as_set(assert_same_as_magenta(path)) == {tokens((X, 3), (C4, 4), (E4, 25))}


def test_bars_per_window_and_max_bars_follow_magenta(tmp_path):
    path = write_song(tmp_path / "a.mid", [(GUITAR, 0, line(*[(50 + n, 6) for n in range(40)]))])
    assert len(assert_same_as_magenta(path, bars=1).windows) == 15
    assert len(assert_same_as_magenta(path, bars=4, max_bars=8).windows) == 5


# --- Agreement with Magenta on musical situations -----------------------------------------------

MELODY = line((C4, 4), (E4, 2), (G4, 2), (None, 4), (A4, 6), (G4, 2), (F4, 8), (E4, 4), (D4, 4), (C4, 12))  # 3 bars
AGAIN = [(start + 48, end + 48, pitch) for start, end, pitch in MELODY]
SITUATIONS = {
    "tempo changes, one inside a note": dict(
        parts=[(PIANO, 0, MELODY + AGAIN)], tempos=[(0, 500000), (22, 750000), (64, 400000)]
    ),
    "meter 4/4 -> 3/4 -> 4/4 and 2/2": dict(
        parts=[(PIANO, 0, [(s + 48 * k, e + 48 * k, p + k) for k in range(5) for s, e, p in MELODY])],
        meters=[(0, 4, 4), (40, 3, 4), (88, 4, 4), (136, 2, 2), (200, 6, 8)],
    ),
    "the same time signature again inside a note does not cut": dict(
        parts=[(PIANO, 0, MELODY + AGAIN)], meters=[(0, 4, 4), (30, 4, 4)]
    ),
    "of two tempos at tick 0 the last holds; repeating it later does not cut": dict(
        parts=[(PIANO, 0, MELODY + AGAIN)], tempos=[(0, 400000), (0, 600000), (30, 600000)]
    ),
    "time signature off the bar line": dict(parts=[(PIANO, 0, MELODY + AGAIN)], meters=[(0, 4, 4), (30, 2, 2)]),
    "drums, bass, violin and out-of-range pitches beside the melody": dict(
        parts=[
            (PIANO, 0, MELODY + [(0, 8, 110), (8, 12, 15)]),
            (0, 9, [(s, s + 1, 36) for s in range(0, 48, 4)]),
            (BASS, 1, [(s, s + 6, 36) for s in range(0, 48, 8)]),
            (VIOLIN, 2, [(s, s + 12, 76) for s in range(0, 48, 12)]),
        ]
    ),
    "several melody instruments on one channel and others": dict(
        parts=[
            (PIANO, 0, MELODY),
            (GUITAR, 0, [(s + 2, e + 2, p - 12) for s, e, p in MELODY]),
            (17, 3, [(s, s + 3, p + 7) for s, _, p in MELODY]),
        ]
    ),
    "chords and legato overlaps": dict(
        parts=[(PIANO, 0, [(s, e + 3, p) for s, e, p in MELODY] + [(s, e, p - 5) for s, e, p in MELODY] + [(0, 9, 40)])]
    ),
    "gaps of one bar, one bar and a step, and two bars": dict(
        parts=[(PIANO, 0, line((C4, 20), (None, 16), (D4, 20), (None, 17), (E4, 40), (None, 32), (F4, 24)))]
    ),
}


@pytest.mark.parametrize("situation", SITUATIONS.values(), ids=SITUATIONS.keys())
def test_situation_agrees_with_magenta(tmp_path, situation):
    found = assert_same_as_magenta(write_song(tmp_path / "a.mid", **situation))
    assert len(found.windows) > 0  # something was compared


# --- Skips --------------------------------------------------------------------------------------


def test_empty_file(tmp_path):
    (tmp_path / "a.mid").write_bytes(b"")
    assert melody_windows_from_midi(tmp_path / "a.mid").skip_reason == SKIP_EMPTY_FILE


def test_text_file_named_mid(tmp_path):
    (tmp_path / "a.mid").write_text("X:1\nT:not a MIDI file\nK:C\nCDEF|\n")
    found = melody_windows_from_midi(tmp_path / "a.mid")
    assert found.skip_reason == SKIP_CORRUPT and found.windows.shape == (0, 32)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.97])
def test_truncated_file(tmp_path, keep):
    whole = write_song(tmp_path / "whole.mid", [(PIANO, 0, MELODY)]).read_bytes()
    (tmp_path / "a.mid").write_bytes(whole[: int(len(whole) * keep)])
    assert melody_windows_from_midi(tmp_path / "a.mid").skip_reason == SKIP_CORRUPT
    with pytest.raises(midi_io.MIDIConversionError):
        magenta_windows(tmp_path / "a.mid")


@pytest.mark.parametrize(
    ("parts", "meters", "reason"),
    [
        ([(0, 9, MELODY)], [(0, 4, 4)], SKIP_DRUMS_ONLY),
        ([(BASS, 1, MELODY), (0, 9, MELODY)], [(0, 4, 4)], SKIP_NO_MELODY_PROGRAM),
        ([(PIANO, 0, [(0, 40, 108 + 1), (0, 40, 20)])], [(0, 4, 4)], SKIP_NO_MELODY_PROGRAM),
        ([], [(0, 4, 4)], SKIP_NO_MELODY_PROGRAM),
        ([(PIANO, 0, MELODY)], [(0, 3, 4)], SKIP_NO_16_STEP_BARS),
        ([(PIANO, 0, [(0, 4, C4)])], [(0, 4, 4)], SKIP_NO_WINDOW),  # one bar after padding: no 2-bar window
        ([(PIANO, 0, [(0, 16, C4), (40, 48, D4)])], [(0, 4, 4)], SKIP_NO_WINDOW),  # two 1-bar melodies
    ],
    ids=["drums only", "bass, drums", "pitches out of range", "no notes", "3/4 only", "one beat", "two 1-bar melodies"],
)
def test_skip_reasons(tmp_path, parts, meters, reason):
    found = assert_same_as_magenta(write_song(tmp_path / "a.mid", parts, meters=meters))
    assert found.skip_reason == reason and len(found.windows) == 0


def test_a_note_just_over_one_bar_gives_a_window(tmp_path):
    found = assert_same_as_magenta(write_song(tmp_path / "a.mid", [(PIANO, 0, [(3, 17, C4)])]))
    assert as_set(found) == {tokens((X, 3), (C4, 14), (NOTE_OFF, 15))}


# --- Reading bytes as mido and pretty_midi do ---------------------------------------------------


def smf(*tracks: bytes, division: int = 480, n_tracks: int | None = None, header: bytes = b"") -> bytes:
    """A MIDI file from raw track bodies; ``n_tracks`` overrides the count in the header."""
    n_tracks = len(tracks) if n_tracks is None else n_tracks
    head = b"MThd" + struct.pack(">Lhhh", 6 + len(header), 1, n_tracks, division) + header
    return head + b"".join(chunk(track) for track in tracks)


def chunk(body: bytes, name: bytes = b"MTrk", size: int | None = None) -> bytes:
    return name + struct.pack(">L", len(body) if size is None else size) + body


END = bytes.fromhex("00 ff 2f 00")
TEMPO_120 = bytes.fromhex("00 ff 51 03 07 a1 20")
NOTES = b"".join(bytes([0, 0x90, p, 100, 0x83, 0x60, 0x80, p, 0]) for p in (60, 62, 64, 65, 67, 65, 64, 62, 60))
# Note-on, then (480 ticks later) its note-off and the next note-on, all under running status.
RUNNING = bytes([0, 0x90, 60, 100]) + b"".join(bytes([0x83, 0x60, p, 0, 0, p + 2, 100]) for p in range(60, 76, 2))
RUNNING += bytes([0x83, 0x60, 76, 0])
# C4 on at tick 0, on again at 480, off at 480 (ends the first only), off at 960.
RESTRUCK = bytes.fromhex("00 90 3c 64 83 60 90 3c 64 00 80 3c 00 83 60 80 3c 00")
# Violin (program 40) plays C4; the channel turns to piano before the note-off: pretty_midi files
# the note under piano, the program at its end.
PROGRAM_SWITCH = bytes.fromhex("00 c0 28 00 90 3c 64 83 60 c0 00 00 80 3c 00")
RAW_FILES = {
    "plain": smf(TEMPO_120 + END, NOTES + END),
    "running status": smf(TEMPO_120 + END, RUNNING + END),
    "note struck again before its note-off on the same tick": smf(TEMPO_120 + END, RESTRUCK + NOTES + END),
    "program change before a note-off": smf(TEMPO_120 + END, PROGRAM_SWITCH + NOTES + END),
    "unknown meta: mido drops its delta time": smf(
        TEMPO_120 + END, bytes.fromhex("83 60 ff 60 02 01 02") + NOTES + END
    ),
    "sysex, text, key signature, marker": smf(
        TEMPO_120 + bytes.fromhex("00 ff 59 02 fd 01 00 ff 06 03 41 42 43") + END,
        bytes.fromhex("00 f0 05 7e 7f 09 01 f7 00 ff 01 02 68 69") + NOTES + END,
    ),
    "meter and tempo on track 2 are ignored": smf(
        TEMPO_120 + END, bytes.fromhex("00 ff 58 04 03 02 18 08 00 ff 51 03 0f 42 40") + NOTES + END
    ),
    "longer header, garbage after the tracks": smf(TEMPO_120 + END, NOTES + END, header=b"\x00\x07") + b"junk",
    "zero tempo on track 2": smf(TEMPO_120 + END, bytes.fromhex("00 ff 51 03 00 00 00") + NOTES + END),
    "no track": smf(n_tracks=0),
    "empty track": smf(TEMPO_120 + END, b""),
    "running status first": smf(TEMPO_120 + END, bytes([0, 60, 100]) + NOTES + END),
    "undefined status 0xf4": smf(TEMPO_120 + END, bytes.fromhex("00 f4") + NOTES + END),
    "XF chunk instead of a track": smf(TEMPO_120 + END, n_tracks=2) + chunk(NOTES + END, name=b"XFIH"),
    "event past the chunk end": smf(TEMPO_120 + END, n_tracks=2) + chunk(NOTES + END, size=len(NOTES + END) - 1),
    "zero tempo on track 1": smf(bytes.fromhex("00 ff 51 03 00 00 00") + END, NOTES + END),
    "zero numerator on track 1": smf(bytes.fromhex("00 ff 58 04 00 02 18 08") + END, NOTES + END),
    "key signature with 8 sharps": smf(TEMPO_120 + bytes.fromhex("00 ff 59 02 08 00") + END, NOTES + END),
    "short set_tempo": smf(bytes.fromhex("00 ff 51 02 07 a1") + END, NOTES + END),
    "smpte offset at minute 60": smf(bytes.fromhex("00 ff 54 05 01 3c 00 00 00") + END, NOTES + END),
    "note velocity above 127": smf(TEMPO_120 + END, bytes([0, 0x90, 60, 200, 0x83, 0x60, 0x80, 60, 0]) + NOTES + END),
    "sysex byte above 127": smf(TEMPO_120 + END, bytes.fromhex("00 f0 03 7e 90 f7") + NOTES + END),
    "division 0": smf(TEMPO_120 + END, NOTES + END, division=0),
    "SMPTE division (25 frames a second, 40 ticks a frame)": smf(TEMPO_120 + END, NOTES + END, division=-6360),
    "last tick beyond note_seq's limit": smf(TEMPO_120 + END, NOTES + bytes.fromhex("ff ff ff ff 7f 90 3c 64") + END),
}


@pytest.mark.parametrize("data", RAW_FILES.values(), ids=RAW_FILES.keys())
def test_readable_exactly_when_magenta_reads_it(tmp_path, data):
    path = tmp_path / "a.mid"
    path.write_bytes(data)
    found = melody_windows_from_midi(path)
    try:
        expected = magenta_windows(path)
    except midi_io.MIDIConversionError:
        assert found.skip_reason == SKIP_CORRUPT
    else:
        assert found.skip_reason != SKIP_CORRUPT and as_set(found) == expected


def test_unknown_meta_event_loses_its_delta_time_as_in_mido(tmp_path):
    (tmp_path / "a.mid").write_bytes(RAW_FILES["unknown meta: mido drops its delta time"])
    (tmp_path / "b.mid").write_bytes(RAW_FILES["plain"])
    assert as_set(melody_windows_from_midi(tmp_path / "a.mid")) == as_set(melody_windows_from_midi(tmp_path / "b.mid"))


# --- Random files -------------------------------------------------------------------------------


EXTRA_EVENTS = (
    mido.MetaMessage("key_signature", key="Eb"),
    mido.MetaMessage("marker", text="A"),
    mido.Message("sysex", data=[1, 2]),
    mido.UnknownMetaMessage(0x60, data=(1,)),  # mido drops its delta time
)


@st.composite
def small_midi_files(draw) -> mido.MidiFile:
    """Type-1 files with tempo and meter changes, overlapping and zero-length notes, drums,
    program changes, pitches out of range, events on a shared tick in any order, metas and sysex."""
    ticks_per_beat = draw(st.sampled_from([96, 220, 480]))
    step = ticks_per_beat // 4
    last_step = 16 * draw(st.integers(2, 10))
    tick = st.one_of(st.integers(0, last_step).map(lambda s: s * step), st.integers(0, last_step * step))
    extra = st.tuples(tick, st.sampled_from(EXTRA_EVENTS))
    tempo = st.builds(
        lambda t, us: (t, mido.MetaMessage("set_tempo", tempo=us)), tick, st.sampled_from([500000, 428571, 333333])
    )
    meter = st.builds(
        lambda t, n_d: (t, mido.MetaMessage("time_signature", numerator=n_d[0], denominator=n_d[1])),
        tick,
        st.sampled_from([(4, 4), (3, 4), (2, 2), (6, 8), (8, 8)]),
    )
    program = st.builds(
        lambda t, channel, number: (t, mido.Message("program_change", channel=channel, program=number)),
        tick,
        st.sampled_from([0, 1]),
        st.sampled_from([0, 25, 31, 32, 40]),
    )
    note = st.tuples(
        tick,
        st.sampled_from([0, 1, step, 2 * step, 3 * step, 4 * step, 16 * step, 20 * step]),  # length in ticks
        st.one_of(st.integers(55, 84), st.integers(0, 127)),  # pitch
        st.sampled_from([0, 0, 1, 9]),  # channel
        st.sampled_from(["note_off", "note_on"]),  # how the note ends (a note_on of velocity 0)
    )
    tracks = [draw(st.lists(tempo, max_size=3)) + draw(st.lists(meter, max_size=3)) + draw(st.lists(extra, max_size=2))]
    for _ in range(draw(st.integers(1, 3))):
        events = draw(st.lists(extra, max_size=1)) + draw(st.lists(program, max_size=2))
        for start, length, pitch, channel, off in draw(st.lists(note, max_size=30)):
            events.append((start, mido.Message("note_on", channel=channel, note=pitch, velocity=80)))
            events.append((start + length, mido.Message(off, channel=channel, note=pitch, velocity=0)))
        tracks.append(events)
    return as_midi_file(tracks, ticks_per_beat, draw(st.randoms(use_true_random=False)))


def as_midi_file(tracks, ticks_per_beat: int, order: random.Random) -> mido.MidiFile:
    """Tracks of (tick, message), events on a shared tick in a random order."""
    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    for events in tracks:
        order.shuffle(events)
        track, last = mido.MidiTrack(), 0
        for tick, message in sorted(events, key=lambda event: event[0]):  # stable: ties stay shuffled
            track.append(message.copy(time=tick - last))
            last = tick
        midi.tracks.append(track)
    return midi


@settings(max_examples=50, deadline=None)
@given(midi=small_midi_files(), bars=st.sampled_from([1, 2]))
def test_random_files_agree_with_magenta(tmp_path_factory, midi, bars):
    path = tmp_path_factory.getbasetemp() / "random.mid"
    midi.save(path)
    assert_same_as_magenta(path, bars=bars)


@settings(max_examples=30, deadline=None)
@given(midi=small_midi_files(), bars=st.sampled_from([1, 2]))
def test_melodies_in_file_order_give_the_same_windows(tmp_path_factory, midi, bars):
    """The explorer's reading (melodies with their place, windows by bar) cuts exactly the data chapter's windows."""
    path = tmp_path_factory.getbasetemp() / "random_melodies.mid"
    midi.save(path)
    found = melody_windows_from_midi(path, bars_per_window=bars)
    melodies = melodies_from_midi_bytes(path.read_bytes())
    assert melodies.skip_reason == (found.skip_reason if found.skip_reason != SKIP_NO_WINDOW else None)
    cut = [windows_at_bars(melody.tokens, bars) for melody in melodies.melodies]
    assert {tuple(w) for windows in cut for w in windows} == as_set(found)


def test_pitched_programs_read_a_fiddle_with_its_track_channel_and_bar(tmp_path):
    fiddle = line((None, 20), (G4, 4), (A4, 8), (C4, 16), (D4, 8))  # starts in bar 2
    path = write_song(tmp_path / "reel.mid", [(VIOLIN, 2, fiddle), (PIANO, 0, line((C4, 32)))])
    assert [m.program for m in melodies_from_midi_bytes(path.read_bytes()).melodies] == [
        PIANO
    ]  # Magenta's programs 0-31
    melodies = melodies_from_midi_bytes(path.read_bytes(), PITCHED_PROGRAMS).melodies
    violin = next(m for m in melodies if m.program == VIOLIN)
    assert (violin.track, violin.channel, violin.piece, violin.first_bar) == (1, 2, 0, 1)  # track 0 is the conductor
    assert tuple(violin.tokens) == tokens((X, 4), (G4, 4), (A4, 8), (C4, 16), (D4, 8), (NOTE_OFF, 8))
    assert [tuple(w) for w in windows_at_bars(violin.tokens)] == [tuple(violin.tokens[:32]), tuple(violin.tokens[16:])]
    assert windows_at_bars(violin.tokens[:16]).shape == (0, 32)


# --- Arguments and the worker pool -------------------------------------------------------------


@pytest.mark.parametrize(("bars", "max_bars"), [(0, 100), (2, 1), (2.0, 100)])
def test_bad_arguments_raise(tmp_path, bars, max_bars):
    path = write_song(tmp_path / "a.mid", [(PIANO, 0, MELODY)])
    with pytest.raises(ValueError, match="bars"):
        melody_windows_from_midi(path, bars_per_window=bars, max_bars=max_bars)


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        melody_windows_from_midi(tmp_path / "nowhere.mid")


def test_function_and_result_survive_pickling(tmp_path):
    path = write_song(tmp_path / "a.mid", [(PIANO, 0, MELODY)])
    function = pickle.loads(pickle.dumps(melody_windows_from_midi))
    result = pickle.loads(pickle.dumps(function(path)))
    assert as_set(result) == as_set(melody_windows_from_midi(path)) and len(result.windows) > 0
