"""Play with a trained model (notebook 08): pick melodies, move z, decode again, see and hear the result.

A user picks melody A (a test melody by number, or a 2-bar window of a MIDI file: any pitched
track, from any bar) and melody B, a point between them (slerp, alpha 0..1), a step k along each
attribute vector of notebook 07, a temperature and a seed. ``decode_choice`` turns such a
``Choice`` into a melody and measures its attributes beside those of the unmoved point, so a user
sees whether a vector did what its name says; ``keep_melody`` appends a melody to a MIDI file in a
folder of the user's (never a committed reference run).

These are plain functions, tested without a browser. ``ExplorerPanel`` only wires ipywidgets to
them: every widget change decodes again and shows A, B and the result. The model is touched in
two places only, ``encode_melody`` and ``decode_point`` (and ``load_explorer``, which sets up),
so another decoding path needs changes there alone. Both run torch on ``DECODE_THREADS`` thread:
one melody gains nothing from more, and on a loaded 2-core machine torch's default threads wait
on each other (one change took a 4 s median with two threads, 0.1-0.3 s with one).

``python -m musicvae_lib.explore --run-dir results/default`` writes a copy of notebook 08 set to
that run into ``results/local/explore/``, to open in JupyterLab: the committed notebook (and the
committed executed copies) are never the one a user runs and autosaves.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import io
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pandas as pd
import pretty_midi
import soundfile
import torch

from musicvae_lib import (
    data,
    features,
    generate,
    inference,
    latent,
    plots,
    render,
    representation,
    run_folder,
    training,
)
from musicvae_lib.midi_melodies import (
    PITCHED_PROGRAMS,
    SKIP_NO_MELODY_PROGRAM,
    SKIP_NO_WINDOW,
    MidiMelody,
    melodies_from_midi_bytes,
    windows_at_bars,
)
from musicvae_lib.model import MusicVAE
from musicvae_lib.representation import (
    BARS_PER_WINDOW,
    STEPS_PER_BAR,
    STEPS_PER_QUARTER,
    TOKEN_DTYPE,
    check_tokens,
)

# notebook 07's five attribute vectors (features.ATTRIBUTES) and pitch range, as the issue lists them
EXPLORER_ATTRIBUTES = (*features.ATTRIBUTES, "pitch_range")
# one name per attribute, the same on its slider and in the table of measured attributes
EXPLORER_LABELS = {name: features.FEATURE_UNITS[name] for name in EXPLORER_ATTRIBUTES}
K_LIMIT = 2.0  # sliders run k from -2 to 2: the MusicVAE supplement moves by up to 1.5 vectors
MAX_TEMPERATURE = 1.5  # notebook 04's hottest set
DECODE_THREADS = 1  # torch threads while one melody is encoded or decoded (see the module docstring)
KEPT_MIDI = "kept.mid"  # in the keep folder: the melodies kept so far, a bar of rest between
KEPT_WINDOWS = "kept.npy"  # the same melodies as tokens, so a keep appends without re-reading MIDI
REPO_DIR = run_folder.REPO_DIR
RESULTS_DIR = REPO_DIR / "results"
# results/local/: a user's runs and what the explorer keeps; the rest is committed
LOCAL_RUNS = str(run_folder.LOCAL_RUNS)
DEFAULT_KEEP_DIR = RESULTS_DIR / LOCAL_RUNS / "explore"
NOTEBOOK = run_folder.NOTEBOOKS_DIR / "08_explore.ipynb"


class UnreadableMidiError(ValueError):
    """A MIDI file that gives no melody window; the message holds the data chapter's skip reason."""


@dataclass(frozen=True)
class Explorer:
    """What the explorer plays with: a model, the melodies to pick from and the attribute vectors."""

    model: MusicVAE
    test: np.ndarray  # uint8 [n, steps]: the run's test split, picked by number
    vectors: Mapping[str, np.ndarray]  # attribute name -> float [z_size], notebook 07's definition
    run_dir: Path


@dataclass(frozen=True)
class Choice:
    """Everything a user sets. The decoded point is slerp(mu(A), mu(B), alpha) + sum of k * vector."""

    melody_a: np.ndarray  # tokens [steps]
    melody_b: np.ndarray  # tokens [steps]
    alpha: float = 0.0  # 0: melody A, 1: melody B
    ks: Mapping[str, float] = field(default_factory=dict)  # attribute -> k; missing means 0
    temperature: float = 0.0  # 0: greedy (argmax at every step)
    seed: int = 0  # seeds the sampling when temperature > 0


