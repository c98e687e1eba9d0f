import json

import numpy as np
import pandas as pd
import pytest

from musicvae_lib import data
from musicvae_lib.representation import NOTE_OFF, pitch_to_token

A4, B4, C5, G4 = 69, 71, 72, 67

HAND_BUILT = """X:7
T:Hand built
M:4/4
L:1/8
K:C
C2 | C2E2 G2c2 | (3cBA G2 z4 | "Am"[CEA]2 {g}A2 A4- | A2B2 c4 |
"""


def windows_of(abc: str, bars: int = 2) -> data.TuneResult:
    (tune,) = data.split_abc_tunes(abc, "test", "test.abc")
    return data.tune_windows(tune, bars)


def test_split_abc_tunes_reads_number_title_and_every_meter():
    text = "% header comment\n" + HAND_BUILT + "\nX:8\nT:Second\nM:C|\nK:G\nG8|[M:3/4]G6|\n"
    first, second = data.split_abc_tunes(text, "test", "test.abc")
    assert (first.number, first.title, first.meters) == ("7", "Hand built", ("4/4",))
    assert (second.number, second.meters) == ("8", ("2/2", "3/4"))
    assert data.has_accepted_meter(second)


def test_hand_built_tune_gives_the_one_clean_window():
    # bar 0 is a pickup; bars 1-2 and 2-3 hold a triplet; bars 3-4: chord (top note A), grace note
    # dropped, chord symbol dropped, A tied across the bar line into one note.
    result = windows_of(HAND_BUILT)
    expected = np.zeros(32, np.uint8)
    expected[[0, 4, 8, 20, 24]] = [pitch_to_token(p) for p in (A4, A4, A4, B4, C5)]
    assert result.skip_reason is None
    np.testing.assert_array_equal(result.windows, [expected])
    assert result.bar_index.tolist() == [3]
    assert result.window_drops == {data.DROP_OFF_GRID: 2}
    assert result.meter == "4/4"


def test_rests_give_note_off_and_a_silent_window_is_dropped():
    result = windows_of("X:1\nM:4/4\nL:1/4\nK:C\nG z z z | z4 | z4 | G4 |\n")
    # windows: bars 0-1 (G then rests), 1-2 (silence: no onset), 2-3 (G at bar 2's step 0)
    assert result.window_drops == {data.DROP_NO_ONSET: 1}
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
    assert windows_of("X:1\nM:4/4\nL:1/4\nK:C\nC D | E F G A | B |\n").skip_reason == data.SKIP_NO_BARS


def test_unparseable_tune_is_skipped_not_raised():
    bad = "X:1\nT:bad\nM:4/4\nK:C\n|]]]:::[[[ &&& %%%% \x00\x01 K:ZZ ((((( \n"
    assert windows_of(bad).skip_reason == data.SKIP_PARSE


def test_unknown_collection_names_the_valid_ones():
    with pytest.raises(ValueError, match="essenFolksong"):
        data.collection_files("beatles")


@pytest.fixture(scope="module")
def misc_folk(tmp_path_factory):
    """The real miscFolk collection (45 tunes in 4/4-2/2), parsed in two worker processes."""
    cache = tmp_path_factory.mktemp("cache")
    return data.folk_corpus_windows(["miscFolk"], processes=2, cache_dir=cache), cache


def test_real_collection_gives_windows_tunes_and_reasoned_skips(misc_folk):
    window_set, _ = misc_folk
    assert window_set.windows.shape[1] == 32 and len(window_set.windows) > 300
    assert window_set.windows.max() < 90
    assert set(np.unique(window_set.tune_ids)) == set(range(len(window_set.tunes)))
    assert (window_set.tunes["n_windows"].sum()) == len(window_set.windows)
    assert window_set.skips.counts[data.SKIP_METER] > 50  # miscFolk is mostly 6/8 and 2/4
    assert all("X:" in example for example in window_set.skips.examples[data.SKIP_METER])
    assert "every" not in data.licence_notes(window_set)["miscFolk"]


def test_cache_reloads_the_same_windows(misc_folk):
    window_set, cache = misc_folk
    (cached_file,) = cache.glob("windows-*.npz")
    reloaded = data.folk_corpus_windows(["miscFolk"], processes=2, cache_dir=cache)
    np.testing.assert_array_equal(reloaded.windows, window_set.windows)
    pd.testing.assert_frame_equal(reloaded.tunes, window_set.tunes)
    assert reloaded.skips.counts == window_set.skips.counts
    assert cached_file.stat().st_mtime == next(cache.glob("windows-*.npz")).stat().st_mtime


def test_cache_key_depends_on_parameters_and_source():
    key = data.cache_key("abc", {"bars": 2})
    assert key != data.cache_key("abc", {"bars": 16}) and key != data.cache_key("abd", {"bars": 2})


def test_max_tunes_draws_a_seeded_sample(tmp_path):
    sample = data.folk_corpus_windows(["miscFolk"], max_tunes=5, seed=3, processes=1, cache_dir=tmp_path)
    again = data.folk_corpus_windows(["miscFolk"], max_tunes=5, seed=3, processes=1, cache_dir=tmp_path / "other")
    assert 0 < len(sample.tunes) <= 5
    eligible = [t for t in data.read_folk_tunes(["miscFolk"]) if data.has_accepted_meter(t)]
    assert sample.skips.counts[data.SKIP_NOT_DRAWN] == len(eligible) - 5
    np.testing.assert_array_equal(sample.windows, again.windows)


