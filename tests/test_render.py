"""Tests of musicvae_lib.render: real engraving with verovio, real synthesis, real files."""

from __future__ import annotations

import base64
import io
import re

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import soundfile

from musicvae_lib import render
from musicvae_lib.representation import Note, notes_to_tokens

SAMPLE_RATE = 22050
WINDOW_SAMPLES = round((32 * 0.125 + render.RELEASE_TAIL_S) * SAMPLE_RATE)  # 32 steps of 1/8 s at 120 qpm


def melody(*notes: tuple[int, int, int], n_steps: int = 32) -> np.ndarray:
    """Tokens [n_steps] of (start_step, end_step, pitch_midi) notes."""
    return notes_to_tokens([Note(*note) for note in notes], n_steps)


@pytest.fixture
def scale_melody() -> np.ndarray:
    """C4 D4 E4 F4 | G4 rest C5 rest: six quarter notes, two quarter rests, no accidental, no tie."""
    return melody((0, 4, 60), (4, 8, 62), (8, 12, 64), (12, 16, 65), (16, 20, 67), (24, 28, 72))


@pytest.fixture
def rest_melody() -> np.ndarray:
    return np.zeros(32, dtype=np.uint8)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def data_uris(page: str, mime_type: str) -> list[bytes]:
    """Decoded payloads of the base64 data URIs of ``mime_type`` in an HTML page."""
    return [
        base64.b64decode(payload) for payload in re.findall(rf'src="data:{re.escape(mime_type)};base64,([^"]+)"', page)
    ]


# --- notation ---


def test_notation_svg_has_one_note_group_per_note_and_the_title(scale_melody):
    svg = render.notation_svg(scale_melody, title="Sequence Nr. 1")

    assert svg.lstrip().startswith("<svg")
    assert svg.count('class="note"') == 6
    assert svg.count('class="rest"') == 2
    assert "Sequence Nr. 1" in svg
    assert 'class="accid"' not in svg  # a white-key melody prints no accidental


def test_notation_svg_shows_no_music21_default_title_or_composer(scale_melody):
    svg = render.notation_svg(scale_melody)

    assert "Music21" not in svg
    assert svg.count('class="note"') == 6


def test_notation_svg_prints_the_sharp_and_the_natural_that_cancels_it():
    # C4 C#4 C4 F4 in bar 1: the third note needs a natural, nothing else needs an accidental.
    svg = render.notation_svg(melody((0, 4, 60), (4, 8, 61), (8, 12, 60), (12, 16, 65), (16, 32, 67)))

    assert svg.count('class="accid"') == 2


def test_notation_svg_ties_a_note_across_the_bar_line():
    svg = render.notation_svg(melody((12, 20, 64)))

    assert svg.count('class="note"') == 2
    assert svg.count('class="tie"') == 1


def test_notation_svg_of_a_rest_melody_shows_two_bar_rests_and_no_note(rest_melody):
    svg = render.notation_svg(rest_melody)

    assert 'class="note"' not in svg
    assert svg.count('class="mRest"') == 2


def test_notation_svg_is_the_same_text_for_the_same_melody_and_has_other_ids_for_another(scale_melody, rest_melody):
    first = render.notation_svg(scale_melody, "x")

    assert render.notation_svg(scale_melody, "x") == first
    svg_id = re.search(r'<svg[^>]* id="([^"]+)"', first).group(1)
    assert f'id="{svg_id}"' not in render.notation_svg(rest_melody, "x")


def test_notation_svg_rejects_a_batch(scale_melody):
    with pytest.raises(ValueError, match="one melody"):
        render.notation_svg(np.stack([scale_melody, scale_melody]))


# --- audio ---


def test_tinysoundfont_is_the_engine_here():
    assert render.available_engines()[0] == "tinysoundfont"
    assert render.audio_engine() == "tinysoundfont"
    assert render.available_engines()[-1] == "sine"


@pytest.mark.parametrize("engine", render.available_engines())
def test_synthesize_sounds_where_notes_are_and_is_silent_in_a_long_rest(engine):
    # Two quarter notes (0.0-1.0 s), then a rest to the end of the window at 4.0 s.
    audio = render.synthesize(melody((0, 4, 60), (4, 8, 64)), engine=engine)

    assert audio.dtype == np.float32
    assert audio.shape == (WINDOW_SAMPLES,)
    assert np.abs(audio).max() == pytest.approx(render.PEAK_LEVEL, rel=1e-5)
    assert rms(audio[:SAMPLE_RATE]) > 0.05
    assert rms(audio[2 * SAMPLE_RATE : 4 * SAMPLE_RATE]) < 1e-3