@dataclass(frozen=True)
class Decoded:
    """The melody of a ``Choice`` and what it measures."""

    tokens: np.ndarray  # uint8 [steps]
    z: np.ndarray  # float [z_size], the decoded point
    unmoved: np.ndarray  # uint8 [steps]: decoded greedily at the alpha point with every k = 0
    attributes: pd.DataFrame  # one row per attribute: unmoved, result, change


def load_explorer(run_dir: str | Path, attribute_windows: int = 2000, seed: int = 0) -> Explorer:
    """The run's model (``training/model.pt``), test split and attribute vectors.

    The vectors are computed as notebook 07 computes them: mean mu of the top quartile minus the
    bottom quartile of each attribute over ``attribute_windows`` training windows drawn with
    ``seed + 1``.
    """
    run = Path(run_dir)
    model = training.load_model(run / run_folder.TRAINED_MODEL, device="cpu")
    train_windows = data.load_split(run, "train")
    reference = train_windows[data.sample_windows(train_windows, attribute_windows, seed + 1)]
    reference_mu, _ = inference.encode_windows(model, reference)
    vectors = latent.attribute_vectors(reference_mu, features.feature_table(reference)[list(EXPLORER_ATTRIBUTES)])
    return Explorer(model, data.load_split(run, "test"), vectors, run)


# --------------------------------------------------------------------------------------------
# Picking melodies


def test_melody(explorer: Explorer, number: int) -> np.ndarray:
    """Test melody Nr. ``number`` (0-based row of the test split): tokens [steps]."""
    if not 0 <= number < len(explorer.test):
        raise ValueError(f"`number` must lie in 0..{len(explorer.test) - 1} (the test split's melodies), got {number}")
    return explorer.test[number]


def random_test_number(explorer: Explorer, rng: np.random.Generator) -> int:
    """A test melody's number drawn from ``rng``."""
    return int(rng.integers(len(explorer.test)))


@dataclass(frozen=True)
class Tune:
    """An uploaded MIDI file's melodies that hold a window: one per pitched track (and piece), in file order."""

    name: str
    melodies: list[MidiMelody]


def read_tune(content: bytes, name: str) -> Tune:
    """The melodies of a MIDI file's bytes, read as notebook 01 reads MIDI but from any pitched program.

    Notebook 01 keeps Magenta's programs 0-31 only; here every General MIDI program of
    ``PITCHED_PROGRAMS`` (0-111: flutes and fiddles too) counts, drums never. Melodies shorter than
    a window are left out. UnreadableMidiError with the data chapter's skip reason if none is left.
    """
    found = melodies_from_midi_bytes(content, PITCHED_PROGRAMS)
    reason = found.skip_reason
    if reason == SKIP_NO_MELODY_PROGRAM:
        reason = (
            f"no melody notes (pitched programs {PITCHED_PROGRAMS.start}-{PITCHED_PROGRAMS.stop - 1}, pitches 21-108)"
        )
    melodies = [melody for melody in found.melodies if len(melody.tokens) >= BARS_PER_WINDOW * STEPS_PER_BAR]
    if reason is None and not melodies:
        reason = SKIP_NO_WINDOW
    if reason is not None:
        raise UnreadableMidiError(f"{name} gives no melody: skipped, {reason} (as notebook 01 skips it)")
    return Tune(name, melodies)


def melody_label(melody: MidiMelody) -> str:
    """Where a melody lies, for people: 1-based track, channel and bars, the General MIDI instrument."""
    instrument = pretty_midi.program_to_instrument_name(melody.program)
    bars = len(melody.tokens) // STEPS_PER_BAR
    piece = f"after time change {melody.piece}, " if melody.piece else ""
    return (
        f"track {melody.track + 1}, channel {melody.channel + 1}: {instrument} (program {melody.program}), "
        f"{piece}bars {melody.first_bar + 1}-{melody.first_bar + bars}"
    )


def window_bars(melody: MidiMelody) -> range:
    """The 1-based bars a window of the melody can start at."""
    n_windows = len(melody.tokens) // STEPS_PER_BAR - BARS_PER_WINDOW + 1
    return range(melody.first_bar + 1, melody.first_bar + 1 + n_windows)


