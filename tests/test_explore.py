"""The explorer's callbacks (notebook 08) on the committed reference model, and the widgets wired to them."""

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from musicvae_lib import explore, features, inference, latent, run_folder
from musicvae_lib.representation import NOTE_OFF, pitch_to_token, tokens_to_notes, write_midi

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


def test_midi_windows_reads_a_real_file(tmp_path):
    four_bars = np.concatenate([quarter_notes([60, 62, 64, 65, 67, 69, 71, 72]), quarter_notes([72, 71, 69, 67, 65, 64, 62, 60])])
    four_bars[31] = 0  # the first half's NOTE_OFF would cut the melody; the second half follows on
    path = write_midi(four_bars, tmp_path / "tune.mid")
    windows = explore.midi_windows(path.read_bytes(), "tune.mid")
    assert windows.shape[1] == 32 and len(windows) == 3  # bars 1-2, 2-3, 3-4
    assert any(np.array_equal(w[:16], four_bars[:16]) for w in windows)


@pytest.mark.parametrize(("content", "reason"), [(b"", "empty file"), (b"not a MIDI file at all", "not a readable MIDI file")])
def test_unreadable_midi_gives_the_data_chapters_skip_reason(content, reason):
    with pytest.raises(explore.UnreadableMidiError, match=f"bad.mid gives no melody: skipped, {reason}"):
        explore.midi_windows(content, "bad.mid")


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
    np.testing.assert_array_equal(explore.decode_point(explorer.model, z, 0.0, 0), inference.decode_latents(explorer.model, z[None])[0])
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
    assert page.count("<img") == 2 and "<audio" in page and "<table" in page
    assert features.FEATURE_UNITS["note_density"] in page and "Test melody Nr. 2" in page


def test_keep_melody_appends_to_one_midi_file(tmp_path):
    first, second = quarter_notes([60, 62, 64]), quarter_notes([72, 71])
    path, count = explore.keep_melody(tmp_path, first)
    assert count == 1 and path == tmp_path / run_folder.KEPT_MIDI
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
    np.testing.assert_array_equal(panel.decoded.tokens, inference.reconstruct_melodies(explorer.model, explorer.test[4:5])[0])
    assert "<audio" in panel.view.value and panel.status.value.startswith("decoded and drawn in")
    before = panel.decoded.z
    panel.ks["note_density"].value = 1.5
    np.testing.assert_allclose(panel.decoded.z, before + 1.5 * explorer.vectors["note_density"])
    panel.alpha.value = 1.0
    panel.ks["note_density"].value = 0.0
    np.testing.assert_array_equal(panel.decoded.tokens, inference.reconstruct_melodies(explorer.model, explorer.test[5:6])[0])
    panel.random_a.click()
    number = explore.random_test_number(explorer, np.random.default_rng(0))
    assert panel.number_a.value == number
    np.testing.assert_array_equal(panel.choice.melody_a, explorer.test[number])
    panel.number_b.value = 6
    np.testing.assert_array_equal(panel.choice.melody_b, explorer.test[6])
    panel.temperature.value, panel.seed.value = 1.0, 3
    np.testing.assert_array_equal(panel.decoded.tokens, explore.decode_point(explorer.model, panel.decoded.z, 1.0, 3))


def test_panel_upload_and_keep(explorer, tmp_path):
    panel = explore.ExplorerPanel(replace(explorer, run_dir=tmp_path))
    shown = panel.decoded.tokens
    panel.upload.value = ({"name": "broken.mid", "type": "audio/midi", "size": 4, "content": memoryview(b"MThd"), "last_modified": UPLOADED},)
    assert "broken.mid gives no melody: skipped, not a readable MIDI file" in panel.status.value
    np.testing.assert_array_equal(panel.decoded.tokens, shown)
    melody = np.concatenate([quarter_notes([60, 64, 67, 72, 67, 64, 60, 55])] * 2)
    melody[31] = 0
    content = write_midi(melody, tmp_path / "up.mid").read_bytes()
    panel.upload.value = ({"name": "up.mid", "type": "audio/midi", "size": len(content), "content": memoryview(content), "last_modified": UPLOADED},)
    np.testing.assert_array_equal(panel.choice.melody_a, explore.midi_windows(content, "up.mid")[0])
    assert "melody A: up.mid" in panel.status.value
    panel.keep.click()
    assert (tmp_path / run_folder.KEPT_MIDI).exists() and "kept: 1 melodies" in panel.status.value
    kept_notes = pretty_midi.PrettyMIDI(str(tmp_path / run_folder.KEPT_MIDI)).instruments
    assert sum(len(i.notes) for i in kept_notes) == len(tokens_to_notes(panel.decoded.tokens))
