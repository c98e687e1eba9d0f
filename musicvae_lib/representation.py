"""Magenta MusicVAE's monophonic melody encoding and its conversions.

A melody is a sequence of tokens on the 16th-note grid (4 steps per quarter note, 16 steps per
4/4 bar). Token classes, as in Magenta's ``OneHotMelodyConverter`` (cat-mel_2bar configs):

- ``0`` NO_EVENT: whatever sounded on the previous step goes on (a held note, or silence);
- ``1`` NOTE_OFF: the sounding note ends here and silence begins;
- ``2..89``: a note of MIDI pitch ``21..88+21`` starts here (ending any note that sounded).

Conversions: tokens <-> ``Note`` lists <-> ``pretty_midi.PrettyMIDI`` <-> music21 streams. A note
still sounding at the end of a window ends there.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pretty_midi
from music21 import metadata, meter, stream
from music21 import note as music21_note  # "note" names the loop variable of this module's Note lists

NO_EVENT = 0
NOTE_OFF = 1
MIN_PITCH = 21  # A0, lowest piano key: Magenta's melody range for cat-mel_2bar
MAX_PITCH = 108  # C8, highest piano key
FIRST_PITCH_TOKEN = 2
N_CLASSES = FIRST_PITCH_TOKEN + MAX_PITCH - MIN_PITCH + 1  # 90
STEPS_PER_QUARTER = 4
STEPS_PER_BAR = 16  # a 4/4 or 2/2 bar
BARS_PER_WINDOW = 2
WINDOW_STEPS = BARS_PER_WINDOW * STEPS_PER_BAR  # 32
TOKEN_DTYPE = np.uint8


class Note(NamedTuple):
    """One note on the step grid: sounds from ``start_step`` up to (not including) ``end_step``."""

    start_step: int
    end_step: int
    pitch_midi: int


def pitch_to_token(pitch_midi: int) -> int:
    """Token class of a MIDI pitch; ValueError outside Magenta's range 21..108."""
    if not MIN_PITCH <= pitch_midi <= MAX_PITCH:
        raise ValueError(f"`pitch_midi` must lie in {MIN_PITCH}..{MAX_PITCH}, got {pitch_midi}")
    return pitch_midi - MIN_PITCH + FIRST_PITCH_TOKEN


def token_to_pitch(token: int) -> int:
    """MIDI pitch of a note-on token; ValueError for NO_EVENT, NOTE_OFF and unknown classes."""
    if not FIRST_PITCH_TOKEN <= token < N_CLASSES:
        raise ValueError(f"token {token} is not a note-on token ({FIRST_PITCH_TOKEN}..{N_CLASSES - 1})")
    return int(token) - FIRST_PITCH_TOKEN + MIN_PITCH


def check_tokens(tokens: np.ndarray) -> np.ndarray:
    """Return ``tokens`` as an integer array after checking every class lies in 0..89."""
    array = np.asarray(tokens)
    if array.size and (not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() >= N_CLASSES):
        raise ValueError(f"tokens must be integers in 0..{N_CLASSES - 1}, got values {np.unique(array)[:10]}")
    return array


def check_windows(
    windows: np.ndarray,
    steps: int | None = None,
    name: str = "windows",
    allow_empty: bool = True,
    one_window: bool = False,
) -> np.ndarray:
    """The one check of a set of windows: an integer array [n_windows, steps] whose every token lies in 0..89.

    ``steps``: the window length required (None: any); ``allow_empty``: whether n_windows may be 0;
    ``one_window``: a single window [steps] is accepted too and returned as [1, steps]. Returns the
    array as given otherwise (no copy, same dtype: callers store uint8 and compute in int64).
    ValueError naming ``name``: the shape wanted and found, an empty set, or the tokens out of range.
    """
    array = np.asarray(windows)
    if one_window and array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or (steps is not None and array.shape[1] != steps):
        raise ValueError(
            f"`{name}` must have shape [n_windows, {'steps' if steps is None else steps}], got {array.shape}"
        )
    if not allow_empty and len(array) == 0:
        raise ValueError(f"`{name}` is empty (shape {array.shape}): at least one window is needed")
    try:
        return check_tokens(array)
    except ValueError as error:
        raise ValueError(f"`{name}`: {error}") from None


