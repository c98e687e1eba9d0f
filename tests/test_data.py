import contextlib
import ctypes
import json
import os
import shutil

import numpy as np
import pandas as pd
import pretty_midi
import pytest

from musicvae_lib import data, folk_melodies, midi_melodies
from musicvae_lib.representation import NOTE_OFF, pitch_to_token


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
    assert window_set.skips.counts[folk_melodies.SKIP_METER] > 50  # miscFolk is mostly 6/8 and 2/4
    assert all("X:" in example for example in window_set.skips.examples[folk_melodies.SKIP_METER])
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
    eligible = [t for t in folk_melodies.read_folk_tunes(["miscFolk"]) if folk_melodies.has_accepted_meter(t)]
    assert sample.skips.counts[data.SKIP_NOT_DRAWN] == len(eligible) - 5
    np.testing.assert_array_equal(sample.windows, again.windows)


def test_every_part_and_repeats_as_played_add_distinct_windows(tmp_path):
    plain = data.folk_corpus_windows(["miscFolk"], bars=4, processes=2, cache_dir=tmp_path)
    richer = data.folk_corpus_windows(
        ["miscFolk"], bars=4, processes=2, cache_dir=tmp_path, all_parts=True, expand_repeats=True
    )
    assert richer.parameters["all_parts"] and richer.parameters["expand_repeats"] and not plain.parameters["all_parts"]
    assert len(data.unique_rows(richer.windows)) > len(data.unique_rows(plain.windows))
    assert len(richer.windows) > len(data.unique_rows(richer.windows))  # repeats as played: windows heard twice
    assert len(list(tmp_path.glob("windows-*.npz"))) == 2  # each reading cached under its own key


def toy_window_set(n_tunes=20, windows_per_tune=5, seed=0) -> data.WindowSet:
    rng = np.random.default_rng(seed)
    windows = rng.integers(0, 4, size=(n_tunes * windows_per_tune, 32)).astype(np.uint8)
    windows[::7] = windows[0]  # duplicates across tunes
    return data.WindowSet(
        windows=windows,
        tune_ids=np.repeat(np.arange(n_tunes, dtype=np.int32), windows_per_tune),
        bar_index=np.tile(np.arange(windows_per_tune, dtype=np.int32), n_tunes),
        tunes=pd.DataFrame(
            {"collection": ["toy"] * n_tunes, "meter": "4/4", "n_windows": [windows_per_tune] * n_tunes}
        ),
        skips=data.SkipReport({"meter not 4/4 or 2/2": 3}, {"meter not 4/4 or 2/2": ["a", "b", "c"]}),
        window_drops={},
        source="folk",
        parameters={"collections": ["miscFolk"], "bars": 2},
        source_hash="toy",
    )


def test_windows_per_collection_counts_a_window_heard_twice_once():
    window_set = toy_window_set()
    table = data.windows_per_collection(window_set).set_index("collection")
    distinct = len(np.unique(window_set.windows, axis=0))
    assert table.loc["all", "windows"] == table.loc["toy", "windows"] == 100
    assert table.loc["all", "distinct windows"] == table.loc["toy", "distinct windows"] == distinct < 100


def test_transpose_windows_keeps_pitches_on_the_piano_and_leaves_rests_alone():
    rng = np.random.default_rng(0)
    windows = np.zeros((300, 32), np.uint8)
    windows[:, 0:32:4] = rng.integers(2, 90, (300, 8))
    windows[:, 2:32:4] = NOTE_OFF
    windows[0, 0:32:4] = pitch_to_token(108)  # top key: may only go down
    windows[1, 0:32:4] = pitch_to_token(21)  # bottom key: may only go up
    windows[2] = 0  # no note at all
    shifted = data.transpose_windows(windows, 3, rng)
    is_pitch = windows >= 2
    assert shifted.dtype == np.uint8 and shifted.shape == windows.shape
    np.testing.assert_array_equal(shifted[~is_pitch], windows[~is_pitch])
    assert shifted[is_pitch].min() >= 2 and shifted[is_pitch].max() <= 89
    shifts = shifted.astype(int) - windows.astype(int)
    per_window = shifts[:, 0]
    np.testing.assert_array_equal(shifts, is_pitch * per_window[:, None])  # one shift per window
    assert set(per_window[3:].tolist()) == set(range(-3, 4))
    assert per_window[0] <= 0 and per_window[1] >= 0


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
    assert loaded["per_collection"] == {
        "toy": {"tunes": 20, "windows": 100, "distinct_windows": loaded["n_unique_windows"]}
    }
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