def tune_window(melody: MidiMelody, bar: int) -> np.ndarray:
    """The window of a melody that starts at ``bar`` (1-based, as ``melody_label`` counts): tokens [steps]."""
    bars = window_bars(melody)
    if bar not in bars:
        raise ValueError(
            f"`bar` must lie in {bars.start}..{bars.stop - 1} (where a window of this melody starts), got {bar}"
        )
    return windows_at_bars(melody.tokens)[bar - bars.start]


# --------------------------------------------------------------------------------------------
# The model


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the number there was."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def encode_melody(model: MusicVAE, tokens: np.ndarray) -> np.ndarray:
    """mu of q(z|x) for one melody: float [z_size]. Runs on ``DECODE_THREADS`` torch threads."""
    with torch_threads(DECODE_THREADS):
        mu, _ = inference.encode_windows(model, np.asarray(tokens)[None])
    return mu[0].astype(np.float64)


def decode_point(model: MusicVAE, z: np.ndarray, temperature: float, seed: int) -> np.ndarray:
    """One melody decoded from z (float [z_size]): uint8 [steps]; greedy at temperature 0, else sampled with ``seed``.

    Runs on ``DECODE_THREADS`` torch threads.
    """
    with torch_threads(DECODE_THREADS):
        return inference.decode_latents(model, np.asarray(z)[None], temperature, seed)[0]


# --------------------------------------------------------------------------------------------
# From a choice to a melody


def latent_point(
    z_a: np.ndarray, z_b: np.ndarray, alpha: float, vectors: Mapping[str, np.ndarray], ks: Mapping[str, float]
) -> np.ndarray:
    """slerp(z_a, z_b, alpha) + sum over attributes of k * vector: float [z_size]."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must lie in [0, 1] (0: melody A, 1: melody B), got {alpha}")
    unknown = sorted(set(ks) - set(vectors))
    if unknown:
        raise ValueError(f"no attribute vector for {unknown}; known: {sorted(vectors)}")
    z = latent.slerp(z_a, z_b, alpha)
    for name, k in ks.items():
        z = z + float(k) * np.asarray(vectors[name], dtype=np.float64)
    return z


def measured_attributes(unmoved: np.ndarray, result: np.ndarray) -> pd.DataFrame:
    """The explorer's attributes of two melodies (tokens [steps]) and their change, one row per attribute."""
    table = features.feature_table(np.stack([unmoved, result]))[list(EXPLORER_ATTRIBUTES)]
    return pd.DataFrame({"unmoved": table.iloc[0], "result": table.iloc[1], "change": table.iloc[1] - table.iloc[0]})


def decode_choice(explorer: Explorer, choice: Choice) -> Decoded:
    """Decode the point a ``Choice`` names and measure it against the unmoved point
    (same alpha, every k = 0, greedy)."""
    z_a = encode_melody(explorer.model, check_tokens(choice.melody_a))
    z_b = encode_melody(explorer.model, check_tokens(choice.melody_b))
    return decode_between(explorer, choice, z_a, z_b)


def decode_between(
    explorer: Explorer, choice: Choice, z_a: np.ndarray, z_b: np.ndarray, unmoved: np.ndarray | None = None
) -> Decoded:
    """``decode_choice`` given the encodings of A and B (float [z_size]) and, if known, the unmoved melody.

    ``unmoved`` (tokens [steps], greedy at the alpha point) spares a second decoding while only k,
    temperature or seed change; it is decoded when None and something moved.
    """
    z = latent_point(z_a, z_b, choice.alpha, explorer.vectors, choice.ks)
    tokens = decode_point(explorer.model, z, choice.temperature, choice.seed)
    moved = choice.temperature > 0 or any(k != 0 for k in choice.ks.values())
    if not moved:
        unmoved = tokens
    elif unmoved is None:
        unmoved = decode_point(explorer.model, latent.slerp(z_a, z_b, choice.alpha), 0.0, 0)
    return Decoded(tokens, z, unmoved, measured_attributes(unmoved, tokens))


# --------------------------------------------------------------------------------------------
# Drawing: the notebooks' melody card, fast enough to redraw on every change


PIANO_ROLL_SIZE = (440, 160)  # pixels, width and height of the SVG piano roll, about the notebooks' PNG
ROLL_MARGINS = (58, 6, 6, 22)  # pixels: left (pitch labels), right, top, bottom (step labels)