def melody_tokens(tokens: np.ndarray) -> np.ndarray:
    """Checked tokens of ONE melody [n_steps]; ValueError for a batch [n, steps] or an empty array."""
    array = check_tokens(tokens)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"`tokens` must be one melody of shape [n_steps], got shape {array.shape}")
    return array


def monophonic(notes: Sequence[Note]) -> list[Note]:
    """Reduce notes to one line: of notes starting together the highest wins; a note ends where the next starts.

    This is how Magenta's melody extractor treats overlapping notes (``ignore_polyphonic_notes``).
    """
    by_start: dict[int, Note] = {}
    for note in notes:
        if note.end_step <= note.start_step:
            continue
        kept = by_start.get(note.start_step)
        if kept is None or note.pitch_midi > kept.pitch_midi:
            by_start[note.start_step] = note
    ordered = [by_start[start] for start in sorted(by_start)]
    line = []
    for note, following in zip(ordered, ordered[1:] + [None]):
        end = note.end_step if following is None else min(note.end_step, following.start_step)
        line.append(Note(note.start_step, end, note.pitch_midi))
    return line


def notes_to_tokens(notes: Sequence[Note], n_steps: int) -> np.ndarray:
    """Encode monophonic notes as ``n_steps`` tokens: uint8 [n_steps].

    Notes are first made monophonic (see ``monophonic``). Steps outside ``0..n_steps-1`` are cut:
    a note that began before step 0 contributes only its NOTE_OFF, one that sounds past the end
    is held to the end.
    """
    tokens = np.zeros(n_steps, dtype=TOKEN_DTYPE)
    for note in monophonic(notes):
        if 0 <= note.start_step < n_steps:
            tokens[note.start_step] = pitch_to_token(note.pitch_midi)
        if 0 <= note.end_step < n_steps and tokens[note.end_step] == NO_EVENT:
            tokens[note.end_step] = NOTE_OFF
    return tokens


def tokens_to_notes(tokens: np.ndarray) -> list[Note]:
    """Decode tokens [n_steps] into notes; a note still sounding at the last step ends at ``n_steps``.

    A NOTE_OFF with no sounding note is a no-op, as in Magenta's ``Melody.to_sequence``.
    """
    tokens = melody_tokens(tokens)
    notes: list[Note] = []
    start, pitch = -1, -1
    for step, token in enumerate(tokens.tolist()):
        if token == NO_EVENT:
            continue
        if pitch >= 0:
            notes.append(Note(start, step, pitch))
            start, pitch = -1, -1
        if token != NOTE_OFF:
            start, pitch = step, token_to_pitch(token)
    if pitch >= 0:
        notes.append(Note(start, len(tokens), pitch))
    return notes


def canonical_tokens(tokens: np.ndarray) -> np.ndarray:
    """Tokens with every NOTE_OFF that ends no note replaced by NO_EVENT (same music, one spelling)."""
    return notes_to_tokens(tokens_to_notes(tokens), len(tokens))


def tokens_to_midi(
    tokens: np.ndarray, tempo_qpm: float = 120.0, program: int = 0, velocity: int = 90
) -> pretty_midi.PrettyMIDI:
    """A one-track PrettyMIDI of the melody at ``tempo_qpm`` with General MIDI ``program``."""
    seconds_per_step = 60.0 / tempo_qpm / STEPS_PER_QUARTER
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo_qpm)
    midi.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    instrument = pretty_midi.Instrument(program=program, name="melody")
    for note in tokens_to_notes(tokens):
        instrument.notes.append(
            pretty_midi.Note(
                velocity, note.pitch_midi, note.start_step * seconds_per_step, note.end_step * seconds_per_step
            )
        )
    midi.instruments.append(instrument)
    return midi


