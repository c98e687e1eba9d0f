"""Notation and audio of a melody, so that a reader sees and hears what the model made.

Notation: tokens -> music21 Score (``representation.tokens_to_stream``) -> MusicXML -> SVG engraved
by verovio, offline and in a few milliseconds (music21's ``show()`` would need MuseScore).

Audio: one engine per process, the first available of
``tinysoundfont`` (General MIDI sound from pretty_midi's TimGM6mb.sf2, pure pip install),
``fluidsynth`` (pretty_midi's renderer, needs pyfluidsynth and the fluidsynth library) and
``sine`` (pretty_midi's sine-wave synthesizer, always available). ``audio_engine()`` names it.
Embedded audio is MP3 (libsndfile's LAME encoder, through soundfile): a 2-bar clip takes ~20 kB
instead of ~200 kB of WAV, which keeps executed notebooks light enough to commit, and every
browser plays it.

Notebook output: ``melody_view`` and ``melody_gallery`` return HTML with the notation, a piano
roll and a player, everything embedded as data URIs. Notation and piano roll are ``<img>``
elements rather than inline ``<svg>``: JupyterLab strips ``<svg>`` from the HTML of an untrusted
notebook (every executed notebook someone else opens from results/), while ``<img>`` and
``<audio src=...>`` with data URIs survive there, in nbviewer and in nbconvert's static HTML.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pretty_midi
import soundfile
import verovio
from IPython.display import HTML
from matplotlib.figure import Figure
from music21.musicxml.m21ToXml import ScoreExporter

from musicvae_lib import plots, representation

# --- notation ---------------------------------------------------------------------------------

# verovio page in its units (scale 40 %: 1100 units -> 440 px); breaks "auto" with this width keeps
# a 2-bar window on one system, and minLastJustification 0 spreads it over the whole width.
VEROVIO_OPTIONS = {
    "pageWidth": 1100,
    "pageHeight": 60000,  # tall enough for any window; adjustPageHeight trims it to the music
    "adjustPageHeight": True,
    "scale": 40,
    "breaks": "auto",
    "minLastJustification": 0,
    "pageMarginLeft": 20,
    "pageMarginRight": 20,
    "pageMarginTop": 20,
    "pageMarginBottom": 20,
    "header": "auto",
    "footer": "none",
    "svgViewBox": True,  # a viewBox lets the <img> holding the SVG scale it to the page width
}


@functools.cache
def _toolkit() -> verovio.toolkit:
    """The one verovio toolkit of this process, its page options set once."""
    toolkit = verovio.toolkit()
    toolkit.setOptions(VEROVIO_OPTIONS)
    return toolkit


def musicxml(tokens: np.ndarray, title: str | None = None) -> str:
    """MusicXML text of a melody (tokens [n_steps]) in 4/4, with ``title`` as the movement title.

    music21 fills in "Music21" as composer and "Music21 Fragment" as title when a score has none;
    both are removed so that an engraving shows only what the caller asked for.
    """
    score = representation.tokens_to_stream(representation.melody_tokens(tokens), title=title)
    root = ScoreExporter(score).parse()
    for identification in root.findall("identification"):
        for creator in identification.findall("creator"):
            identification.remove(creator)
    if not title:
        for element in root.findall("work") + root.findall("movement-title"):
            root.remove(element)
    return ET.tostring(root, encoding="unicode")


def notation_svg(tokens: np.ndarray, title: str | None = None) -> str:
    """The melody (tokens [n_steps]) engraved by verovio as one SVG document, title above the staff.

    Notes are ``<g class="note">`` groups, rests ``class="rest"`` (``"mRest"`` for a whole-bar
    rest); a note across a bar line is two notes and a ``class="tie"``. The SVG's element ids are
    seeded from the melody and title: the same call gives the same text, and different melodies
    shown on one page get different ids.
    """
    tokens = representation.melody_tokens(tokens)
    toolkit = _toolkit()
    seed_source = tokens.astype(np.uint8).tobytes() + (title or "").encode()
    toolkit.setOptions({"xmlIdSeed": zlib.crc32(seed_source) % (2**31 - 1) + 1})
    if not toolkit.loadData(musicxml(tokens, title)):
        raise RuntimeError(f"verovio could not read the MusicXML of melody {tokens.tolist()}")
    return toolkit.renderToSVG(1)


# --- audio ------------------------------------------------------------------------------------

SOUNDFONT_PATH = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"  # General MIDI, shipped with pretty_midi
ENGINES = ("tinysoundfont", "fluidsynth", "sine")  # in order of preference
RELEASE_TAIL_S = 0.5  # after the window, so the last note fades out instead of being cut off
PEAK_LEVEL = 0.5  # each melody's loudest sample (-6 dBFS): equal loudness across engines and instruments
DEFAULT_SAMPLE_RATE = 22050  # enough for a melody; an embedded 4.5 s clip takes ~20 kB as MP3


@functools.cache
def available_engines() -> tuple[str, ...]:
    """The audio engines that work in this process, best first; checked once, ``sine`` always last."""
    engines = []
    try:
        import tinysoundfont  # noqa: F401  (only probing whether it is installed)

        if SOUNDFONT_PATH.is_file():
            engines.append("tinysoundfont")
    except ImportError:
        pass
    try:
        import fluidsynth  # noqa: F401  (pyfluidsynth raises ImportError when libfluidsynth is missing)

        engines.append("fluidsynth")
    except ImportError:
        pass
    engines.append("sine")
    return tuple(engines)


def audio_engine() -> str:
    """Name of the engine ``synthesize`` uses by default: the first of ``available_engines()``."""
    return available_engines()[0]


@functools.cache
def _soundfont_bytes() -> bytes:
    return SOUNDFONT_PATH.read_bytes()


def _render_tinysoundfont(midi: pretty_midi.PrettyMIDI, sample_rate: int, n_samples: int) -> np.ndarray:
    """Mono float32 [n_samples] of the MIDI's first instrument played by TinySoundFont.

    A new synthesizer per melody (about 10 ms to parse the SoundFont bytes) so that no voice of
    the previous melody can ring into this one: same melody, same samples.
    """
    import tinysoundfont

    instrument = midi.instruments[0]
    synth = tinysoundfont.Synth(samplerate=sample_rate)
    soundfont_id = synth.sfload(_soundfont_bytes())
    synth.program_select(0, soundfont_id, 0, instrument.program)
    # (sample, is_note_on, pitch, velocity): at one sample a note-off sorts before a note-on, so
    # a repeated pitch is released and struck again.
    events = sorted(
        [(round(note.start * sample_rate), True, note.pitch, note.velocity) for note in instrument.notes]
        + [(round(note.end * sample_rate), False, note.pitch, 0) for note in instrument.notes]
    )
    chunks = []
    cursor = 0
    for sample, is_note_on, pitch, velocity in events:
        if sample > cursor:
            chunks.append(bytes(synth.generate(sample - cursor)))
            cursor = sample
        if is_note_on:
            synth.noteon(0, pitch, velocity)
        else:
            synth.noteoff(0, pitch)
    chunks.append(bytes(synth.generate(n_samples - cursor)))
    stereo = np.frombuffer(b"".join(chunks), dtype=np.float32).reshape(-1, 2)  # (n_samples, 2) interleaved L/R
    return stereo.mean(axis=1)


def synthesize(
    tokens: np.ndarray,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    program: int = 0,
    tempo_qpm: float = 120,
    engine: str | None = None,
) -> np.ndarray:
    """Audio of a melody (tokens [n_steps]): float32 mono [n_samples] in [-1, 1].

    ``n_samples = round((n_steps * 60 / tempo_qpm / 4 + RELEASE_TAIL_S) * sample_rate)``, the
    window plus a release tail, whatever the engine (a 2-bar window at 120 qpm: 4.5 s). Notes use
    General MIDI ``program`` (0: piano) at velocity 90, as ``representation.tokens_to_midi`` writes
    them. The result is scaled so its peak is ``PEAK_LEVEL``; a melody without notes is silence.
    ``engine`` is one of ``ENGINES``, default ``audio_engine()``.
    """
    tokens = representation.melody_tokens(tokens)
    if sample_rate <= 0:
        raise ValueError(f"`sample_rate` must be positive, got {sample_rate}")
    if tempo_qpm <= 0:
        raise ValueError(f"`tempo_qpm` must be positive, got {tempo_qpm}")
    if not 0 <= program <= 127:
        raise ValueError(f"`program` must be a General MIDI program 0..127, got {program}")
    engine = audio_engine() if engine is None else engine
    if engine not in ENGINES:
        raise ValueError(f"`engine` must be one of {ENGINES}, got {engine!r}")
    if engine not in available_engines():
        raise ValueError(f"audio engine {engine!r} is not installed here; available: {available_engines()}")

    seconds_per_step = 60.0 / tempo_qpm / representation.STEPS_PER_QUARTER
    n_samples = round((len(tokens) * seconds_per_step + RELEASE_TAIL_S) * sample_rate)
    midi = representation.tokens_to_midi(tokens, tempo_qpm=tempo_qpm, program=program)
    if not midi.instruments[0].notes:
        return np.zeros(n_samples, dtype=np.float32)
    if engine == "tinysoundfont":
        audio = _render_tinysoundfont(midi, sample_rate, n_samples)
    elif engine == "fluidsynth":
        audio = midi.instruments[0].fluidsynth(fs=sample_rate)
    else:
        audio = midi.instruments[0].synthesize(fs=sample_rate, wave=np.sin)
    audio = np.pad(audio[:n_samples], (0, max(0, n_samples - len(audio))))
    peak = np.abs(audio).max()
    return (audio * (PEAK_LEVEL / peak) if peak > 0 else audio).astype(np.float32)


def mp3_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """An MP3 file of ``audio`` (mono float [n_samples] in [-1, 1], clipped to it)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"`audio` must be mono, shape [n_samples], got shape {audio.shape}")
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(audio, -1.0, 1.0), sample_rate, format="MP3", subtype="MPEG_LAYER_III")
    return buffer.getvalue()