def piano_roll_svg(tokens: np.ndarray) -> str:
    """A piano roll of a melody (tokens [n_steps]) as inline SVG, drawn as ``plots.piano_roll`` draws it.

    One rectangle (class "note") per note from its start step to its end step at its pitch,
    black-key rows shaded, beat lines every 4 steps and bar lines every 16, every C labelled; the
    pitch axis is ``plots.pitch_axis_limits``. Written by hand: about 1 ms, where matplotlib takes
    about 70 ms, most of a change's time on a loaded machine.
    """
    tokens = representation.melody_tokens(tokens)
    n_steps = len(tokens)
    low, high = plots.pitch_axis_limits([tokens])
    width, height = PIANO_ROLL_SIZE
    left, right, top, bottom = ROLL_MARGINS
    step_px = (width - left - right) / n_steps
    row_px = (height - top - bottom) / (high - low + 1)

    def y(pitch: float) -> float:  # top edge of the row of ``pitch``
        return top + (high - pitch) * row_px

    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            'font-family="sans-serif" font-size="9" style="background: white; width: 100%; height: auto">'
        )
    ]
    for pitch in range(low, high + 1):
        if pitch % 12 in plots.BLACK_KEY_PITCH_CLASSES:
            shade = round(255 * plots.BLACK_KEY_SHADE)
            parts.append(
                f'<rect x="{left}" y="{y(pitch):.1f}" width="{n_steps * step_px:.1f}" height="{row_px:.1f}" '
                f'fill="rgb({shade},{shade},{shade})"/>'
            )
        if pitch % 12 == 0:
            parts.append(
                f'<text x="{left - 4}" y="{y(pitch) + row_px * 0.5 + 3:.1f}" '
                f'text-anchor="end">{plots.pitch_name(pitch)} ({pitch})</text>'
            )
    for step in range(0, n_steps + 1, STEPS_PER_QUARTER):
        bar_line = step % STEPS_PER_BAR == 0
        x = left + step * step_px
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" '
            f'stroke="{"#595959" if bar_line else "#d9d9d9"}" stroke-width="{1.2 if bar_line else 0.6}"/>'
        )
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 11}" text-anchor="middle">{step}</text>')
    notes = representation.tokens_to_notes(tokens)
    for note in notes:
        parts.append(
            f'<rect class="note" x="{left + note.start_step * step_px:.1f}" y="{y(note.pitch_midi):.1f}" '
            f'width="{(note.end_step - note.start_step) * step_px:.1f}" height="{row_px:.1f}" '
            f'fill="{plots.NOTE_COLOR}" stroke="{plots.NOTE_EDGE_COLOR}" stroke-width="0.8"/>'
        )
    if not notes:
        parts.append(
            f'<text x="{(left + width - right) / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" fill="#4d4d4d">no '
            "notes (rest only)</text>"
        )
    parts.append(
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 1}" text-anchor="middle" '
        f'fill="#4d4d4d">{html.escape(plots.STEP_AXIS_LABEL)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """A 16-bit WAV file of ``audio`` (mono float [n_samples] in [-1, 1]): no encoding to wait for,
    unlike MP3 (~30 ms)."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(audio, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def melody_card(tokens: np.ndarray, title: str) -> str:
    """HTML of one melody as the explorer shows it: title, notation (verovio),
    piano roll (SVG) and an audio player (WAV)."""
    label = html.escape(title)
    notation = base64.b64encode(render.notation_svg(tokens).encode()).decode("ascii")
    audio = base64.b64encode(
        wav_bytes(render.synthesize(tokens, render.DEFAULT_SAMPLE_RATE), render.DEFAULT_SAMPLE_RATE)
    ).decode("ascii")
    return (
        '<div style="width: 400px; max-width: 100%; margin: 0 16px 16px 0">'
        f'<div style="font-weight: bold; margin-bottom: 4px">{label}</div>'
        f'<img src="data:image/svg+xml;base64,{notation}" alt="notation of {label}" '
        'style="width: 100%; background-color: white">'
        f'<div role="img" aria-label="piano roll of {label}">{piano_roll_svg(tokens)}</div>'
        f'<audio controls src="data:audio/wav;base64,{audio}" style="width: 100%"></audio></div>'
    )


def attribute_table_html(decoded: Decoded) -> str:
    """The measured attributes as an HTML table, rows named by ``EXPLORER_LABELS`` (the sliders' names)."""
    return decoded.attributes.rename(index=EXPLORER_LABELS).round(3).to_html(border=0)