@pytest.mark.parametrize(("engine", "program"), [("sine", 0), ("tinysoundfont", 73)])  # 73: flute, a strong fundamental
def test_synthesize_plays_the_pitch_of_the_token(engine, program):
    audio = render.synthesize(melody((0, 8, 69)), program=program, engine=engine)  # A4, 1 s

    segment = audio[2205 : 2205 + 8192] * np.hanning(8192)  # from 0.1 s, past the attack
    frequencies = np.fft.rfftfreq(8192, 1 / SAMPLE_RATE)
    assert frequencies[np.argmax(np.abs(np.fft.rfft(segment)))] == pytest.approx(440.0, rel=0.01)


def test_synthesize_length_follows_tempo_and_sample_rate(scale_melody):
    audio = render.synthesize(scale_melody, sample_rate=16000, tempo_qpm=60)

    assert audio.shape == (round((32 * 0.25 + render.RELEASE_TAIL_S) * 16000),)


def test_synthesize_of_a_rest_melody_is_silence_of_the_window_length(rest_melody):
    audio = render.synthesize(rest_melody)

    assert audio.shape == (WINDOW_SAMPLES,)
    assert not audio.any()


def test_synthesize_gives_the_same_samples_whatever_was_played_before(scale_melody):
    first = render.synthesize(scale_melody)
    render.synthesize(melody((0, 32, 48)), program=48)  # strings held to the end of the window

    assert np.array_equal(render.synthesize(scale_melody), first)


def test_synthesize_rejects_unknown_engine_and_bad_arguments(scale_melody):
    with pytest.raises(ValueError, match="engine"):
        render.synthesize(scale_melody, engine="theremin")
    with pytest.raises(ValueError, match="program"):
        render.synthesize(scale_melody, program=128)
    with pytest.raises(ValueError, match="tempo_qpm"):
        render.synthesize(scale_melody, tempo_qpm=0)


def test_synthesize_refuses_an_engine_that_is_not_installed(scale_melody):
    if "fluidsynth" in render.available_engines():
        pytest.skip("fluidsynth is installed here")
    with pytest.raises(ValueError, match="not installed"):
        render.synthesize(scale_melody, engine="fluidsynth")


def decoded(mp3: bytes) -> tuple[np.ndarray, int]:
    """Samples and sample rate of an MP3 file, read back by libsndfile's decoder."""
    samples, sample_rate = soundfile.read(io.BytesIO(mp3))
    return samples, sample_rate


def test_mp3_bytes_keeps_length_rate_and_pitch_of_the_clip():
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    samples, sample_rate = decoded(render.mp3_bytes(tone, 8000))
    assert (len(samples), sample_rate) == (8000, 8000)
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * sample_rate / len(samples) == pytest.approx(440, abs=2)
    with pytest.raises(ValueError, match="mono"):
        render.mp3_bytes(np.zeros((2, 100)), 8000)


def test_audio_player_embeds_an_mp3_of_the_melody(scale_melody):
    page = render.audio_player(scale_melody).data

    (audio,) = data_uris(page, "audio/mpeg")
    samples, sample_rate = decoded(audio)
    assert (sample_rate, len(samples)) == (SAMPLE_RATE, WINDOW_SAMPLES)
    assert np.abs(samples).max() > 0.1


# --- notebook views ---


def test_melody_view_embeds_notation_piano_roll_and_audio(scale_melody):
    page = render.melody_view(scale_melody, "Sequence Nr. 3 <best> & co").data

    assert "Sequence Nr. 3 &lt;best&gt; &amp; co" in page
    (notation,) = data_uris(page, "image/svg+xml")
    assert notation.decode().lstrip().startswith("<svg")
    assert notation.decode().count('class="note"') == 6
    (roll,) = data_uris(page, "image/png")
    assert roll.startswith(b"\x89PNG\r\n\x1a\n")
    assert "<audio controls" in page
    (audio,) = data_uris(page, "audio/mpeg")
    samples, sample_rate = decoded(audio)
    assert (sample_rate, len(samples)) == (SAMPLE_RATE, WINDOW_SAMPLES)
    # Inline <svg> would be stripped from an untrusted notebook by JupyterLab; the notation is an <img>.
    assert "<svg" not in page


def test_melody_view_of_a_rest_melody_still_shows_all_three_parts(rest_melody):
    page = render.melody_view(rest_melody, "silence").data

    assert data_uris(page, "image/svg+xml")[0].decode().count('class="mRest"') == 2
    assert len(data_uris(page, "image/png")) == 1
    (audio,) = data_uris(page, "audio/mpeg")
    assert not decoded(audio)[0].any()


def test_melody_gallery_has_one_card_per_window(scale_melody, rest_melody):
    page = render.melody_gallery(np.stack([scale_melody, rest_melody, scale_melody]), ["a", "b", "c"], columns=2).data

    assert len(data_uris(page, "image/svg+xml")) == 3
    assert len(data_uris(page, "audio/mpeg")) == 3
    assert page.count("width: 48.0%") == 3


def test_melody_gallery_rejects_titles_that_do_not_match_windows(scale_melody):
    with pytest.raises(ValueError, match="same length"):
        render.melody_gallery([scale_melody, scale_melody], ["only one"])
