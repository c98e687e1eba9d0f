"""Melody windows from one MIDI file, cut exactly as Magenta's MusicVAE cat-mel_2bar configs cut them.

Magenta's chain, which this module re-implements on the bytes of the file:

1. ``note_seq.midi_io.midi_to_note_sequence`` reads the file with pretty_midi (itself on mido);
2. ``BaseNoteSequenceConverter`` (``presplit_on_time_changes=True``) cuts the sequence at every
   tempo and time-signature change (``sequences_lib.split_note_sequence_on_time_changes``);
3. for each piece ``OneHotMelodyConverter`` (cat-mel_2bar_small: ``valid_programs=range(32)``,
   ``max_bars=100``, ``slice_bars=2``, ``steps_per_quarter=4``) keeps the notes of programs 0-31
   with pitches 21..108, quantizes them (``quantize_note_sequence``), drops the piece unless its
   bars have 16 steps, extracts melodies per instrument (``extract_melodies`` with ``gap_bars=1``,
   ``ignore_polyphonic_notes=True``, ``pad_end=True``, ``min_bars=1``, ``min_unique_pitches=1``,
   ``max_steps_truncate=1600``) and slides a two-bar window with a hop of one bar over each
   melody, keeping the unique windows.

Why not call mido and pretty_midi: building mido's message objects alone takes ~60 ms for a
three-minute pop song, four times the budget for a Lakh-sized corpus. The reader below walks the
bytes itself but rejects the files mido 1.3 rejects and reads the rest as pretty_midi 0.2.11 does
(tempo map from the first track, its note pairing, programs per track and channel), so that the
windows equal Magenta's; ``tests/test_midi_melodies.py`` checks them against note_seq.

Why not symusic (0.6.0, the C++ MIDI parser under MidiTok), measured with
``benchmarks/midi_byte_layer.py`` on 2 cores of an AMD EPYC (lscpu gives no model number), shared
with other jobs: it turns bytes into paired notes about 18 times as fast as this reader (10,684
against 594 files/s, one process, on the benchmark's pop songs; the whole pipeline here makes
windows of 338 files/s), and reads the same notes on all 100 of those songs, but not as mido and
pretty_midi do where files are unusual, so its windows would not be Magenta's: of the tests' 25
hand-made byte cases it reads 12 otherwise (it accepts files mido refuses, such as a zero tempo or
numerator, division 0, an out-of-range key signature or sysex byte; refuses garbage after the
last track, which mido ignores; keeps the delta time of an unknown meta event, which mido drops;
files a note under the program at its note-on, where pretty_midi takes the program at its
note-off), and of 300 random files of the tests' hypothesis strategy it reads 181 with other
notes (overlapping and zero-length notes paired otherwise). Exact agreement with note_seq is the
reader's contract, so the hand reader stays.

Where this differs from Magenta, on purpose:

- all unique windows of a file are returned and they are unique per file, not per piece
  between time changes; Magenta's trainer draws at most 5 per sequence
  (``max_tensors_per_notesequence=5``) afresh each epoch and transposes by up to 5 semitones
  (``NoteSequenceAugmenter``): sampling and augmentation belong to the training pipeline;
- a file timed in SMPTE frames (negative division) is unreadable even without notes; pretty_midi
  refuses it only once it holds a note (negative times make notes end before they start).
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass

import numpy as np

from musicvae_lib.representation import (
    BARS_PER_WINDOW,
    FIRST_PITCH_TOKEN,
    MAX_PITCH,
    MIN_PITCH,
    NO_EVENT,
    NOTE_OFF,
    STEPS_PER_BAR,
    STEPS_PER_QUARTER,
    TOKEN_DTYPE,
)

SKIP_EMPTY_FILE = "empty file"
SKIP_CORRUPT = "not a readable MIDI file"
SKIP_DRUMS_ONLY = "drums only"
SKIP_NO_MELODY_PROGRAM = "no melody notes (programs 0-31, pitches 21-108)"
SKIP_NO_16_STEP_BARS = "no 4/4 or 2/2 section"
SKIP_NO_WINDOW = "no melody long enough for a window"

MELODY_PROGRAMS = range(32)  # Magenta's MEL_PROGRAMS: piano, chromatic percussion, organ, guitar
# General MIDI's pitched families, piano to ethnic (0-111); 112-127 are its percussive and sound-effect
# families. The explorer reads any of these: folk tunes come as flute (73) or fiddle (40, 110).
PITCHED_PROGRAMS = range(112)
DEFAULT_MAX_BARS = 100  # cat-mel_2bar: "Truncate long melodies before slicing."
GAP_STEPS = STEPS_PER_BAR  # gap_bars=1: a bar of silence after a note ends the melody
DRUM_CHANNEL = 9  # pretty_midi: channel 10 (0-based 9) is a drum kit
DEFAULT_QPM = 120.0  # note_seq's DEFAULT_QUARTERS_PER_MINUTE, also pretty_midi's initial tempo
MAX_TICK = 10**10  # pretty_midi refuses files whose last tick reaches this; note_seq raises its 1e7 to 1e10
MAX_MESSAGE_LENGTH = 1_000_000  # mido refuses meta and sysex payloads longer than this
MAX_INT32 = 2**31 - 1  # note_seq stores time-signature denominators as int32
_TICK_CAP = 2**40  # delta times are capped here while summed: past MAX_TICK the file is rejected anyway


@dataclass(frozen=True)
class MidiWindows:
    """The melody windows of one MIDI file, or why there is none.

    ``windows``: uint8 [n_windows, bars_per_window * 16] token windows (see ``representation``),
    unique within the file, in no particular order. ``skip_reason`` is None when windows were
    found, else one of the ``SKIP_*`` strings.
    """

    windows: np.ndarray
    skip_reason: str | None


@dataclass(frozen=True)
class MidiMelody:
    """One melody of a MIDI file as Magenta's extractor cuts it, with where it lies in the file.

    ``tokens``: uint8 [n_bars * 16], whole bars from the bar of its first note. ``first_bar`` counts
    bars (0-based) from the start of its ``piece``, the stretch of the file between tempo or
    time-signature changes (piece 0 from the file's start: in a file without such changes, the
    bars of the score). ``track`` is the 0-based MTrk chunk, ``channel`` 0-based.
    """

    tokens: np.ndarray
    track: int
    channel: int
    program: int
    piece: int
    first_bar: int


@dataclass(frozen=True)
class MidiMelodies:
    """The melodies of one MIDI file in file order (by piece, instrument, time), or why there is none."""

    melodies: list[MidiMelody]
    skip_reason: str | None


def melody_windows_from_midi(
    path: str | os.PathLike, bars_per_window: int = BARS_PER_WINDOW, max_bars: int = DEFAULT_MAX_BARS
) -> MidiWindows:
    """Magenta's cat-mel_2bar melody windows of the MIDI file at ``path`` (see the module docstring).

    A bad file (empty, truncated, not MIDI, no melody, ...) gives no windows and a ``SKIP_*``
    reason; only bad arguments raise (ValueError), and a path that cannot be opened raises OSError.
    ``max_bars`` truncates each melody before windows are cut, as Magenta's ``max_bars`` does.
    """
    window_steps = _window_steps(bars_per_window, max_bars)
    with open(path, "rb") as file:
        data = file.read()
    if not data:
        return _skipped(window_steps, SKIP_EMPTY_FILE)
    try:
        midi = _read_midi(data)
    except _UnreadableMidi:
        return _skipped(window_steps, SKIP_CORRUPT)
    notes = _pretty_midi_notes(midi)
    kept = _melody_notes(notes)
    if not kept.any():
        drums_only = len(notes.pitch) > 0 and bool((notes.channel == DRUM_CHANNEL).all())
        return _skipped(window_steps, SKIP_DRUMS_ONLY if drums_only else SKIP_NO_MELODY_PROGRAM)
    quantized = _quantize_in_pieces(midi, notes)
    kept &= quantized.in_16_step_bars
    if not kept.any():
        return _skipped(window_steps, SKIP_NO_16_STEP_BARS)
    windows = _unique_windows(_melodies(notes, quantized, kept, STEPS_PER_BAR * max_bars), window_steps)
    return MidiWindows(windows, None if len(windows) else SKIP_NO_WINDOW)


def melodies_from_midi_bytes(
    data: bytes, programs: range = MELODY_PROGRAMS, max_bars: int = DEFAULT_MAX_BARS
) -> MidiMelodies:
    """The melodies ``melody_windows_from_midi`` cuts its windows from, in file order, from a file's bytes.

    The same reading (notes, pieces, quantization, extraction), but the notes of any General MIDI
    program in ``programs`` count (``PITCHED_PROGRAMS`` for every pitched instrument), drums never.
    A bad file gives no melodies and a ``SKIP_*`` reason, where ``SKIP_NO_MELODY_PROGRAM`` means
    no note of ``programs``. Cut a melody's windows with ``windows_at_bars``.
    """
    _window_steps(1, max_bars)
    if not data:
        return MidiMelodies([], SKIP_EMPTY_FILE)
    try:
        midi = _read_midi(data)
    except _UnreadableMidi:
        return MidiMelodies([], SKIP_CORRUPT)
    notes = _pretty_midi_notes(midi)
    kept = _melody_notes(notes, programs)
    if not kept.any():
        drums_only = len(notes.pitch) > 0 and bool((notes.channel == DRUM_CHANNEL).all())
        return MidiMelodies([], SKIP_DRUMS_ONLY if drums_only else SKIP_NO_MELODY_PROGRAM)
    quantized = _quantize_in_pieces(midi, notes)
    kept &= quantized.in_16_step_bars
    if not kept.any():
        return MidiMelodies([], SKIP_NO_16_STEP_BARS)
    found = _melodies(notes, quantized, kept, STEPS_PER_BAR * max_bars)
    melodies = [
        MidiMelody(
            found.tokens[start : start + length],
            int(instrument // (16 * 128)),
            int(instrument // 128 % 16),
            int(instrument % 128),
            int(piece),
            int(origin // STEPS_PER_BAR),
        )
        for start, length, instrument, piece, origin in zip(
            found.starts, found.lengths, found.instrument, found.piece, found.origin
        )
    ]
    return MidiMelodies(melodies, None)


def windows_at_bars(tokens: np.ndarray, bars_per_window: int = BARS_PER_WINDOW) -> np.ndarray:
    """Windows of a melody (tokens [n_bars * 16]) starting at each of its bars, in time order.

    uint8 [max(n_bars - bars_per_window + 1, 0), bars_per_window * 16]: row k starts at bar k, as
    Magenta slices a melody (NOTE_OFFs before a window's first note become NO_EVENT); not deduplicated.
    """
    window_steps = _window_steps(bars_per_window, bars_per_window)
    tokens = np.asarray(tokens, dtype=TOKEN_DTYPE)
    return _windows_at_bars(tokens, np.array([0]), np.array([len(tokens)]), window_steps)


def _window_steps(bars_per_window: int, max_bars: int) -> int:
    """Steps per window, after checking the arguments a caller can get wrong."""
    if not isinstance(bars_per_window, int) or bars_per_window < 1:
        raise ValueError(f"`bars_per_window` must be an integer >= 1, got {bars_per_window!r}")
    if not isinstance(max_bars, int) or max_bars < bars_per_window:
        raise ValueError(
            f"`max_bars` must be an integer >= `bars_per_window` ({bars_per_window}): melodies are cut "
            f"to `max_bars` bars before windows are taken, got {max_bars!r}"
        )
    return STEPS_PER_BAR * bars_per_window


def _skipped(window_steps: int, reason: str) -> MidiWindows:
    return MidiWindows(np.zeros((0, window_steps), dtype=TOKEN_DTYPE), reason)


def _melody_notes(notes: _Notes, programs: range = MELODY_PROGRAMS) -> np.ndarray:
    """bool [n_notes]: what the converter keeps (``is_valid``: programs 0-31, pitches 21..108),
    less drums, which the melody extractor skips (``filter_drums``) whatever their program."""
    in_program = (notes.program >= programs.start) & (notes.program < programs.stop)
    in_range = (notes.pitch >= MIN_PITCH) & (notes.pitch <= MAX_PITCH)
    return in_program & in_range & (notes.channel != DRUM_CHANNEL)


# --- Reading the file as mido 1.3 and pretty_midi 0.2.11 do --------------------------------------


class _UnreadableMidi(Exception):
    """The file is one that mido, pretty_midi or note_seq's MIDI reader would refuse."""


@dataclass(frozen=True)
class _Track:
    """What pretty_midi takes from one MTrk chunk. Channel events are in file order."""

    ticks: np.ndarray  # int64 [n_channel_events] absolute tick
    status: np.ndarray  # int64 [n_channel_events] status byte, running status resolved
    data1: np.ndarray  # int64 [n_channel_events] note number or program
    data2: np.ndarray  # int64 [n_channel_events] velocity (unused for one-data-byte messages)
    tempos: list[tuple[int, int]]  # (tick, microseconds per quarter note) of set_tempo events
    time_signatures: list[tuple[int, int, int]]  # (tick, numerator, log2 of the denominator)


@dataclass(frozen=True)
class _Midi:
    ticks_per_quarter: int
    tracks: list[_Track]


# Per status byte: 0 a data byte (running status), 1 or 2 a channel message with that many data
# bytes, 3 a system or meta event, read by ``_read_system_event``.
_STATUS_KIND = tuple(0 if s < 0x80 else (1 if 0xC0 <= s < 0xE0 else 2) if s < 0xF0 else 3 for s in range(256))
# mido's message lengths (status byte included) of the system messages it knows; 0xF4, 0xF5, 0xF9
# and 0xFD are undefined and make it refuse the file.
_SYSTEM_LENGTH = {0xF1: 2, 0xF2: 3, 0xF3: 2, 0xF6: 1, 0xF8: 1, 0xFA: 1, 0xFB: 1, 0xFC: 1, 0xFE: 1}
# Meta types mido decodes; it builds any other as an UnknownMetaMessage and drops its delta time.
_MIDO_META_TYPES = frozenset(
    [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x09, 0x20, 0x21, 0x2F, 0x51, 0x54, 0x58, 0x59, 0x7F]
)
# mido decodes these without checking how many data bytes they got.
_SYSTEM_ANY_LENGTH = (0xF1, 0xF2)
# mido checks a time-signature denominator 2**k with math.log(2**k, 2) == int(...), which
# floating point fails for these k.
_MIDO_BAD_DENOMINATOR_LOG2 = frozenset(k for k in range(256) if math.log(2**k, 2) != int(math.log(2**k, 2)))


def _read_midi(data: bytes) -> _Midi:
    """Parse a Standard MIDI File; _UnreadableMidi where mido, pretty_midi or note_seq would fail."""
    try:
        ticks_per_quarter, track_spans = _chunk_layout(data)
        walks = [_walk_track(data, start, end) for start, end in track_spans]
    except (IndexError, struct.error) as error:  # read past the end of the file
        raise _UnreadableMidi("truncated file") from error
    if ticks_per_quarter <= 0:  # 0 divides by zero in pretty_midi; SMPTE (< 0) makes notes end before they start
        raise _UnreadableMidi(f"division {ticks_per_quarter} is not in ticks per quarter note")
    if not walks:
        raise _UnreadableMidi("no track")  # pretty_midi takes max() over the tracks
    file_bytes = np.frombuffer(data, dtype=np.uint8)
    padded = np.concatenate([file_bytes, np.zeros(3, dtype=np.uint8)]).astype(np.int64)
    # Offset of the first byte < 0x80 at or after each offset: the last byte of a delta time.
    data_byte_at = np.where(file_bytes < 0x80, np.arange(len(data)), len(data))
    next_data_byte = np.minimum.accumulate(data_byte_at[::-1])[::-1]
    tracks = [_decode_track(padded, next_data_byte, *walk, first_track=n == 0) for n, walk in enumerate(walks)]
    return _Midi(ticks_per_quarter, tracks)


def _chunk_layout(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(division, [(start, end) byte offsets of each MTrk's events]) as mido reads the chunk headers.

    mido reads ``number of tracks`` chunks one after the other, each of which must be an MTrk; a
    header longer than 6 bytes is skipped, bytes after the last track are ignored.
    """
    name, size = struct.unpack(">4sL", data[:8])
    if name != b"MThd":
        raise _UnreadableMidi("no MThd header")
    if len(data[8 : 8 + size]) < 6:
        raise _UnreadableMidi("truncated MThd header")
    _, n_tracks, division = struct.unpack(">hhh", data[8:14])
    position = min(8 + size, len(data))
    spans = []
    for _ in range(n_tracks):
        name, size = struct.unpack(">4sL", data[position : position + 8])
        if name != b"MTrk":
            raise _UnreadableMidi(f"chunk {name!r} where mido expects MTrk")
        spans.append((position + 8, position + 8 + size))
        position += 8 + size
    return division, spans


def _walk_track(data: bytes, start: int, end: int) -> tuple[list[int], list[int], list[tuple[int, int, bytes]]]:
    """Offsets of the track's events, numbers of its system/meta events, and its meta events.

    Follows mido's ``read_track``: delta time, then a status byte or running status; events must
    end exactly at the chunk's end (mido would read on into the next chunk and fail). Meta events
    come back as (event number, type, payload). This loop is the reader's only per-event Python.
    """
    events: list[int] = []
    system_events: list[int] = []
    metas: list[tuple[int, int, bytes]] = []
    add = events.append
    position = start
    running = 0  # data bytes of the running channel status; 0 none yet, 3 a system status
    system_status = 0
    while position < end:
        add(position)
        byte = data[position]
        status_at = position + 1
        while byte >= 0x80:  # delta time: 7 bits a byte, high bit set on all but the last
            byte = data[status_at]
            status_at += 1
        kind = _STATUS_KIND[data[status_at]]
        if kind == 0 and 0 < running < 3:
            position = status_at + running
        elif 0 < kind < 3:
            running = kind
            position = status_at + 1 + kind
        else:
            system_events.append(len(events) - 1)
            position, running, system_status = _read_system_event(
                data, status_at, running, system_status, len(events) - 1, metas
            )
    if position != end:
        raise _UnreadableMidi("an event runs past the end of its track chunk")
    return events, system_events, metas


def _read_system_event(
    data: bytes, status_at: int, running: int, system_status: int, number: int, metas: list[tuple[int, int, bytes]]
) -> tuple[int, int, int]:
    """Read a meta, sysex or system event as mido does; (next offset, running, system status).

    mido keeps running status through meta events and sets it to any other status byte, so a data
    byte after a sysex starts another sysex.
    """
    status = data[status_at]
    peeked = int(status < 0x80)  # a data byte where the status should be, read already
    if peeked:
        if running != 3:
            raise _UnreadableMidi("running status with no status byte before it")
        status = system_status
    position = status_at + 1
    if status == 0xFF:
        meta_type = data[position]
        length, position = _read_variable_int(data, position + 1)
        payload = _read_payload(data, position, length)
        _check_meta(meta_type, payload)
        metas.append((number, meta_type, payload))
        return position + length, running, system_status
    new_status = system_status if peeked else status
    if status in (0xF0, 0xF7):
        length, position = _read_variable_int(data, position)  # mido ignores a peeked byte here
        payload = _read_payload(data, position, length)
        body = payload[1:] if payload[:1] == b"\xf0" else payload
        body = body[:-1] if body[-1:] == b"\xf7" else body
        if body and max(body) > 127:
            raise _UnreadableMidi("sysex data byte above 127")
        return position + length, 3, new_status
    if status not in _SYSTEM_LENGTH:
        raise _UnreadableMidi(f"undefined status byte 0x{status:02x}")
    n_read = max(_SYSTEM_LENGTH[status] - 1 - peeked, 0)
    message = data[status_at : status_at + peeked] + _read_payload(data, position, n_read)
    if (message and max(message) > 127) or (
        status not in _SYSTEM_ANY_LENGTH and len(message) != _SYSTEM_LENGTH[status] - 1
    ):
        raise _UnreadableMidi(f"bad data bytes for status 0x{status:02x}")
    return position + n_read, 3, new_status


def _read_variable_int(data: bytes, position: int) -> tuple[int, int]:
    """(value, offset after it) of a MIDI variable-length quantity."""
    value = 0
    while True:
        byte = data[position]
        position += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, position


def _read_payload(data: bytes, position: int, length: int) -> bytes:
    if length > MAX_MESSAGE_LENGTH or position + length > len(data):
        raise _UnreadableMidi(f"payload of {length} bytes at offset {position} does not fit")
    return data[position : position + length]


def _check_meta(meta_type: int, payload: bytes) -> None:
    """Raise where mido 1.3's meta decoders fail (too short, out of range, unknown key)."""
    n = len(payload)
    bad = (
        (meta_type == 0x00 and n == 1)  # sequence number: 0 or 2 bytes
        or (meta_type == 0x20 and n == 0)  # channel prefix
        or (meta_type == 0x51 and n < 3)  # set tempo
        or (meta_type == 0x54 and (n < 5 or payload[0] >> 5 > 3 or max(payload[1:3]) > 59 or payload[4] > 99))
        or (meta_type == 0x58 and (n < 4 or payload[1] in _MIDO_BAD_DENOMINATOR_LOG2))
        or (meta_type == 0x59 and (n < 2 or not -7 <= (payload[0] ^ 0x80) - 0x80 <= 7 or payload[1] > 1))
    )
    if bad:
        raise _UnreadableMidi(f"meta event 0x{meta_type:02x} with a payload mido cannot decode: {payload[:8]!r}")


def _decode_track(
    padded: np.ndarray,
    next_data_byte: np.ndarray,
    events: list[int],
    system_events: list[int],
    metas: list[tuple[int, int, bytes]],
    first_track: bool,
) -> _Track:
    """Ticks, statuses and data bytes of the walked events, vectorized; pretty_midi's checks.

    ``padded``: int64 [file bytes + 3], the file with zeros after it so that gathers never fall off.
    """
    if not events:
        raise _UnreadableMidi("empty track")  # pretty_midi takes max() over each track's events
    offsets = np.array(events, dtype=np.int64)
    status_at = next_data_byte[offsets] + 1
    deltas = _delta_times(padded, offsets, status_at)
    deltas[[number for number, meta_type, _ in metas if meta_type not in _MIDO_META_TYPES]] = 0
    ticks = np.cumsum(deltas)
    if ticks[-1] + 1 > MAX_TICK:
        raise _UnreadableMidi(f"last tick {ticks[-1]} beyond pretty_midi's limit {MAX_TICK}")
    channel_event = np.ones(len(offsets), dtype=bool)
    channel_event[system_events] = False
    status_byte = padded[status_at]
    explicit = channel_event & (status_byte >= 0x80)
    last_explicit = np.maximum.accumulate(np.where(explicit, np.arange(len(offsets)), 0))
    status = status_byte[last_explicit][channel_event]
    first_data_at = (status_at + (status_byte >= 0x80))[channel_event]
    data1, data2 = padded[first_data_at], padded[first_data_at + 1]
    two_bytes = (status & 0xE0) != 0xC0
    if (data1 > 127).any() or (data2[two_bytes] > 127).any():
        raise _UnreadableMidi("data byte above 127")  # mido reads without clipping
    tempos, time_signatures = _track_meter_and_tempo(metas, ticks, first_track)
    return _Track(ticks[channel_event], status, data1, data2, tempos, time_signatures)


def _delta_times(padded: np.ndarray, offsets: np.ndarray, status_at: np.ndarray) -> np.ndarray:
    """int64 [n_events] delta times, each the variable-length ``padded[offset:status_at]``, capped at _TICK_CAP."""
    lengths = status_at - offsets
    deltas = padded[offsets] & 0x7F
    for extra in range(1, int(lengths.max())):
        longer = lengths > extra
        shifted = (deltas[longer] << 7) | (padded[offsets[longer] + extra] & 0x7F)
        deltas[longer] = np.minimum(shifted, _TICK_CAP)
    return deltas


def _track_meter_and_tempo(
    metas: list[tuple[int, int, bytes]], ticks: np.ndarray, first_track: bool
) -> tuple[list[tuple[int, int]], list[tuple[int, int, int]]]:
    """Tempo and time-signature events pretty_midi reads, with the checks that make it or note_seq fail.

    pretty_midi reads both from the first track only; there it divides by the tempo, refuses a
    zero numerator, and note_seq refuses a denominator beyond int32.
    """
    if not first_track:
        return [], []
    tempos, time_signatures = [], []
    for number, meta_type, payload in metas:
        tick = int(ticks[number])
        if meta_type == 0x51:
            tempo = (payload[0] << 16) | (payload[1] << 8) | payload[2]
            if tempo == 0:
                raise _UnreadableMidi("tempo of 0 microseconds per quarter note")
            tempos.append((tick, tempo))
        elif meta_type == 0x58:
            if payload[0] == 0 or 2 ** payload[1] > MAX_INT32:
                raise _UnreadableMidi(f"time signature {payload[0]}/2**{payload[1]}")
            time_signatures.append((tick, payload[0], payload[1]))
    return tempos, time_signatures


@dataclass(frozen=True)
class _Notes:
    """pretty_midi's notes of the whole file; the instrument of a note is (track, channel, program)."""

    start_tick: np.ndarray  # int64 [n_notes]
    end_tick: np.ndarray  # int64 [n_notes]
    pitch: np.ndarray  # int64 [n_notes] MIDI pitch
    channel: np.ndarray  # int64 [n_notes]
    track: np.ndarray  # int64 [n_notes]
    program: np.ndarray  # int64 [n_notes] program of the channel when the note ended


def _pretty_midi_notes(midi: _Midi) -> _Notes:
    """Pair note-ons with note-offs as pretty_midi's ``_load_instruments`` does.

    Per track, channel and pitch, a note-off ends every open note that started at an earlier tick;
    notes that started on the note-off's tick stay open if some note ended, else they are dropped.
    A note takes the program its channel has in its track when it ends. The common case (on, off,
    on, off, ... at distinct ticks) is paired with numpy; other keys are replayed one event at a time.
    """
    track = np.concatenate([np.full(len(t.ticks), number) for number, t in enumerate(midi.tracks)])
    ticks = np.concatenate([t.ticks for t in midi.tracks])
    status = np.concatenate([t.status for t in midi.tracks])
    data1 = np.concatenate([t.data1 for t in midi.tracks])
    data2 = np.concatenate([t.data2 for t in midi.tracks])
    kind, channel = status & 0xF0, status & 0x0F
    note_on = (kind == 0x90) & (data2 > 0)
    note_event = note_on | (kind == 0x80) | (kind == 0x90)
    events = np.flatnonzero(note_event)
    key = ((track * 16 + channel) * 128 + data1)[events]
    order = np.argsort(key, kind="stable")  # grouped by key, file order within a key
    events, key = events[order], key[order]
    starts, ends = _pair_by_key(key, note_on[events], ticks[events])
    on_event, off_event = events[starts], events[ends]
    return _Notes(
        ticks[on_event],
        ticks[off_event],
        data1[on_event],
        channel[off_event],
        track[off_event],
        _program_at(off_event, track * 16 + channel, kind == 0xC0, data1),
    )


def _pair_by_key(key: np.ndarray, on: np.ndarray, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(on indices, off indices) of pretty_midi's notes among note events grouped by ``key``.

    ``key``, ``on``, ``ticks``: [n_note_events], sorted by key with file order kept within a key.
    """
    n = len(key)
    new_key = np.r_[True, key[1:] != key[:-1]][:n]
    group_start = np.flatnonzero(new_key)
    group = np.cumsum(new_key) - 1
    odd = (np.arange(n) - group_start[group]) % 2 == 1
    simple = np.where(on, ~odd, odd)  # on at even places of its key, off at odd ones
    simple[1:] &= on[1:] | (ticks[1:] != ticks[:-1])  # an off on its on's tick drops the note
    replay = np.zeros(len(group_start), dtype=bool)
    replay[group[~simple]] = True
    paired = on[:-1] & ~on[1:] & (group[:-1] == group[1:]) & ~replay[group[:-1]]
    starts, ends = [np.flatnonzero(paired)], [np.flatnonzero(paired) + 1]
    for number in np.flatnonzero(replay):
        first = group_start[number]
        last = group_start[number + 1] if number + 1 < len(group_start) else n
        key_starts, key_ends = _replay_key(on[first:last].tolist(), ticks[first:last].tolist())
        starts.append(first + np.array(key_starts, dtype=np.int64))
        ends.append(first + np.array(key_ends, dtype=np.int64))
    return np.concatenate(starts), np.concatenate(ends)


def _replay_key(on: list[bool], ticks: list[int]) -> tuple[list[int], list[int]]:
    """pretty_midi's note pairing for the events of one (track, channel, pitch), one by one."""
    starts: list[int] = []
    ends: list[int] = []
    open_notes: list[int] = []
    for event, (is_on, tick) in enumerate(zip(on, ticks)):
        if is_on:
            open_notes.append(event)
        elif open_notes:
            closed = [start for start in open_notes if ticks[start] != tick]
            starts += closed
            ends += [event] * len(closed)
            open_notes = [start for start in open_notes if ticks[start] == tick] if closed else []
    return starts, ends


def _program_at(
    events: np.ndarray, track_channel: np.ndarray, program_change: np.ndarray, data1: np.ndarray
) -> np.ndarray:
    """int64 [len(events)] program of each event's track and channel at that event.

    ``events`` index the file's channel events; pretty_midi starts every channel of every track
    at program 0.
    """
    changes = np.flatnonzero(program_change)
    if not len(changes):
        return np.zeros(len(events), dtype=np.int64)
    # Order changes and events by (track and channel, file order): an event sees the last change before it.
    merged = np.concatenate([changes, events])
    order = np.lexsort((merged, track_channel[merged]))
    in_order = merged[order]
    last = np.maximum.accumulate(np.where(order < len(changes), np.arange(len(order)), -1))
    source = in_order[np.maximum(last, 0)]
    program = np.where((last >= 0) & (track_channel[source] == track_channel[in_order]), data1[source], 0)
    place = np.empty(len(order), dtype=np.int64)
    place[order] = np.arange(len(order))
    return program[place[len(changes) :]]


# --- Magenta: split at time changes, quantize, extract melodies, cut windows ---------------------


@dataclass(frozen=True)
class _TempoMap:
    """pretty_midi's piecewise-constant tempo: segment k starts at ``first_tick[k]``."""

    first_tick: np.ndarray  # int64 [n_segments]
    seconds_per_tick: np.ndarray  # float64 [n_segments]
    first_seconds: np.ndarray  # float64 [n_segments] time of the segment's first tick
    qpm: np.ndarray  # float64 [n_segments] tempo as note_seq reads it from pretty_midi


def _tempo_map(midi: _Midi) -> _TempoMap:
    """The tempo map of pretty_midi's ``_load_tempo_changes`` and ``_update_tick_to_time``.

    Only the first track's set_tempo events count; one at tick 0 replaces the initial 120 qpm, a
    later one that repeats the current tempo is dropped. Seconds are summed segment by segment
    with the same floating-point operations, so times equal pretty_midi's to the last bit.
    """
    resolution = midi.ticks_per_quarter
    segments = [(0, 60.0 / (DEFAULT_QPM * resolution))]
    for tick, microseconds in midi.tracks[0].tempos:
        seconds_per_tick = 60.0 / ((6e7 / microseconds) * resolution)
        if tick == 0:
            segments = [(0, seconds_per_tick)]
        elif seconds_per_tick != segments[-1][1]:
            segments.append((tick, seconds_per_tick))
    first_seconds = [0.0]
    for (tick, seconds_per_tick), (next_tick, _) in zip(segments, segments[1:]):
        first_seconds.append(first_seconds[-1] + seconds_per_tick * (next_tick - tick))
    first_tick, seconds_per_tick = (np.array(column) for column in zip(*segments))
    return _TempoMap(first_tick, seconds_per_tick, np.array(first_seconds), 60.0 / (seconds_per_tick * resolution))


def _seconds(ticks: np.ndarray, tempo_map: _TempoMap) -> np.ndarray:
    """float64 [n] time in seconds of each absolute tick."""
    segment = np.searchsorted(tempo_map.first_tick, ticks, side="right") - 1
    elapsed_ticks = ticks - tempo_map.first_tick[segment]
    return tempo_map.first_seconds[segment] + tempo_map.seconds_per_tick[segment] * elapsed_ticks


def _split_times(
    total_seconds: float, meters: list[tuple[float, tuple[int, int]]], tempos: list[tuple[float, float]]
) -> list[float]:
    """[0, cut..., total] as note_seq's ``split_note_sequence_on_time_changes`` cuts a sequence.

    A time signature or tempo that differs from the current one cuts there, unless it falls on the
    previous cut or at or after the end of the last note; the current values follow every event.
    """
    changes = [(time, True, meter) for time, meter in meters] + [(time, False, qpm) for time, qpm in tempos]
    changes.sort(key=lambda change: change[0])
    meter, qpm = (4, 4), DEFAULT_QPM
    cuts = [0.0]
    for time, is_meter, value in changes:
        if time >= total_seconds or value == (meter if is_meter else qpm):
            continue
        if time > cuts[-1]:
            cuts.append(time)
        if is_meter:
            meter = value
        else:
            qpm = value
    if total_seconds > cuts[-1]:
        cuts.append(total_seconds)
    return cuts


def _value_at(time: float, events: list[tuple[float, object]], default: object) -> object:
    """The value of the last event at or before ``time`` (events sorted by time), else ``default``.

    This is the state note_seq's ``_extract_subsequences`` puts at the start of each piece.
    """
    value = default
    for event_time, event_value in events:
        if event_time > time:
            break
        value = event_value
    return value


@dataclass(frozen=True)
class _Quantized:
    """Each note placed in its piece between time changes and quantized there as note_seq does."""

    piece: np.ndarray  # int64 [n_notes] piece the note starts in
    start_step: np.ndarray  # int64 [n_notes] 16th-note step within the piece
    end_step: np.ndarray  # int64 [n_notes] > start_step
    start_seconds: np.ndarray  # float64 [n_notes] breaks ties in the melody extractor's sort
    in_16_step_bars: np.ndarray  # bool [n_notes] the piece's time signature has 16 steps per bar


def _quantize_in_pieces(midi: _Midi, notes: _Notes) -> _Quantized:
    """Cut at time changes (a note belongs to the piece it starts in and ends at the cut), then quantize.

    note_seq's ``quantize_note_sequence``: step = int(seconds * steps_per_second + 0.5) with
    steps_per_second = 4 * qpm / 60, and a note quantized to no length gets one step. The piece's
    time signature and tempo are the last ones at or before its start (4/4 when there is none).
    """
    tempo_map = _tempo_map(midi)
    start, end = _seconds(notes.start_tick, tempo_map), _seconds(notes.end_tick, tempo_map)
    first_track = midi.tracks[0]
    meter_ticks = np.array([tick for tick, _, _ in first_track.time_signatures], dtype=np.int64)
    meter_seconds = _seconds(meter_ticks, tempo_map)
    meters = [(float(t), (num, 2**log2)) for t, (_, num, log2) in zip(meter_seconds, first_track.time_signatures)]
    tempos = [(float(t), float(qpm)) for t, qpm in zip(tempo_map.first_seconds, tempo_map.qpm)]
    cuts = _split_times(float(end.max()), meters, tempos)
    pieces = cuts[:-1]
    qpm = np.array([_value_at(cut, tempos, DEFAULT_QPM) for cut in pieces])
    piece_meters = [_value_at(cut, meters, (4, 4)) for cut in pieces]
    steps_per_bar = [STEPS_PER_QUARTER * (4.0 / den * num) for num, den in piece_meters]  # as note_seq computes it
    cuts_array = np.array(cuts)
    piece = np.searchsorted(cuts_array, start, side="right") - 1
    steps_per_second = (STEPS_PER_QUARTER * qpm / 60.0)[piece]
    start_step = ((start - cuts_array[piece]) * steps_per_second + 0.5).astype(np.int64)
    end_seconds = np.minimum(end, cuts_array[piece + 1]) - cuts_array[piece]
    end_step = (end_seconds * steps_per_second + 0.5).astype(np.int64)
    end_step = np.where(end_step == start_step, start_step + 1, end_step)
    in_16_step_bars = (np.array(steps_per_bar) == STEPS_PER_BAR)[piece]
    return _Quantized(piece, start_step, end_step, start, in_16_step_bars)


@dataclass(frozen=True)
class _Melodies:
    """Melodies as token runs laid end to end."""

    tokens: np.ndarray  # uint8 [sum(lengths)]
    starts: np.ndarray  # int64 [n_melodies] offset of each melody in ``tokens``
    lengths: np.ndarray  # int64 [n_melodies] steps, whole bars
    instrument: np.ndarray  # int64 [n_melodies] (track * 16 + channel) * 128 + program
    piece: np.ndarray  # int64 [n_melodies] piece between time changes
    origin: np.ndarray  # int64 [n_melodies] step of the piece where the melody starts (a bar line)


def _melodies(notes: _Notes, quantized: _Quantized, kept: np.ndarray, max_steps: int) -> _Melodies:
    """Magenta's ``extract_melodies`` (cat-mel_2bar settings) on every (piece, instrument), vectorized.

    Once only the first note of each onset is left (``_onset_leaders``), every note enters the
    melody and cuts the one before, unless it starts a bar (16 steps) or more after the previous
    one ended: then it starts the next melody. A melody starts at the bar of its first note, ends
    at its last note's end rounded up to a bar (pad_end), and keeps at most ``max_steps`` steps
    (max_steps_truncate); the next melody is searched from the untruncated end, so the notes cut
    off are lost, as in Magenta. ``kept``: bool [n_notes], the notes the converter keeps.
    """
    group, start, end, pitch, instrument, piece = _onset_leaders(notes, quantized, kept)
    new_melody = np.r_[True, (group[1:] != group[:-1]) | (start[1:] - end[:-1] >= GAP_STEPS)]
    melody = np.cumsum(new_melody) - 1
    first = np.flatnonzero(new_melody)
    last = np.r_[first[1:] - 1, len(start) - 1]
    origin = start[first] - start[first] % STEPS_PER_BAR
    lengths = np.minimum(-((origin - end[last]) // STEPS_PER_BAR) * STEPS_PER_BAR, max_steps)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    start, end, length = start - origin[melody], end - origin[melody], lengths[melody]
    no_next = np.iinfo(np.int64).max
    next_start = np.r_[np.where(new_melody[1:], no_next, start[1:]), no_next]
    tokens = np.zeros(int(lengths.sum()), dtype=TOKEN_DTYPE)
    onset = start < length
    tokens[(starts[melody] + start)[onset]] = pitch[onset] - MIN_PITCH + FIRST_PITCH_TOKEN
    note_off = (end < next_start) & (end < length)  # a note cut by the next one has no NOTE_OFF
    tokens[(starts[melody] + end)[note_off]] = NOTE_OFF
    return _Melodies(tokens, starts, lengths, instrument[first], piece[first], origin)


def _onset_leaders(
    notes: _Notes, quantized: _Quantized, kept: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(group, start step, end step, pitch, instrument key, piece), int64 [n_leaders],
    of the notes that lead their onset.

    A group is a (piece, instrument). ``Melody.from_quantized_sequence`` sorts an instrument's
    notes by (start step, -pitch), stably after the piece's sort by start time, and skips a note
    on the onset of the one before it (ignore_polyphonic_notes): the highest note wins, and of
    equal ones the earliest in seconds.
    """
    instrument_key = ((notes.track * 16 + notes.channel) * 128 + notes.program)[kept]
    _, instrument = np.unique(instrument_key, return_inverse=True)
    piece = quantized.piece[kept]
    group = piece * (instrument.max() + 1) + instrument
    start, end, pitch = quantized.start_step[kept], quantized.end_step[kept], notes.pitch[kept]
    order = np.lexsort((quantized.start_seconds[kept], -pitch, start, group))
    group, start, end, pitch = group[order], start[order], end[order], pitch[order]
    instrument_key, piece = instrument_key[order], piece[order]
    leads = np.r_[True, (group[1:] != group[:-1]) | (start[1:] != start[:-1])]
    return group[leads], start[leads], end[leads], pitch[leads], instrument_key[leads], piece[leads]


def _unique_windows(melodies: _Melodies, window_steps: int) -> np.ndarray:
    """uint8 [n_unique, window_steps] windows at every bar of every melody, deduplicated."""
    return np.unique(_windows_at_bars(melodies.tokens, melodies.starts, melodies.lengths, window_steps), axis=0)


def _windows_at_bars(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray, window_steps: int) -> np.ndarray:
    """uint8 [n_windows, window_steps] windows at every bar of every melody laid end to end in ``tokens``, in order.

    As Magenta's converter slices a ``Melody``: the slice is a new Melody, whose NOTE_OFFs before
    its first note-on become NO_EVENT.
    """
    counts = np.maximum((lengths - window_steps) // STEPS_PER_BAR + 1, 0)
    nth = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    window_starts = np.repeat(starts, counts) + STEPS_PER_BAR * nth
    windows = tokens[window_starts[:, None] + np.arange(window_steps)]  # (W, window_steps)
    before_first_note = np.cumsum(windows >= FIRST_PITCH_TOKEN, axis=1) == 0
    windows[before_first_note & (windows == NOTE_OFF)] = NO_EVENT
    return windows