def write_melody(path, numerator: int = 4, transpose: int = 0) -> None:
    """Four bars of piano 16ths (three in 3/4) at 120 qpm, in ``numerator``/4, ``transpose`` semitones up."""
    song = pretty_midi.PrettyMIDI(initial_tempo=120)
    song.time_signature_changes.append(pretty_midi.TimeSignature(numerator, 4, 0))
    melody = pretty_midi.Instrument(program=0)
    melody.notes = [
        pretty_midi.Note(90, 60 + transpose + step % 12, step * 0.25, step * 0.25 + 0.25) for step in range(64)
    ]
    song.instruments.append(melody)
    song.write(str(path))


def write_drums(path) -> None:
    drums = pretty_midi.PrettyMIDI(initial_tempo=120)
    kit = pretty_midi.Instrument(program=0, is_drum=True)
    kit.notes = [pretty_midi.Note(100, 36, step * 0.5, step * 0.5 + 0.1) for step in range(16)]
    drums.instruments.append(kit)
    drums.write(str(path))


def test_midi_folder_counts_bad_files_by_reason_with_their_paths(tmp_path):
    folder = tmp_path / "midi"
    (folder / "nested").mkdir(parents=True)
    write_melody(folder / "nested" / "good.MID")
    write_drums(folder / "drums.mid")
    (folder / "empty.mid").write_bytes(b"")
    (folder / "readme.midi").write_text("this is not a MIDI file")
    (folder / "truncated.mid").write_bytes((folder / "nested" / "good.MID").read_bytes()[:40])

    window_set = data.midi_folder_windows(folder, processes=2, cache_dir=tmp_path / "cache")
    assert window_set.tunes["path"].tolist() == ["nested/good.MID"]
    assert len(window_set.windows) == 3  # 4 bars, hop one bar; unique within the file
    assert window_set.skips.counts == {
        "drums only": 1,
        "empty file": 1,
        "not a readable MIDI file": 2,
    }
    assert sorted(window_set.skips.examples["not a readable MIDI file"]) == ["readme.midi", "truncated.mid"]


def test_a_folder_of_only_bad_files_is_an_error_that_counts_them_by_reason(tmp_path):
    folder = tmp_path / "midi"
    folder.mkdir()
    write_melody(folder / "waltz.mid", numerator=3)
    (folder / "corrupt.mid").write_bytes(bytes(range(256)))
    (folder / "empty.mid").write_bytes(b"")
    with pytest.raises(data.NoWindowsError) as raised:
        data.midi_folder_windows(folder, processes=1, cache_dir=tmp_path / "cache")
    message = str(raised.value)
    assert str(folder) in message and "every one of the 3 files was skipped" in message
    for reason, example in [
        (midi_melodies.SKIP_NO_16_STEP_BARS, "waltz.mid"),
        (midi_melodies.SKIP_CORRUPT, "corrupt.mid"),
        (midi_melodies.SKIP_EMPTY_FILE, "empty.mid"),
    ]:
        assert f"{reason}: 1 (e.g. {example})" in message
    assert not list((tmp_path / "cache").glob("*.npz"))  # nothing cached: fixing the folder is seen


def test_a_linked_folder_is_searched_and_a_link_loop_ends(tmp_path):
    folder, elsewhere = tmp_path / "midi", tmp_path / "elsewhere"
    (folder / "own").mkdir(parents=True)
    elsewhere.mkdir()
    write_melody(folder / "own" / "a.mid")
    write_melody(elsewhere / "b.mid", transpose=2)
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    (folder / "own" / "loop").symlink_to(folder, target_is_directory=True)
    (elsewhere / "back").symlink_to(elsewhere, target_is_directory=True)
    scan = data.scan_midi_folder(folder)
    assert [file.relative_to(folder).as_posix() for file in scan.files] == ["linked/b.mid", "own/a.mid"]
    assert scan.skips == []
    window_set = data.midi_folder_windows(folder, processes=1, cache_dir=tmp_path / "cache")
    assert window_set.tunes["path"].tolist() == ["linked/b.mid", "own/a.mid"]


def test_a_folder_reached_by_several_links_is_named_by_the_first_in_sorted_order(tmp_path):
    # os.walk lists sub-folders in the file system's order; the scan must not depend on it
    folder = tmp_path / "midi"
    (folder / "m_real").mkdir(parents=True)
    write_melody(folder / "m_real" / "a.mid")
    for name in ("z_link", "b_link", "y_link", "c_link"):  # created out of order
        (folder / name).symlink_to(folder / "m_real", target_is_directory=True)
    scan = data.scan_midi_folder(folder)
    assert [file.relative_to(folder).as_posix() for file in scan.files] == ["b_link/a.mid"]