def toy_window_set(n_tunes=20, windows_per_tune=5, seed=0) -> data.WindowSet:
    rng = np.random.default_rng(seed)
    windows = rng.integers(0, 4, size=(n_tunes * windows_per_tune, 32)).astype(np.uint8)
    windows[::7] = windows[0]  # duplicates across tunes
    return data.WindowSet(
        windows=windows,
        tune_ids=np.repeat(np.arange(n_tunes, dtype=np.int32), windows_per_tune),
        bar_index=np.tile(np.arange(windows_per_tune, dtype=np.int32), n_tunes),
        tunes=pd.DataFrame({"collection": ["toy"] * n_tunes, "n_windows": [windows_per_tune] * n_tunes}),
        skips=data.SkipReport({"meter not 4/4 or 2/2": 3}, {"meter not 4/4 or 2/2": ["a", "b", "c"]}),
        window_drops={},
        source="folk",
        parameters={"collections": ["miscFolk"], "bars": 2},
        source_hash="toy",
    )


def test_splits_are_by_tune_deterministic_and_deduplicated():
    window_set = toy_window_set()
    splits = data.split_by_tune(window_set, (0.8, 0.1, 0.1), seed=1)
    tunes = [set(split.tune_ids.tolist()) for split in splits.values()]
    assert not (tunes[0] & tunes[1]) and not (tunes[0] & tunes[2]) and not (tunes[1] & tunes[2])
    assert [split.n_tunes for split in splits.values()] == [16, 2, 2]
    for split in splits.values():
        assert len(np.unique(split.windows, axis=0)) == len(split.windows)
    assert sum(len(s.windows) + s.n_duplicates_removed for s in splits.values()) == len(window_set.windows)
    again = data.split_by_tune(window_set, (0.8, 0.1, 0.1), seed=1)
    other = data.split_by_tune(window_set, (0.8, 0.1, 0.1), seed=2)
    np.testing.assert_array_equal(again["test"].windows, splits["test"].windows)
    assert data.dataset_hash(other) != data.dataset_hash(splits)


@pytest.mark.parametrize("fractions", [(0.8, 0.2), (0.9, 0.2, 0.1), (1.2, -0.1, -0.1)])
def test_bad_split_fractions_are_an_error(fractions):
    with pytest.raises(ValueError, match="split_fractions"):
        data.split_by_tune(toy_window_set(), fractions)


def test_shared_windows_counts_test_windows_seen_in_train():
    window_set = toy_window_set()
    splits = data.split_by_tune(window_set, seed=1)
    train = {w.tobytes() for w in splits["train"].windows}
    assert data.shared_windows(splits)["test"] == sum(w.tobytes() in train for w in splits["test"].windows)


def test_dataset_folder_round_trip(tmp_path):
    window_set = toy_window_set()
    splits = data.split_by_tune(window_set, seed=0)
    summary = data.dataset_summary(window_set, splits, (0.8, 0.1, 0.1), seed=0)
    data.write_dataset(tmp_path, window_set, splits, summary)
    np.testing.assert_array_equal(data.load_split(tmp_path, "valid"), splits["valid"].windows)
    loaded = data.load_summary(tmp_path)
    assert loaded["dataset_hash"] == data.dataset_hash(splits)
    assert loaded["n_skipped"] == 3 and loaded["licence_notes"]["miscFolk"].startswith("American")
    assert json.loads((tmp_path / "dataset" / "summary.json").read_text())["splits"]["train"]["tunes"] == 16
    collections = data.load_collections(tmp_path, "valid")
    by_tune = window_set.tunes["collection"]
    assert collections.tolist() == by_tune.loc[splits["valid"].tune_ids].tolist()
    assert len(collections) == len(splits["valid"].windows)


def test_missing_or_empty_midi_folder_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.midi_folder_windows(tmp_path / "nowhere", cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not midi")
    with pytest.raises(FileNotFoundError, match="empty.*no .mid"):
        data.midi_folder_windows(tmp_path / "empty", cache_dir=tmp_path)


def test_midi_folder_counts_bad_files_by_reason_with_their_paths(tmp_path):
    import pretty_midi

    folder = tmp_path / "midi"
    (folder / "nested").mkdir(parents=True)
    song = pretty_midi.PrettyMIDI(initial_tempo=120)
    melody = pretty_midi.Instrument(program=0)
    melody.notes = [pretty_midi.Note(90, 60 + step % 12, step * 0.25, step * 0.25 + 0.25) for step in range(64)]
    song.instruments.append(melody)
    song.write(str(folder / "nested" / "good.MID"))
    drums = pretty_midi.PrettyMIDI(initial_tempo=120)
    kit = pretty_midi.Instrument(program=0, is_drum=True)
    kit.notes = [pretty_midi.Note(100, 36, step * 0.5, step * 0.5 + 0.1) for step in range(16)]
    drums.instruments.append(kit)
    drums.write(str(folder / "drums.mid"))
    (folder / "empty.mid").write_bytes(b"")
    (folder / "readme.midi").write_text("this is not a MIDI file")
    (folder / "truncated.mid").write_bytes((folder / "nested" / "good.MID").read_bytes()[:40])

    window_set = data.midi_folder_windows(folder, processes=2, cache_dir=tmp_path / "cache")
    assert window_set.tunes["path"].tolist() == ["nested/good.MID"]
    assert len(window_set.windows) == 3  # 4 bars, hop one bar; unique within the file
    assert window_set.skips.counts == {
        "drums only": 1, "empty file": 1, "not a readable MIDI file": 2,
    }
    assert sorted(window_set.skips.examples["not a readable MIDI file"]) == ["readme.midi", "truncated.mid"]
