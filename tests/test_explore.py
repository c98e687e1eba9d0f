"""The explorer's callbacks (notebook 08) on the committed reference model, and the widgets wired to them."""

import ast
import io
import json
import sys
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import numpy as np
import pretty_midi
import pytest
import torch

from musicvae_lib import explore, features, inference, latent
from musicvae_lib.representation import (
    NOTE_OFF,
    pitch_to_token,
    tokens_to_midi,
    tokens_to_notes,
    write_midi,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_run import make_run  # noqa: E402

UPLOADED = datetime(2026, 1, 1, tzinfo=timezone.utc)  # FileUpload serialises a datetime
REFERENCE_RUN = Path(__file__).resolve().parent.parent / "results" / "default"


@pytest.fixture(scope="module")
def explorer(one_thread) -> explore.Explorer:
    return explore.load_explorer(REFERENCE_RUN, attribute_windows=500, seed=0)


def quarter_notes(pitches: list[int]) -> np.ndarray:
    """A 32-step melody of quarter notes (4 steps each) at the given MIDI pitches, NOTE_OFF after the last."""
    window = np.zeros(32, np.uint8)
    for k, pitch in enumerate(pitches):
        window[4 * k] = pitch_to_token(pitch)
    if 4 * len(pitches) < 32:
        window[4 * len(pitches)] = NOTE_OFF
    return window


# --- setting up and picking melodies ---------------------------------------------------------------


def test_load_explorer_has_a_vector_per_attribute(explorer):
    assert tuple(explorer.vectors) == explore.EXPLORER_ATTRIBUTES
    assert all(v.shape == (explorer.model.config.z_size,) and np.linalg.norm(v) > 0 for v in explorer.vectors.values())
    assert explorer.test.shape[1] == 32


def test_load_explorer_is_deterministic(explorer):
    again = explore.load_explorer(REFERENCE_RUN, attribute_windows=500, seed=0)
    assert all(np.array_equal(explorer.vectors[name], again.vectors[name]) for name in explorer.vectors)


def test_test_melody_by_number_and_at_random(explorer):
    np.testing.assert_array_equal(explore.test_melody(explorer, 3), explorer.test[3])
    with pytest.raises(ValueError, match=r"`number` must lie in 0\.\."):
        explore.test_melody(explorer, len(explorer.test))
    draws = [explore.random_test_number(explorer, np.random.default_rng(5)) for _ in range(2)]
    assert draws[0] == draws[1] and 0 <= draws[0] < len(explorer.test)


def test_read_tune_reads_a_real_file_in_time_order(tmp_path):
    four_bars = np.concatenate(
        [quarter_notes([60, 62, 64, 65, 67, 69, 71, 72]), quarter_notes([72, 71, 69, 67, 65, 64, 62, 60])]
    )
    four_bars[31] = 0  # the first half's NOTE_OFF would cut the melody; the second half follows on
    path = write_midi(four_bars, tmp_path / "tune.mid")
    tune = explore.read_tune(path.read_bytes(), "tune.mid")
    assert len(tune.melodies) == 1 and explore.window_bars(tune.melodies[0]) == range(1, 4)  # bars 1-2, 2-3, 3-4
    np.testing.assert_array_equal(explore.tune_window(tune.melodies[0], 1), four_bars[:32])
    np.testing.assert_array_equal(explore.tune_window(tune.melodies[0], 3), four_bars[32:])
    with pytest.raises(ValueError, match=r"`bar` must lie in 1\.\.3"):
        explore.tune_window(tune.melodies[0], 4)


@pytest.mark.parametrize(
    ("content", "reason"), [(b"", "empty file"), (b"not a MIDI file at all", "not a readable MIDI file")]
)
def test_unreadable_midi_gives_the_data_chapters_skip_reason(content, reason):
    with pytest.raises(explore.UnreadableMidiError, match=f"bad.mid gives no melody: skipped, {reason}"):
        explore.read_tune(content, "bad.mid")


# --- from a choice to a melody ------------------------------------------------------------------


def test_latent_point_slerps_and_moves_along_vectors():
    z_a, z_b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    vectors = {"up": np.array([0.0, 0.5])}
    np.testing.assert_allclose(explore.latent_point(z_a, z_b, 0.0, vectors, {}), z_a)
    np.testing.assert_allclose(explore.latent_point(z_a, z_b, 1.0, vectors, {}), z_b, atol=1e-12)
    np.testing.assert_allclose(explore.latent_point(z_a, z_b, 0.5, vectors, {}), [np.sqrt(0.5)] * 2)  # on the circle
    np.testing.assert_allclose(explore.latent_point(z_a, z_b, 0.0, vectors, {"up": -2.0}), [1.0, -1.0])
    with pytest.raises(ValueError, match=r"`alpha` must lie in \[0, 1\]"):
        explore.latent_point(z_a, z_b, 1.5, vectors, {})
    with pytest.raises(ValueError, match=r"no attribute vector for \['down'\]"):
        explore.latent_point(z_a, z_b, 0.0, vectors, {"down": 1.0})


def test_decode_point_greedy_and_seeded(explorer):
    z = latent.prior_z(1, explorer.model.config.z_size, 0)[0]
    np.testing.assert_array_equal(
        explore.decode_point(explorer.model, z, 0.0, 0), inference.decode_latents(explorer.model, z[None])[0]
    )
    hot = [explore.decode_point(explorer.model, z, 1.5, seed) for seed in (1, 1, 2)]
    np.testing.assert_array_equal(hot[0], hot[1])
    assert not np.array_equal(hot[0], hot[2])
    with pytest.raises(ValueError, match="`temperature` must be >= 0"):
        explore.decode_point(explorer.model, z, -0.5, 0)


def test_unmoved_choice_is_the_reconstruction(explorer):
    decoded = explore.decode_choice(explorer, explore.Choice(explorer.test[0], explorer.test[1]))
    np.testing.assert_array_equal(decoded.tokens, inference.reconstruct_melodies(explorer.model, explorer.test[:1])[0])
    assert list(decoded.attributes.index) == list(explore.EXPLORER_ATTRIBUTES)
    assert (decoded.attributes["change"].fillna(0) == 0).all()
    at_b = explore.decode_choice(explorer, explore.Choice(explorer.test[0], explorer.test[1], alpha=1.0))
    np.testing.assert_array_equal(at_b.tokens, inference.reconstruct_melodies(explorer.model, explorer.test[1:2])[0])


def test_note_density_vector_adds_notes(explorer):
    """The vector does what its name says, on average over test melodies (as notebook 07 measures it)."""
    changes = []
    for number in range(12):
        choice = explore.Choice(explorer.test[number], explorer.test[number], ks={"note_density": 2.0})
        table = explore.decode_choice(explorer, choice).attributes
        changes.append(table.loc["note_density", "change"])
    assert np.nanmean(changes) > 0.5  # notes per bar


def test_measured_attributes_of_hand_built_melodies():
    unmoved = quarter_notes([60, 62, 64, 65])  # 4 notes in 2 bars, steps of 2,2,1 semitones
    result = quarter_notes([60, 67, 60, 67, 60, 67, 60, 67])  # 8 notes, leaps of 7, range 7
    table = explore.measured_attributes(unmoved, result)
    assert table.loc["note_density", "unmoved"] == 2.0 and table.loc["note_density", "result"] == 4.0
    assert table.loc["mean_abs_interval", "unmoved"] == pytest.approx(5 / 3)
    assert table.loc["mean_abs_interval", "change"] == pytest.approx(7 - 5 / 3)
    assert table.loc["pitch_range", "result"] == 7.0 and table.loc["c_diatonic_share", "result"] == 1.0
    assert table.loc["syncopation_8th", "result"] == 0.0
    empty = explore.measured_attributes(np.zeros(32, np.uint8), unmoved)
    assert np.isnan(empty.loc["pitch_range", "unmoved"]) and np.isnan(empty.loc["pitch_range", "change"])


def test_melody_html_shows_notation_roll_audio_and_attributes(explorer):
    decoded = explore.decode_choice(explorer, explore.Choice(explorer.test[2], explorer.test[3]))
    page = explore.melody_html(decoded, "Test melody Nr. 2")
    # notation, piano roll
    assert page.count("<img") == 1 and page.count("<svg") == 1 and "<audio" in page and "<table" in page
    assert page.count('class="note"') == len(tokens_to_notes(decoded.tokens))  # one rectangle per note
    assert features.FEATURE_UNITS["note_density"] in page and "Test melody Nr. 2" in page


def test_keep_melody_appends_to_one_midi_file(tmp_path):
    first, second = quarter_notes([60, 62, 64]), quarter_notes([72, 71])
    path, count = explore.keep_melody(tmp_path, first)
    assert count == 1 and path == tmp_path / explore.KEPT_MIDI
    path, count = explore.keep_melody(tmp_path, second)
    assert count == 2
    notes = pretty_midi.PrettyMIDI(str(path)).instruments[0].notes
    assert [n.pitch for n in notes] == [60, 62, 64, 72, 71]
    assert notes[3].start == pytest.approx(3 * 2.0)  # 2 bars + a bar of rest at 120 qpm: 6 s
    with pytest.raises(ValueError, match="tokens must be integers in 0..89"):
        explore.keep_melody(tmp_path, np.full(32, 95))


# --- the widgets ----------------------------------------------------------------------------------


def test_panel_starts_on_melody_a_and_redecodes_on_every_change(explorer):
    panel = explore.ExplorerPanel(explorer, number_a=4, number_b=5)
    np.testing.assert_array_equal(
        panel.decoded.tokens, inference.reconstruct_melodies(explorer.model, explorer.test[4:5])[0]
    )
    assert "<audio" in panel.view.value and panel.status.value.startswith("decoded and drawn in")
    before = panel.decoded.z
    panel.ks["note_density"].value = 1.5
    np.testing.assert_allclose(panel.decoded.z, before + 1.5 * explorer.vectors["note_density"])
    panel.alpha.value = 1.0
    panel.ks["note_density"].value = 0.0
    np.testing.assert_array_equal(
        panel.decoded.tokens, inference.reconstruct_melodies(explorer.model, explorer.test[5:6])[0]
    )
    panel.random_a.click()
    number = explore.random_test_number(explorer, np.random.default_rng(0))
    assert panel.number_a.value == str(number)
    np.testing.assert_array_equal(panel.choice.melody_a, explorer.test[number])
    panel.number_b.value = 6
    np.testing.assert_array_equal(panel.choice.melody_b, explorer.test[6])
    panel.temperature.value, panel.seed.value = 1.0, 3
    np.testing.assert_array_equal(panel.decoded.tokens, explore.decode_point(explorer.model, panel.decoded.z, 1.0, 3))


def test_panel_upload_and_keep(explorer, tmp_path):
    panel = explore.ExplorerPanel(explorer, keep_dir=tmp_path)
    shown = panel.decoded.tokens
    panel.upload.value = (
        {
            "name": "broken.mid",
            "type": "audio/midi",
            "size": 4,
            "content": memoryview(b"MThd"),
            "last_modified": UPLOADED,
        },
    )
    assert "broken.mid gives no melody: skipped, not a readable MIDI file" in panel.status.value
    np.testing.assert_array_equal(panel.decoded.tokens, shown)
    melody = np.concatenate([quarter_notes([60, 64, 67, 72, 67, 64, 60, 55])] * 2)
    melody[31] = 0
    content = write_midi(melody, tmp_path / "up.mid").read_bytes()
    panel.upload.value = (
        {
            "name": "up.mid",
            "type": "audio/midi",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": UPLOADED,
        },
    )
    np.testing.assert_array_equal(panel.choice.melody_a, melody[:32])
    assert "melody A: up.mid" in panel.status.value
    panel.keep.click()
    assert (tmp_path / explore.KEPT_MIDI).exists() and "kept: 1 melodies" in panel.status.value
    kept_notes = pretty_midi.PrettyMIDI(str(tmp_path / explore.KEPT_MIDI)).instruments
    assert sum(len(i.notes) for i in kept_notes) == len(tokens_to_notes(panel.decoded.tokens))


# --- the explorer's defects (issue 22), on a real tiny model and real MIDI files ------------------

FLUTE, FIDDLE, SEASHORE = 73, 40, 122  # General MIDI programs: folk tunes come as flute or fiddle


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> explore.Explorer:
    return explore.load_explorer(make_run(tmp_path_factory.mktemp("explore") / "run"), attribute_windows=200, seed=0)


def eight_bars(pitches: list[int]) -> np.ndarray:
    """8 bars of quarter notes (32 notes, tokens [128]) cycling through ``pitches``, a note on every beat."""
    return np.concatenate(
        [quarter_notes([pitches[(4 * bar + k) % len(pitches)] for k in range(8)])[:16] for bar in range(8)]
    )


def folk_midi(tracks: list[tuple[int, np.ndarray]], drums: bool = True) -> bytes:
    """A MIDI file's bytes: one track per (program, tokens), and a drum track (channel 10) if ``drums``."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    for program, tokens in tracks:
        midi.instruments.append(tokens_to_midi(tokens, program=program).instruments[0])
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        kit.notes += [pretty_midi.Note(100, 36, 0.5 * beat, 0.5 * beat + 0.1) for beat in range(32)]
        midi.instruments.append(kit)
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


def uploaded(content: bytes, name: str = "reel.mid") -> tuple:
    """FileUpload's value after the user picks one file."""
    return (
        {
            "name": name,
            "type": "audio/midi",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": UPLOADED,
        },
    )


FLUTE_TUNE = eight_bars([72, 74, 76, 77, 79, 81, 83, 84, 83, 81, 79, 77, 76])
FIDDLE_TUNE = eight_bars([55, 59, 62, 67, 62, 59])
REEL = folk_midi([(FLUTE, FLUTE_TUNE), (FIDDLE, FIDDLE_TUNE)])


def test_decoding_runs_on_one_torch_thread_and_restores_the_count(tiny):
    """With torch's default threads a loaded 2-core machine took 4 s a change; the model must run on one."""
    seen = []
    hooks = [
        module.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
        for module in tiny.model.modules()
    ]
    torch.set_num_threads(2)
    try:
        explore.decode_point(tiny.model, explore.encode_melody(tiny.model, tiny.test[0]), 1.0, 0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
        for hook in hooks:
            hook.remove()
    assert seen and set(seen) == {1} and explore.DECODE_THREADS == 1


def test_a_and_b_are_shown_and_playable(tiny, tmp_path):
    panel = explore.ExplorerPanel(tiny, number_a=4, number_b=5)
    for view, title in [(panel.view_a, "melody A: test melody Nr. 4"), (panel.view_b, "melody B: test melody Nr. 5")]:
        # notation, roll
        assert title in view.value and "<audio" in view.value and "<img" in view.value and "<svg" in view.value
    # A itself, not its decoding
    assert panel.view_a.value == explore.melody_card(tiny.test[4], "melody A: test melody Nr. 4")
    panel.number_b.value = 7
    assert "melody B: test melody Nr. 7" in panel.view_b.value and panel.view_b.value != panel.view_a.value
    assert "melody A: test melody Nr. 4" in panel.html() and "melody B: test melody Nr. 7" in panel.html()


def test_flute_and_fiddle_tracks_are_read_and_named_drums_skipped():
    tune = explore.read_tune(REEL, "reel.mid")
    assert [melody.program for melody in tune.melodies] == [FLUTE, FIDDLE]  # the drum track gives none
    labels = [explore.melody_label(melody) for melody in tune.melodies]
    assert labels == [
        "track 2, channel 1: Flute (program 73), bars 1-8",  # pretty_midi writes the tempo map as track 1
        "track 3, channel 2: Violin (program 40), bars 1-8",
    ]
    np.testing.assert_array_equal(tune.melodies[0].tokens, FLUTE_TUNE)
    with pytest.raises(explore.UnreadableMidiError, match="skipped, drums only"):
        explore.read_tune(folk_midi([]), "drums.mid")
    with pytest.raises(explore.UnreadableMidiError, match=r"no melody notes \(pitched programs 0-111"):
        explore.read_tune(folk_midi([(SEASHORE, FLUTE_TUNE)], drums=False), "waves.mid")


def test_uploaded_window_is_chosen_by_track_and_bar(tiny, tmp_path):
    panel = explore.ExplorerPanel(tiny)
    panel.upload.value = uploaded(REEL)
    np.testing.assert_array_equal(panel.choice.melody_a, FLUTE_TUNE[:32])
    assert "melody A: reel.mid, track 2, channel 1: Flute (program 73), bars 1-2" in panel.status.value
    assert "2 melodies in the file" in panel.status.value
    assert panel.tune_track.layout.display is None and (panel.tune_bar.min, panel.tune_bar.max) == (1, 7)
    panel.tune_bar.value = 3
    np.testing.assert_array_equal(panel.choice.melody_a, FLUTE_TUNE[32:64])
    assert "bars 3-4" in panel.status.value and "bars 3-4" in panel.view_a.value
    panel.tune_track.value = 1
    np.testing.assert_array_equal(panel.choice.melody_a, FIDDLE_TUNE[:32])
    assert "Violin (program 40), bars 1-2" in panel.status.value and panel.tune_bar.value == 1
    panel.tune_bar.value = 7
    np.testing.assert_array_equal(panel.choice.melody_a, FIDDLE_TUNE[96:])


def test_the_same_file_uploaded_again_is_read_again(tiny, tmp_path):
    panel = explore.ExplorerPanel(tiny)
    panel.upload.value = uploaded(REEL)
    panel.number_a.value = "2"
    np.testing.assert_array_equal(panel.choice.melody_a, tiny.test[2])
    panel.upload.value = uploaded(REEL)  # the browser sends the same file again
    np.testing.assert_array_equal(panel.choice.melody_a, FLUTE_TUNE[:32])
    assert "melody A: reel.mid" in panel.status.value and panel.upload.value == ()


def test_after_an_upload_the_number_box_shows_it_and_retyping_a_number_works(tiny, tmp_path):
    panel = explore.ExplorerPanel(tiny, number_a=0)
    panel.upload.value = uploaded(REEL)
    assert panel.number_a.value == "" and "reel.mid" in panel.number_a.placeholder
    panel.number_a.value = "0"  # the number A had before the upload
    np.testing.assert_array_equal(panel.choice.melody_a, tiny.test[0])
    assert panel.tune_track.layout.display == "none" and "melody A: test melody Nr. 0" in panel.view_a.value
    panel.number_a.value = "x"
    assert "type a test melody's number, 0-23; got 'x'" in panel.status.value
    np.testing.assert_array_equal(panel.choice.melody_a, tiny.test[0])


def test_a_new_a_at_a_to_b_one_moves_the_slider_back_to_a(tiny, tmp_path):
    """At alpha 1 the point is B's whatever A is: a new A moves the slider to 0,
    so the current melody is the new A's."""
    panel = explore.ExplorerPanel(tiny, number_a=0, number_b=1)
    panel.alpha.value = 1.0
    np.testing.assert_array_equal(panel.decoded.tokens, inference.reconstruct_melodies(tiny.model, tiny.test[1:2])[0])
    panel.number_a.value = "3"
    assert panel.alpha.value == 0.0 and panel.choice.alpha == 0.0
    np.testing.assert_array_equal(panel.decoded.tokens, inference.reconstruct_melodies(tiny.model, tiny.test[3:4])[0])
    assert '"A -> B" was at 1' in panel.status.value
    panel.alpha.value = 0.5
    panel.number_a.value = "4"  # between A and B the slider stays where the user put it
    assert panel.alpha.value == 0.5


def test_timing_moves_every_control_once_and_back(tiny):
    panel = explore.ExplorerPanel(tiny, number_a=2, number_b=3, temperature=0.0, seed=4)
    start = panel.decoded.tokens
    latency = panel.time_moves(panel.moves())
    assert list(latency["control"]) == [
        "melody A",
        "melody B",
        "A -> B",
        "temperature",
        "seed",
        *[s.description for s in panel.ks.values()],
    ]
    assert (latency["milliseconds"] > 0).all() and panel.choice.alpha == 0.5 and panel.seed.value == 5
    np.testing.assert_array_equal(panel.choice.melody_a, tiny.test[4])
    panel.time_moves(panel.moves(away=False))
    assert (
        panel.choice.alpha == 0.0
        and panel.choice.temperature == 0.0
        and panel.choice.seed == 4
        and not any(panel.choice.ks.values())
    )
    np.testing.assert_array_equal(panel.choice.melody_a, tiny.test[2])
    np.testing.assert_array_equal(panel.choice.melody_b, tiny.test[3])
    np.testing.assert_array_equal(panel.decoded.tokens, start)


def test_sliders_and_table_name_the_attributes_alike(tiny, tmp_path):
    panel = explore.ExplorerPanel(tiny)
    names = [slider.description for slider in panel.ks.values()]
    assert names == [features.FEATURE_UNITS[name] for name in tiny.vectors]
    assert "notes in C major (share)" in names and "c diatonic share" not in names
    table = panel.view.value  # the current melody's card and its table
    assert all(f"<th>{name}</th>" in table for name in names)


def test_kept_melodies_never_go_into_a_committed_run(tmp_path):
    before = sorted(path.name for path in REFERENCE_RUN.iterdir())
    with pytest.raises(ValueError, match="lies in the reference run .*which is committed"):
        explore.keep_melody(REFERENCE_RUN / "explore", quarter_notes([60]))
    with pytest.raises(ValueError, match="which is committed"):
        explore.keep_melody(REFERENCE_RUN, quarter_notes([60]))
    assert sorted(path.name for path in REFERENCE_RUN.iterdir()) == before
    assert explore.DEFAULT_KEEP_DIR == REFERENCE_RUN.parent / "local" / "explore"
    results = tmp_path / "results"  # a reference run is results/<name>/ with a manifest, results/local/ is the user's
    for run in ("hier16", "local/quick"):
        (results / run).mkdir(parents=True)
        (results / run / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="which is committed"):
        explore.check_keep_dir(results / "hier16" / "mine", results_dir=results)
    assert (
        explore.check_keep_dir(results / "local" / "quick" / "mine", results_dir=results)
        == results / "local" / "quick" / "mine"
    )


def test_panel_keeps_into_the_folder_it_is_given(tiny, tmp_path):
    panel = explore.ExplorerPanel(tiny, keep_dir=tmp_path / "mine")
    panel.keep.click()
    assert (tmp_path / "mine" / explore.KEPT_MIDI).exists() and not (tiny.run_dir / "explore").exists()
    with pytest.raises(ValueError, match="which is committed"):
        explore.ExplorerPanel(tiny, keep_dir=REFERENCE_RUN / "explore")


NOTEBOOK = REFERENCE_RUN.parent.parent / "notebooks" / "08_explore.ipynb"


def test_run_all_leaves_the_timing_to_the_runner():
    """Run All in JupyterLab must not move every slider: the timing cells run only with `measure_latency`."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    assert "measure_latency = False" in parameters.source
    moves, guarded = 0, 0  # assignments to a control's value, and those under `if measure_latency:`
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        under_guard = {
            id(node)
            for branch in ast.walk(tree)
            if isinstance(branch, ast.If) and ast.unparse(branch.test) == "measure_latency"
            for statement in branch.body
            for node in ast.walk(statement)
        }
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else []
            timing = isinstance(node, ast.Call) and ast.unparse(node.func).endswith("time_moves")
            if timing or any(".value" in ast.unparse(target) for target in targets):
                moves += 1
                guarded += id(node) in under_guard
    assert moves >= 2 and guarded == moves
    profile = tomllib.loads((REFERENCE_RUN.parent.parent / "profiles" / "default.toml").read_text())
    assert profile["08_explore"]["measure_latency"] is True  # the committed run shows a measurement


def test_prepare_notebook_writes_a_copy_set_to_the_run(tiny, tmp_path):
    committed = NOTEBOOK.read_bytes()
    copy = explore.prepare_notebook(tiny.run_dir, keep_dir=tmp_path / "keep")
    assert copy == tmp_path / "keep" / "08_explore.ipynb" and NOTEBOOK.read_bytes() == committed
    cells = json.loads(copy.read_text())["cells"]
    injected = next(cell for cell in cells if "injected-parameters" in cell["metadata"].get("tags", []))
    assignments = ast.parse("".join(injected["source"])).body  # the cell papermill injected: assignments only
    parameters = {node.targets[0].id: ast.literal_eval(node.value) for node in assignments}
    assert parameters["keep_dir"] == "." and not Path(parameters["run_dir"]).is_absolute()  # relative to the copy
    assert (copy.parent / parameters["run_dir"]).resolve() == tiny.run_dir.resolve()
    with pytest.raises(FileExistsError, match="exists \\(your copy\\)"):
        explore.prepare_notebook(tiny.run_dir, keep_dir=tmp_path / "keep")
    with pytest.raises(ValueError, match="which is committed"):
        explore.prepare_notebook(tiny.run_dir, keep_dir=REFERENCE_RUN / "explore")
    with pytest.raises(SystemExit, match="error: .* exists \\(your copy\\)"):  # the command says so without a traceback
        explore.main(["--run-dir", str(tiny.run_dir), "--keep-dir", str(tmp_path / "keep")])
    with pytest.raises(SystemExit, match="error: no trained model at"):
        explore.main(["--run-dir", str(tmp_path), "--keep-dir", str(tmp_path / "other")])