def melody_html(decoded: Decoded, title: str) -> str:
    """HTML of the decoded melody: notation, piano roll, audio player and its attribute table."""
    return (
        '<div style="display: flex; gap: 24px; align-items: flex-start">'
        f"{melody_card(decoded.tokens, title)}{attribute_table_html(decoded)}</div>"
    )


# --------------------------------------------------------------------------------------------
# Keeping melodies


def check_keep_dir(keep_dir: str | Path, results_dir: Path = RESULTS_DIR) -> Path:
    """``keep_dir`` if melodies may be kept there; ValueError if it lies in a committed reference run.

    A reference run is a folder ``results/<name>/`` with a ``manifest.json`` other than
    ``results/local/`` (``./study.sh --reference`` writes them; results/default is the committed one).
    """
    folder = Path(keep_dir)
    results = results_dir.resolve()
    for place in (folder.resolve(), *folder.resolve().parents):
        if place.parent == results and place.name != LOCAL_RUNS and (place / run_folder.MANIFEST).exists():
            raise ValueError(
                f"`keep_dir` {str(keep_dir)!r} lies in the reference run {place}, which is committed: "
                f"keep melodies in {results / LOCAL_RUNS} (the default, {DEFAULT_KEEP_DIR.relative_to(REPO_DIR)}) "
                "or a folder of your own"
            )
    return folder


def keep_melody(keep_dir: str | Path, tokens: np.ndarray) -> tuple[Path, int]:
    """Append a melody to ``KEPT_MIDI`` in ``keep_dir`` (a bar of rest between melodies); (path, melodies kept).

    ValueError, and nothing written, if ``keep_dir`` lies in a committed reference run (``check_keep_dir``).
    """
    folder = check_keep_dir(keep_dir)
    tokens = check_tokens(np.asarray(tokens, dtype=TOKEN_DTYPE))[None]
    windows_path = folder / KEPT_WINDOWS
    if windows_path.exists():
        tokens = np.concatenate([np.load(windows_path, allow_pickle=False), tokens])
    folder.mkdir(parents=True, exist_ok=True)
    np.save(windows_path, tokens)
    return generate.write_medley(tokens, folder / KEPT_MIDI), len(tokens)


# --------------------------------------------------------------------------------------------
# The widgets