class _CapabilityHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapabilitySet(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


CAPABILITY_VERSION_3 = 0x20080522  # linux/capability.h: two 32-bit sets per field
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2  # what lets root read and list whatever the modes say


@contextlib.contextmanager
def file_modes_enforced():
    """File modes hold for this thread even for root (CI runs the tests as root), given back after.

    Root keeps its user id (so the tests' own 0700 folders stay open to it) and drops, from its
    effective set only, the two capabilities that override read and search permissions; the
    permitted set keeps them, so they can be raised again. Other users need nothing.
    """
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header, sets = _CapabilityHeader(CAPABILITY_VERSION_3, 0), (_CapabilitySet * 2)()
    if libc.capget(ctypes.byref(header), sets) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    saved = sets[0].effective
    sets[0].effective &= ~((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), sets) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    try:
        yield
    finally:
        sets[0].effective = saved
        if libc.capset(ctypes.byref(header), sets) != 0:
            raise OSError(ctypes.get_errno(), "capset failed: the capabilities were not given back")


def test_an_unreadable_file_and_an_unlistable_folder_are_skips_with_their_paths(tmp_path):
    folder = tmp_path / "midi"
    (folder / "closed").mkdir(parents=True)
    write_melody(folder / "good.mid")
    write_melody(folder / "locked.mid", transpose=1)
    write_melody(folder / "closed" / "inside.mid", transpose=2)
    (folder / "locked.mid").chmod(0)
    (folder / "closed").chmod(0)
    try:
        with file_modes_enforced():
            with pytest.raises(PermissionError):  # the test's premise: these really cannot be read
                (folder / "locked.mid").read_bytes()
            window_set = data.midi_folder_windows(folder, processes=1, cache_dir=tmp_path / "cache")
    finally:
        (folder / "locked.mid").chmod(0o644)
        (folder / "closed").chmod(0o755)
    assert window_set.tunes["path"].tolist() == ["good.mid"]
    assert window_set.skips.counts == {data.SKIP_NO_READ_PERMISSION: 1, data.SKIP_FOLDER_NOT_LISTED: 1}
    assert window_set.skips.examples[data.SKIP_NO_READ_PERMISSION] == ["locked.mid"]
    assert window_set.skips.examples[data.SKIP_FOLDER_NOT_LISTED] == ["closed"]
    assert data.SKIP_NO_READ_PERMISSION in window_set.skips.table()["reason"].tolist()  # notebook 01's skip table


def test_a_file_locked_after_the_scan_is_a_skip_not_a_crash_of_the_worker(tmp_path):
    write_melody(tmp_path / "locked.mid")
    (tmp_path / "locked.mid").chmod(0)
    try:
        with file_modes_enforced():
            result = data._MidiWindows(bars=2)(tmp_path / "locked.mid")
    finally:
        (tmp_path / "locked.mid").chmod(0o644)
    assert result.skip_reason == data.SKIP_NO_READ_PERMISSION and result.windows.shape == (0, 32)


def test_a_midi_folder_that_cannot_be_listed_is_an_error_naming_it(tmp_path):
    folder = tmp_path / "midi"
    folder.mkdir()
    write_melody(folder / "good.mid")
    folder.chmod(0)
    try:
        with file_modes_enforced(), pytest.raises(PermissionError, match=f"MIDI folder {folder} cannot be listed"):
            data.midi_folder_windows(folder, processes=1, cache_dir=tmp_path / "cache")
    finally:
        folder.chmod(0o755)


def test_broken_and_looping_links_and_a_pipe_named_mid_are_skips_with_their_paths(tmp_path):
    folder = tmp_path / "midi"
    folder.mkdir()
    write_melody(folder / "good.mid")
    (folder / "loop.mid").symlink_to(folder / "loop.mid")
    (folder / "broken.mid").symlink_to(folder / "gone.mid")
    os.mkfifo(folder / "pipe.mid")  # reading it would wait for a writer for ever
    window_set = data.midi_folder_windows(folder, processes=1, cache_dir=tmp_path / "cache")
    assert window_set.tunes["path"].tolist() == ["good.mid"]
    assert window_set.skips.examples == {
        data.SKIP_LINK_LOOP: ["loop.mid"],
        data.SKIP_BROKEN_LINK: ["broken.mid"],
        data.SKIP_NOT_A_FILE: ["pipe.mid"],
    }
    assert set(window_set.skips.counts.values()) == {1}


def test_a_new_broken_link_is_in_the_skip_table_of_an_otherwise_cached_folder(tmp_path):
    folder = tmp_path / "midi"
    folder.mkdir()
    write_melody(folder / "good.mid")
    clean = data.midi_folder_windows(folder, processes=1, cache_dir=tmp_path / "cache")
    root = folder.resolve()
    assert clean.source_hash == data.files_hash([root / "good.mid"], root)  # a clean folder keeps its hash
    (folder / "broken.mid").symlink_to(folder / "gone.mid")
    again = data.midi_folder_windows(folder, processes=1, cache_dir=tmp_path / "cache")
    assert again.source_hash != clean.source_hash and again.skips.counts == {data.SKIP_BROKEN_LINK: 1}


def write_names_of_one_file(folder) -> list[str]:
    """Eight distinct melodies in ``folder``, and the first under three more names; the extra names."""
    folder.mkdir()
    for number in range(8):
        write_melody(folder / f"tune{number}.mid", transpose=number)
    (folder / "tune0_link.mid").symlink_to(folder / "tune0.mid")
    os.link(folder / "tune0.mid", folder / "tune0_hard.mid")
    shutil.copyfile(folder / "tune0.mid", folder / "tune0_copy.mid")
    return ["tune0_copy.mid", "tune0_hard.mid", "tune0_link.mid"]


def test_one_file_under_several_names_is_one_tune_so_no_window_crosses_the_splits(tmp_path):
    folder = tmp_path / "midi"
    extra_names = write_names_of_one_file(folder)
    window_set = data.midi_folder_windows(folder, processes=1, cache_dir=tmp_path / "cache")
    assert window_set.tunes["path"].tolist() == [f"tune{number}.mid" for number in range(8)]
    assert window_set.skips.counts == {data.SKIP_SAME_FILE: 3}
    same = [f"{name} (same file as tune0.mid)" for name in extra_names]
    assert window_set.skips.examples[data.SKIP_SAME_FILE] == same
    for seed in range(5):
        splits = data.split_by_tune(window_set, (0.8, 0.1, 0.1), seed)
        assert data.shared_windows(splits) == {"valid": 0, "test": 0}


def test_a_source_too_small_for_every_split_is_an_error_with_the_counts(tmp_path):
    folder = tmp_path / "midi"
    folder.mkdir()
    write_melody(folder / "one.mid")
    write_melody(folder / "two.mid", transpose=1)
    write_drums(folder / "drums.mid")
    window_set = data.midi_folder_windows(folder, processes=1, cache_dir=tmp_path / "cache")
    with pytest.raises(data.EmptySplitError) as raised:
        data.split_by_tune(window_set, (0.8, 0.1, 0.1), seed=0)
    message = str(raised.value)
    assert "split would be empty" in message or "splits would be empty" in message
    assert str(folder.resolve()) in message and "gave 2 usable files" in message and "at least 8 so" in message
    assert "drums only: 1 (e.g. drums.mid)" in message  # notebook 01 stops before its skip table
    with pytest.raises(data.EmptySplitError, match="gives a share of 0"):
        data.split_by_tune(toy_window_set(), (0.9, 0.1, 0.0))


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.9, 0.05, 0.05), (0.5, 0.25, 0.25), (0.7, 0.2, 0.1)])
def test_tunes_needed_is_the_count_from_which_on_every_split_holds_a_tune(fractions):
    needed = data.tunes_needed(fractions)
    filled = [np.bincount(data.assign_tunes(n, fractions, 0), minlength=3).all() for n in range(1, 200)]
    assert not filled[needed - 2] and all(filled[needed - 1 :])
    assert data.tunes_needed((0.8, 0.2, 0.0)) is None


def test_remove_outputs_deletes_what_an_earlier_run_wrote(tmp_path):
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "train.npy").write_bytes(b"old")
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "01_splits.csv").write_text("old")
    (tmp_path / "tables" / "03_accuracy.csv").write_text("other chapter")
    removed = data.remove_outputs(tmp_path, ["dataset", "tables/01_*", "figures/01_*"])
    assert removed == [tmp_path / "dataset", tmp_path / "tables" / "01_splits.csv"]
    assert not (tmp_path / "dataset").exists() and (tmp_path / "tables" / "03_accuracy.csv").exists()


def test_progress_off_a_terminal_is_one_final_line(capsys):
    assert list(data.with_progress(iter(range(5)), 5, "reading things")) == [0, 1, 2, 3, 4]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("reading things: 5 in ")
