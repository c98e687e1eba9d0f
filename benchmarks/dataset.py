"""How fast the dataset is built: prints figures, asserts nothing.

    .venv/bin/python benchmarks/dataset.py [--processes N] [--midi-files 300] [--skip-folk]

1. cold build of the default folk corpus (all five collections, a fresh cache), wall time;
2. reload of the same from the cache;
3. the MIDI-folder path on a generated folder of multi-track songs: files/s and windows/s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pretty_midi

from musicvae_lib import data


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def write_song(path: Path, rng: np.random.Generator, minutes: float = 3.0) -> None:
    """A pop-song-like MIDI file: melody, bass, chords and drums at a random tempo, some rests."""
    tempo = float(rng.integers(80, 160))
    song = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    beat = 60.0 / tempo
    n_beats = int(minutes * 60 / beat)
    parts = {"melody": (0, 60, 84, 0.5), "bass": (33, 28, 48, 1.0), "chords": (4, 48, 72, 2.0)}
    for name, (program, low, high, length_beats) in parts.items():
        instrument = pretty_midi.Instrument(program=program, name=name)
        time_beats = 0.0
        while time_beats < n_beats:
            duration = length_beats * float(rng.choice([0.5, 1, 1, 2]))
            if rng.random() > 0.15:  # some rests
                pitches = rng.integers(low, high, size=3 if name == "chords" else 1)
                for pitch in pitches:
                    instrument.notes.append(
                        pretty_midi.Note(90, int(pitch), time_beats * beat, (time_beats + duration) * beat)
                    )
            time_beats += duration
        song.instruments.append(instrument)
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
    drums.notes = [pretty_midi.Note(100, 36 + (i % 2) * 2, i * beat, i * beat + 0.1) for i in range(n_beats)]
    song.instruments.append(drums)
    song.write(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=os.cpu_count())
    parser.add_argument("--midi-files", type=int, default=300)
    parser.add_argument("--skip-folk", action="store_true", help="only the MIDI-folder figures")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, processes: {args.processes}")

    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "cache"
        if not args.skip_folk:
            windows, cold = timed(lambda: data.folk_corpus_windows(processes=args.processes, cache_dir=cache))
            _, warm = timed(lambda: data.folk_corpus_windows(processes=args.processes, cache_dir=cache))
            print(
                f"folk corpus cold build: {cold:.1f} s wall ({len(windows.tunes):,} tunes, "
                f"{len(windows.windows):,} windows, {len(data.unique_rows(windows.windows)):,} distinct)"
            )
            print(f"folk corpus cached reload: {warm:.2f} s")

        folder = Path(scratch) / "midi"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for index in range(args.midi_files):
            write_song(folder / f"song_{index:04d}.mid", rng)
        size_mb = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
        midi, seconds = timed(lambda: data.midi_folder_windows(folder, processes=args.processes, cache_dir=cache))
        print(
            f"MIDI folder: {args.midi_files} files ({size_mb:.1f} MB, 3-minute 4-track songs) in {seconds:.2f} s: "
            f"{args.midi_files / seconds:.0f} files/s, {len(midi.windows) / seconds:,.0f} windows/s "
            f"({len(midi.windows):,} windows)"
        )


if __name__ == "__main__":
    main()