class ExplorerPanel:
    """ipywidgets for an ``Explorer``: every change decodes again and shows A, B and the result at once.

    ``panel.widget`` is the box to display; ``panel.decoded`` the current melody and
    ``panel.seconds`` how long the last decoding and drawing took. Melody A's box takes a test
    melody's number (Enter or leaving the box applies it); "MIDI as A" reads a file and offers its
    tracks and the bar its window starts at. A new A always shows in A's view; with "A -> B" at 1,
    where A has no weight, the slider moves back to 0 so that the current melody is the new A's.
    Bad input (an unreadable MIDI file, a number out of range) is reported in the status line and
    leaves the current melody as it is. "keep" appends the current melody to ``keep_dir``.
    """

    def __init__(
        self,
        explorer: Explorer,
        number_a: int = 0,
        number_b: int = 1,
        temperature: float = 0.0,
        seed: int = 0,
        keep_dir: str | Path = DEFAULT_KEEP_DIR,
    ):
        self.explorer = explorer
        self.start = (number_a, number_b, temperature, seed)  # where ``moves(away=False)`` leads back to
        self.keep_dir = check_keep_dir(keep_dir)
        self.choice = Choice(
            test_melody(explorer, number_a), test_melody(explorer, number_b), temperature=temperature, seed=seed
        )
        self.source_a, self.source_b = f"test melody Nr. {number_a}", f"test melody Nr. {number_b}"
        self.rng = np.random.default_rng(seed)  # draws the numbers of "random A"
        self.tune: Tune | None = None
        self._encodings: dict[bytes, np.ndarray] = {}
        self._unmoved: dict[tuple, np.ndarray] = {}
        self._holding = False
        last = len(explorer.test) - 1
        wide = {"style": {"description_width": "initial"}}
        self.number_a = widgets.Text(
            str(number_a),
            description="melody A",
            placeholder=f"test melody Nr. 0-{last}",
            continuous_update=False,
            **wide,
        )
        self.random_a = widgets.Button(description="random A")
        self.upload = widgets.FileUpload(accept=".mid,.midi", multiple=False, description="MIDI as A")
        self.tune_track = widgets.Dropdown(
            description="track", options=[], layout=widgets.Layout(display="none", width="auto"), **wide
        )
        self.tune_bar = widgets.IntSlider(
            1, min=1, max=1, description="from bar", layout=widgets.Layout(display="none"), **wide
        )
        self.number_b = widgets.BoundedIntText(number_b, min=0, max=last, description="melody B", **wide)
        self.alpha = widgets.FloatSlider(0.0, min=0.0, max=1.0, step=0.05, description="A -> B", **wide)
        self.temperature = widgets.FloatSlider(
            temperature, min=0.0, max=MAX_TEMPERATURE, step=0.05, description="temperature", **wide
        )
        self.seed = widgets.IntText(seed, description="seed", **wide)
        self.ks = {  # long names: a fixed label column keeps the sliders long and aligned
            name: widgets.FloatSlider(
                0.0,
                min=-K_LIMIT,
                max=K_LIMIT,
                step=0.25,
                description=EXPLORER_LABELS[name],
                style={"description_width": "210px"},
                layout=widgets.Layout(width="420px"),
            )
            for name in explorer.vectors
        }
        self.keep = widgets.Button(description="keep", tooltip=f"append to {KEPT_MIDI} in {self.keep_dir}")
        self.status = widgets.Label()
        self.view_a, self.view_b, self.view = widgets.HTML(), widgets.HTML(), widgets.HTML()
        self._wire()
        self._show_a()
        self._show_b()
        self.refresh()
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.number_a, self.random_a, self.upload]),
                widgets.HBox([self.tune_track, self.tune_bar]),
                widgets.HBox([self.number_b, self.alpha]),
                widgets.HBox([self.temperature, self.seed, self.keep]),
                widgets.HBox(list(self.ks.values()), layout=widgets.Layout(flex_flow="row wrap")),
                self.status,
                widgets.HBox([self.view_a, self.view_b], layout=widgets.Layout(flex_flow="row wrap")),
                self.view,
            ]
        )

    def _wire(self) -> None:
        self._observe(self.number_a, lambda new: self.pick_a_number(new))
        self._observe(self.number_b, lambda new: self.set_b(test_melody(self.explorer, new), f"test melody Nr. {new}"))
        self._observe(self.alpha, lambda new: self.set(alpha=new))
        self._observe(self.temperature, lambda new: self.set(temperature=new))
        self._observe(self.seed, lambda new: self.set(seed=new))
        for name, slider in self.ks.items():
            self._observe(slider, lambda new, name=name: self.set(ks={**self.choice.ks, name: new}))
        self._observe(self.upload, self.load_upload)
        self._observe(self.tune_track, lambda new: self.pick_tune_window(new, None))
        self._observe(self.tune_bar, lambda new: self.pick_tune_window(self.tune_track.value, new))
        self.random_a.on_click(lambda _: self.pick_random_a())
        self.keep.on_click(lambda _: self.keep_current())

    def _observe(self, control: widgets.Widget, act) -> None:
        """Call ``act(new value)`` on every change of ``control`` the user makes
        (not while the panel sets controls itself)."""
        control.observe(lambda change: None if self._holding else act(change.new), "value")

    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        """Set controls without their callbacks firing."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def set(self, **changes) -> None:
        """Change the choice and decode again."""
        self.choice = replace(self.choice, **changes)
        self.refresh()

    def _encode(self, tokens: np.ndarray) -> np.ndarray:
        key = np.asarray(tokens).tobytes()
        if key not in self._encodings:
            self._encodings[key] = encode_melody(self.explorer.model, check_tokens(tokens))
        return self._encodings[key]

    def refresh(self, note: str = "", started: float | None = None) -> None:
        """Decode the current choice, draw it, and report the time taken since ``started``
        (default: now) and ``note``."""
        started = time.perf_counter() if started is None else started
        choice = self.choice
        key = (choice.melody_a.tobytes(), choice.melody_b.tobytes(), choice.alpha)
        self.decoded = decode_between(
            self.explorer, choice, self._encode(choice.melody_a), self._encode(choice.melody_b), self._unmoved.get(key)
        )
        self._unmoved = {key: self.decoded.unmoved}
        where = f"A -> B {choice.alpha:.2f}, temperature {choice.temperature:.2f}, seed {choice.seed}"
        self.view.value = melody_html(self.decoded, f"the current melody ({where})")
        self.seconds = time.perf_counter() - started
        self.status.value = f"decoded and drawn in {self.seconds * 1000:.0f} ms" + (f"; {note}" if note else "")

    def _show_a(self) -> None:
        self.view_a.value = melody_card(self.choice.melody_a, f"melody A: {self.source_a}")

    def _show_b(self) -> None:
        self.view_b.value = melody_card(self.choice.melody_b, f"melody B: {self.source_b}")

    def set_a(self, tokens: np.ndarray, source: str) -> None:
        """A new melody A, shown in A's view; at "A -> B" = 1 the slider moves to 0 so that the new A is heard."""
        started = time.perf_counter()
        self.source_a = source
        note = f"melody A: {source}"
        changes: dict = {"melody_a": np.asarray(tokens, dtype=TOKEN_DTYPE)}
        if self.choice.alpha == 1.0:
            with self._hold():
                self.alpha.value = 0.0
            changes["alpha"] = 0.0
            note += ' ("A -> B" was at 1, all B: moved to 0 to play the new A)'
        self.choice = replace(self.choice, **changes)
        self._show_a()
        self.refresh(note, started)

    def set_b(self, tokens: np.ndarray, source: str) -> None:
        """A new melody B, shown in B's view."""
        started = time.perf_counter()
        self.source_b = source
        self.choice = replace(self.choice, melody_b=np.asarray(tokens, dtype=TOKEN_DTYPE))
        self._show_b()
        self.refresh(f"melody B: {source}", started)

    def pick_a_number(self, text: str) -> None:
        """Melody A from the text of its box: a test melody's number; an empty box (after an upload) changes nothing."""
        if not text.strip():
            return
        try:
            tokens = test_melody(self.explorer, int(text))
        except ValueError:
            self.status.value = f"melody A: type a test melody's number, 0-{len(self.explorer.test) - 1}; got {text!r}"
            return
        self._show_tune_controls(False)
        self.set_a(tokens, f"test melody Nr. {int(text)}")

    def pick_random_a(self) -> None:
        number = random_test_number(self.explorer, self.rng)
        with self._hold():
            self.number_a.value = str(number)
        self.pick_a_number(str(number))

    def load_upload(self, files: tuple) -> None:
        """Melody A from an uploaded MIDI file: its first pitched track, from its first bar;
        track and bar then chosen below.

        The upload box is emptied once read, so that uploading the same file again reads it again.
        """
        if not files:
            return
        upload = files[0]
        with self._hold():
            self.upload.value = ()
        try:
            tune = read_tune(bytes(upload["content"]), upload["name"])
        except UnreadableMidiError as error:
            self.status.value = str(error)
            return
        self.tune = tune
        with self._hold():
            self.number_a.value = ""
            self.number_a.placeholder = f"{tune.name} (or a test melody's number)"
            self.tune_track.options = [(melody_label(melody), index) for index, melody in enumerate(tune.melodies)]
            self.tune_track.value = 0
        self._show_tune_controls(True)
        self.pick_tune_window(0, None)
        if len(tune.melodies) > 1:
            self.status.value += f"; {len(tune.melodies)} melodies in the file: pick another under 'track'"

    def pick_tune_window(self, track: int, bar: int | None) -> None:
        """Melody A from the uploaded tune's melody Nr. ``track``, the window from ``bar`` (None: its first)."""
        melody = self.tune.melodies[track]
        bars = window_bars(melody)
        bar = bars.start if bar is None else bar
        with self._hold():
            self.tune_bar.min, self.tune_bar.max = 1, bars.stop - 1  # min first: the old max may lie below the new min
            self.tune_bar.min = bars.start
            self.tune_bar.value = bar
            self.tune_bar.disabled = len(bars) == 1
        where = melody_label(melody).rsplit(", bars", 1)[0]
        self.set_a(tune_window(melody, bar), f"{self.tune.name}, {where}, bars {bar}-{bar + BARS_PER_WINDOW - 1}")

    def _show_tune_controls(self, shown: bool) -> None:
        for control in (self.tune_track, self.tune_bar):
            control.layout.display = None if shown else "none"
        if not shown:
            self.number_a.placeholder = f"test melody Nr. 0-{len(self.explorer.test) - 1}"

    def keep_current(self) -> None:
        try:
            path, count = keep_melody(self.keep_dir, self.decoded.tokens)
        except ValueError as error:
            self.status.value = str(error)
            return
        self.status.value = f"kept: {count} melodies in {path}"

    def moves(self, away: bool = True) -> list[tuple[str, widgets.Widget, object]]:
        """(label, control, value) for every control, as a user would move each once.

        Away: A and B two test melodies on, "A -> B" at 0.5, temperature 0.5, seed + 1, every k at 1.
        Back (``away=False``): the panel's starting state, A and B last (at "A -> B" 0).
        """
        number_a, number_b, temperature, seed = self.start
        size = len(self.explorer.test)
        if not away:
            back = [
                ("seed", self.seed, seed),
                ("temperature", self.temperature, temperature),
                ("A -> B", self.alpha, 0.0),
            ]
            back += [(slider.description, slider, 0.0) for slider in self.ks.values()]
            return back + [("melody A", self.number_a, str(number_a)), ("melody B", self.number_b, number_b)]
        away_moves = [
            ("melody A", self.number_a, str((number_a + 2) % size)),
            ("melody B", self.number_b, (number_b + 2) % size),
        ]
        away_moves += [
            ("A -> B", self.alpha, 0.5),
            ("temperature", self.temperature, 0.5),
            ("seed", self.seed, seed + 1),
        ]
        return away_moves + [(slider.description, slider, 1.0) for slider in self.ks.values()]

    def time_moves(self, moves: list[tuple[str, widgets.Widget, object]]) -> pd.DataFrame:
        """Make the moves one after the other; per move its control and the milliseconds the panel took to answer."""
        rows = []
        for label, control, value in moves:
            control.value = value
            rows.append({"control": label, "milliseconds": self.seconds * 1000})
        return pd.DataFrame(rows)

    def html(self) -> str:
        """A, B and the current melody as static HTML, for a reader of the executed notebook."""
        return (
            '<div style="display: flex; flex-wrap: wrap; gap: 16px">'
            f"{self.view_a.value}{self.view_b.value}</div>{self.view.value}"
        )


