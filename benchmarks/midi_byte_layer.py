"""symusic as the byte layer under midi_melodies: does it read the notes the hand reader reads, and how fast?

    .venv/bin/python -m pip install symusic==0.6.0   # not a dependency: only for this measurement
    .venv/bin/python benchmarks/midi_byte_layer.py [--songs 100] [--random-files 300]

Prints, asserts nothing. The hand reader matches note_seq (tests/test_midi_melodies.py), so a
note that symusic reads otherwise is a window that would differ from Magenta's:

1. the hand-made byte cases of the tests (``RAW_FILES``): read or refused alike, with the same notes;
2. random files from the tests' hypothesis strategy (overlaps, zero-length notes, program changes);
3. the benchmark's pop songs (``benchmarks/dataset.py``), and files/s of each byte layer (bytes to
   paired notes) and of the whole hand-read pipeline, one process.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1] / "tests")]
import dataset  # noqa: E402  benchmarks/dataset.py: the speed benchmark's songs
import test_midi_melodies  # noqa: E402  the agreement tests' files

from musicvae_lib import midi_melodies  # noqa: E402

try:
    from symusic import Score
except ImportError:
    sys.exit("symusic is not installed: .venv/bin/python -m pip install symusic==0.6.0")

NoteKey = tuple[int, int, int, int, bool]  # start tick, end tick, pitch, program, drum


def hand_notes(data: bytes) -> Counter[NoteKey] | None:
    """The notes pretty_midi (and so note_seq) reads, by the hand reader; None where it refuses the file."""
    try:
        notes = midi_melodies._pretty_midi_notes(midi_melodies._read_midi(data))
    except midi_melodies._UnreadableMidi:
        return None
    drum = notes.channel == midi_melodies.DRUM_CHANNEL
    return Counter(zip(*(a.tolist() for a in (notes.start_tick, notes.end_tick, notes.pitch, notes.program, drum))))


def symusic_notes(data: bytes) -> Counter[NoteKey] | None:
    try:
        score = Score.from_midi(data)
    except Exception:  # symusic raises RuntimeError and others on bad files
        return None
    return Counter(
        (note.time, note.time + note.duration, note.pitch, track.program, track.is_drum)
        for track in score.tracks
        for note in track.notes
    )


def random_files(n: int) -> list[bytes]:
    files = []

    @settings(max_examples=n, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(test_midi_melodies.small_midi_files())
    def draw(midi):
        buffer = io.BytesIO()
        midi.save(file=buffer)
        files.append(buffer.getvalue())

    draw()
    return files


def files_per_second(function, items) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for item in items:
            function(item)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=100)
    parser.add_argument("--random-files", type=int, default=300)
    args = parser.parse_args()

    cases = test_midi_melodies.RAW_FILES
    differ = [name for name, data in cases.items() if hand_notes(data) != symusic_notes(data)]
    print(f"hand-made byte cases: {len(cases) - len(differ)} of {len(cases)} agree; differ: {', '.join(differ)}")
    drawn = random_files(args.random_files)
    agree = sum(hand_notes(data) == symusic_notes(data) for data in drawn)
    print(f"random files of the tests' strategy: {agree} of {len(drawn)} agree")

    with tempfile.TemporaryDirectory() as scratch:
        rng = np.random.default_rng(0)
        paths = [Path(scratch) / f"song_{index:04d}.mid" for index in range(args.songs)]
        for path in paths:
            dataset.write_song(path, rng)
        songs = [path.read_bytes() for path in paths]
        agree = sum(hand_notes(data) == symusic_notes(data) for data in songs)
        print(f"benchmark songs: {agree} of {len(songs)} agree")
        print(f"hand reader, bytes to notes: {files_per_second(hand_notes, songs):.0f} files/s")
        print(f"symusic, bytes to a Score (notes paired): {files_per_second(Score.from_midi, songs):.0f} files/s")
        whole = files_per_second(midi_melodies.melody_windows_from_midi, paths)
        print(f"whole pipeline with the hand reader (windows): {whole:.0f} files/s")


if __name__ == "__main__":
    main()