def midi_to_tokens(midi: pretty_midi.PrettyMIDI, n_steps: int, tempo_qpm: float = 120.0) -> np.ndarray:
    """Tokens [n_steps] of all non-drum notes of ``midi`` at a constant ``tempo_qpm``, rounded to the grid.

    The inverse of ``tokens_to_midi``; for real files with tempo and meter changes use
    ``musicvae_lib.midi_melodies``, which follows Magenta's quantization.
    """
    steps_per_second = tempo_qpm / 60.0 * STEPS_PER_QUARTER
    notes = [
        Note(round(note.start * steps_per_second), round(note.end * steps_per_second), note.pitch)
        for instrument in midi.instruments
        if not instrument.is_drum
        for note in instrument.notes
    ]
    return notes_to_tokens(notes, n_steps)


def tokens_to_stream(tokens: np.ndarray, title: str | None = None) -> stream.Score:
    """A music21 Score in 4/4 with the melody as notes and rests, for notation and analysis."""
    part = stream.Part()
    part.insert(0, meter.TimeSignature("4/4"))
    cursor = 0
    for melody_note in tokens_to_notes(tokens):
        if melody_note.start_step > cursor:
            part.append(music21_note.Rest(quarterLength=(melody_note.start_step - cursor) / STEPS_PER_QUARTER))
        length = (melody_note.end_step - melody_note.start_step) / STEPS_PER_QUARTER
        part.append(music21_note.Note(melody_note.pitch_midi, quarterLength=length))
        cursor = melody_note.end_step
    if cursor < len(tokens):
        part.append(music21_note.Rest(quarterLength=(len(tokens) - cursor) / STEPS_PER_QUARTER))
    score = stream.Score([part])
    if title:
        score.insert(0, metadata.Metadata(title=title))
    score = score.makeNotation()
    respell_accidentals(score)
    return score


def respell_accidentals(score: stream.Score) -> None:
    """Print only the accidentals a reader needs, in place.

    Notes built from MIDI numbers carry an explicit natural on every white key, which
    ``makeNotation`` would print (a G natural after an F); dropping the naturals and redoing the
    accidentals per part keeps only the needed ones (a C natural after a C# in the same bar).
    """
    for pitch in score.pitches:
        if pitch.accidental is not None and pitch.accidental.name == "natural":
            pitch.accidental = None
    for part in score.parts:
        part.makeAccidentals(inPlace=True, overrideStatus=True)


def stream_to_tokens(score: stream.Stream, n_steps: int) -> np.ndarray:
    """Tokens [n_steps] of a music21 stream's notes (ties merged, chords reduced to their top note).

    Offsets and lengths must lie on the 16th grid; ValueError otherwise (see ``musicvae_lib.folk_melodies``
    for how the corpus treats triplets).
    """
    notes = []
    for element in score.stripTies().flatten().notes:
        start = element.offset * STEPS_PER_QUARTER
        end = (element.offset + element.quarterLength) * STEPS_PER_QUARTER
        if start != int(start) or end != int(end):
            raise ValueError(
                f"note at offset {element.offset} (quarterLength {element.quarterLength}) is off the 16th grid"
            )
        pitches = [p.midi for p in element.pitches]
        notes.append(Note(int(start), int(end), max(pitches)))
    return notes_to_tokens(notes, n_steps)


def write_midi(tokens: np.ndarray, path: str | Path, program: int = 0, tempo_qpm: float = 120) -> Path:
    """Write the melody (tokens [n_steps]) as a one-track standard MIDI file a DAW opens; returns the path.

    4/4 at ``tempo_qpm`` with General MIDI ``program``, as ``tokens_to_midi``; parent
    folders are created.
    """
    tokens = melody_tokens(tokens)
    if tempo_qpm <= 0:
        raise ValueError(f"`tempo_qpm` must be positive, got {tempo_qpm}")
    if not 0 <= program <= 127:
        raise ValueError(f"`program` must be a General MIDI program 0..127, got {program}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens_to_midi(tokens, tempo_qpm=tempo_qpm, program=program).write(str(path))
    return path