def audio_player(
    tokens: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE, program: int = 0, tempo_qpm: float = 120
) -> HTML:
    """An audio player with the melody embedded as MP3 (plays in a saved, executed notebook)."""
    audio = _data_uri("audio/mpeg", mp3_bytes(synthesize(tokens, sample_rate, program, tempo_qpm), sample_rate))
    return HTML(f'<audio controls src="{audio}"></audio>')


# --- notebook views ---------------------------------------------------------------------------


def _data_uri(mime_type: str, data: bytes) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"


def _piano_roll_png(tokens: np.ndarray) -> bytes:
    """A small piano roll as PNG bytes; drawn on a Figure outside pyplot so a notebook never shows it twice."""
    fig = Figure(figsize=(4.4, 1.9), layout="constrained")
    ax = plots.piano_roll(tokens, ax=fig.add_subplot())
    ax.tick_params(labelsize=7)
    ax.xaxis.label.set_fontsize(8)
    ax.yaxis.label.set_fontsize(8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def _melody_card(tokens: np.ndarray, title: str, sample_rate: int, program: int, tempo_qpm: float) -> str:
    """HTML of one melody: title, notation, piano roll and an audio player, all embedded."""
    notation = _data_uri("image/svg+xml", notation_svg(tokens).encode())
    roll = _data_uri("image/png", _piano_roll_png(tokens))
    audio = _data_uri("audio/mpeg", mp3_bytes(synthesize(tokens, sample_rate, program, tempo_qpm), sample_rate))
    label = html.escape(title)
    return (
        f'<div style="font-weight: bold; margin-bottom: 4px">{label}</div>'
        f'<img src="{notation}" alt="notation of {label}" style="width: 100%; background-color: white">'
        f'<img src="{roll}" alt="piano roll of {label}" style="width: 100%">'
        f'<audio controls src="{audio}" style="width: 100%"></audio>'
    )


def melody_view(
    tokens: np.ndarray,
    title: str,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    program: int = 0,
    tempo_qpm: float = 120,
) -> HTML:
    """One melody (tokens [n_steps]) as HTML: title, notation, piano roll and an audio player.

    ``display(*[melody_view(w, f"Sequence Nr. {k}") for k, w in enumerate(windows)])`` shows them
    one under the other; ``melody_gallery`` lays several out in a grid.
    """
    card = _melody_card(tokens, title, sample_rate, program, tempo_qpm)
    return HTML(f'<div style="max-width: 520px; margin-bottom: 16px">{card}</div>')


def melody_gallery(
    windows: Sequence[np.ndarray] | np.ndarray,
    titles: Sequence[str],
    columns: int = 3,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    program: int = 0,
    tempo_qpm: float = 120,
) -> HTML:
    """Several melodies (windows [n_melodies, n_steps], one title each) as ``melody_view`` cards in a grid.

    Cards are inline blocks ``columns`` to a row; they wrap on narrow pages.
    """
    if len(windows) != len(titles):
        raise ValueError(f"`windows` and `titles` must have the same length, got {len(windows)} and {len(titles)}")
    if columns < 1:
        raise ValueError(f"`columns` must be at least 1, got {columns}")
    card_width = 100 / columns - 2  # percent of the row, leaving 2 % for the gap
    cards = "".join(
        f'<div style="display: inline-block; vertical-align: top; width: {card_width:.1f}%; margin: 0 1% 16px 0">'
        f"{_melody_card(tokens, title, sample_rate, program, tempo_qpm)}</div>"
        for tokens, title in zip(windows, titles)
    )
    return HTML(f"<div>{cards}</div>")


# --- files ------------------------------------------------------------------------------------
