import numpy as np
import pretty_midi
import pytest
import torch

from musicvae_lib import generate
from musicvae_lib.model import MusicVAE, preset
from musicvae_lib.representation import NO_EVENT, NOTE_OFF, Note, canonical_tokens, midi_to_tokens, notes_to_tokens


@pytest.fixture(scope="module")
def model() -> MusicVAE:
    torch.manual_seed(0)
    return MusicVAE(preset("tiny")).eval()


def test_sets_are_named_by_temperature_and_seeded_apart(model):
    sets = generate.sample_sets(model, 6, (0.0, 0.5, 1.5), seed=0)
    assert list(sets) == ["greedy", "T=0.5", "T=1.5"]
    assert not np.array_equal(sets["T=0.5"], sets["T=1.5"])


def test_sets_round_trip_through_their_file(model, tmp_path):
    sets = generate.sample_sets(model, 5, (0.5, 1.0), seed=2)
    loaded = generate.load_sets(generate.save_sets(sets, tmp_path / "nested" / "generated.npz"))
    assert list(loaded) == list(sets)
    assert all(np.array_equal(loaded[name], sets[name]) for name in sets)


def test_one_midi_file_per_melody_with_sorted_names(tmp_path):
    windows = np.stack([notes_to_tokens([Note(0, 8, 60 + k)], 32) for k in range(3)])
    paths = generate.write_melodies(windows, tmp_path, "T=1", program=73)
    assert [path.name for path in paths] == ["T=1_0001.mid", "T=1_0002.mid", "T=1_0003.mid"]
    for path, window in zip(paths, windows):
        midi = pretty_midi.PrettyMIDI(str(path))
        assert midi.instruments[0].program == 73
        assert np.array_equal(midi_to_tokens(midi, 32), canonical_tokens(window))


def test_in_a_row_puts_a_bar_of_rest_between_melodies():
    windows = np.stack([notes_to_tokens([Note(0, 32, 60)], 32), notes_to_tokens([Note(4, 8, 62)], 32)])
    row = generate.in_a_row(windows)
    assert row.shape == (96,)
    assert row[32] == NOTE_OFF and (row[33:48] == NO_EVENT).all()
    assert np.array_equal(row[48:80], windows[1])


def test_medley_holds_every_note_of_the_set_in_order(tmp_path):
    windows = np.stack([notes_to_tokens([Note(0, 32, 60)], 32), notes_to_tokens([Note(4, 8, 62)], 32)])
    midi = pretty_midi.PrettyMIDI(str(generate.write_medley(windows, tmp_path / "all.mid")))
    notes = midi.instruments[0].notes
    assert [note.pitch for note in notes] == [60, 62]
    # 1/8 s per step at 120 qpm: the first note ends with its window, the second starts 48 + 4 steps in
    assert [notes[0].end, notes[1].start] == pytest.approx([4.0, 6.5])


def test_names_of_sequences_and_files():
    assert generate.sequence_title("T=1", 0) == "T=1, Sequence Nr. 1"
    assert generate.file_stem("T=0.5") == "T0.5" and generate.file_stem("greedy") == "greedy"