# --------------------------------------------------------------------------------------------
# A copy of notebook 08 to open in JupyterLab


def prepare_notebook(
    run_dir: str | Path,
    keep_dir: str | Path = DEFAULT_KEEP_DIR,
    out: str | Path | None = None,
    notebook: Path = NOTEBOOK,
) -> Path:
    """Write a copy of notebook 08 set to ``run_dir`` and ``keep_dir`` (papermill's parameters,
    not run) and return its path.

    ``out`` defaults to ``keep_dir/08_explore.ipynb``. The paths the copy names are relative to its
    folder, where JupyterLab starts its kernel. FileExistsError if ``out`` exists (the user's copy,
    perhaps with their changes); ValueError if ``keep_dir`` or ``out`` lies in a committed reference run.
    """
    import papermill  # the explorer itself runs without it

    keep = check_keep_dir(keep_dir)
    target = Path(out) if out is not None else keep / NOTEBOOK.name
    check_keep_dir(target.parent)
    if target.exists():
        raise FileExistsError(
            f"{target} exists (your copy): open it, or delete it or pass another --out to start afresh"
        )
    if not (Path(run_dir) / run_folder.TRAINED_MODEL).exists():
        raise FileNotFoundError(
            f"no trained model at {Path(run_dir) / run_folder.TRAINED_MODEL}: name a run folder notebook 03 has run in"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = target.parent.resolve()
    parameters = {
        "run_dir": os.path.relpath(Path(run_dir).resolve(), folder),
        "keep_dir": os.path.relpath(keep.resolve(), folder),
    }
    papermill.execute_notebook(str(notebook), str(target), parameters=parameters, prepare_only=True, progress_bar=False)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Write a copy of notebook 08 (the explorer) set to a run, to open in JupyterLab."
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=RESULTS_DIR / "default",
        help="run folder with training/model.pt (default: the committed results/default)",
    )
    parser.add_argument(
        "--keep-dir",
        type=Path,
        default=DEFAULT_KEEP_DIR,
        help="where 'keep' writes kept.mid (default: results/local/explore)",
    )
    parser.add_argument("--out", type=Path, default=None, help="the copy (default: KEEP_DIR/08_explore.ipynb)")
    args = parser.parse_args(argv)
    try:
        path = prepare_notebook(args.run_dir, args.keep_dir, args.out)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    print(f"wrote {path}\nopen it with: .venv/bin/jupyter lab {path}")


if __name__ == "__main__":
    main()
