"""Play with a trained model (notebook 08): pick melodies, move z, decode again, see and hear the result.

A user picks melody A (a test melody by number, or a MIDI file's window) and melody B, a point
between them (slerp, alpha 0..1), a step k along each attribute vector of notebook 07, a
temperature and a seed. ``decode_choice`` turns such a ``Choice`` into a melody and measures its
attributes beside those of the unmoved point, so a user sees whether a vector did what its name
says; ``keep_melody`` appends a melody to a MIDI file in the run folder.

These are plain functions, tested without a browser. ``ExplorerPanel`` only wires ipywidgets to
them: every widget change calls ``decode_choice`` and shows ``melody_html``. The model is touched
in two places only, ``encode_melody`` and ``decode_point`` (and ``load_explorer``, which sets up),
so another decoding path needs changes there alone.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

import ipywidgets as widgets
import numpy as np
import pandas as pd

from musicvae_lib import data, features, generate, inference, latent, render, run_folder, training
from musicvae_lib.midi_melodies import melody_windows_from_midi
from musicvae_lib.model import MusicVAE
from musicvae_lib.representation import TOKEN_DTYPE, check_tokens

# notebook 07's five attribute vectors (features.ATTRIBUTES) and pitch range, as the issue lists them
EXPLORER_ATTRIBUTES = (*features.ATTRIBUTES, "pitch_range")
K_LIMIT = 2.0  # sliders run k from -2 to 2: the MusicVAE supplement moves by up to 1.5 vectors
MAX_TEMPERATURE = 1.5  # notebook 04's hottest set
KEPT_WINDOWS = Path("explore") / "kept.npy"  # the same melodies as tokens, so a keep appends without re-reading MIDI


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
    attributes: pd.DataFrame  # one row per attribute: unmoved (alpha point, k = 0, greedy), result, change


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


def midi_windows(content: bytes, name: str) -> np.ndarray:
    """The melody windows of a MIDI file's bytes, read as notebook 01 reads a MIDI folder: uint8 [n, steps].

    The reader returns a file's windows deduplicated and sorted by their tokens, not by time.
    UnreadableMidiError with the data chapter's skip reason if the file gives none.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.mid"
        path.write_bytes(content)
        found = melody_windows_from_midi(path)
    if found.skip_reason is not None:
        raise UnreadableMidiError(f"{name} gives no melody: skipped, {found.skip_reason} (as notebook 01 skips it)")
    return found.windows


# --------------------------------------------------------------------------------------------
# The model


def encode_melody(model: MusicVAE, tokens: np.ndarray) -> np.ndarray:
    """mu of q(z|x) for one melody: float [z_size]."""
    mu, _ = inference.encode_windows(model, np.asarray(tokens)[None])
    return mu[0].astype(np.float64)


def decode_point(model: MusicVAE, z: np.ndarray, temperature: float, seed: int) -> np.ndarray:
    """One melody decoded from z (float [z_size]): uint8 [steps]; greedy at temperature 0, else sampled with ``seed``."""
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
    return pd.DataFrame(
        {"unmoved": table.iloc[0], "result": table.iloc[1], "change": table.iloc[1] - table.iloc[0]}
    )


def decode_choice(explorer: Explorer, choice: Choice) -> Decoded:
    """Decode the point a ``Choice`` names and measure it against the unmoved point (same alpha, every k = 0, greedy)."""
    z_a = encode_melody(explorer.model, check_tokens(choice.melody_a))
    z_b = encode_melody(explorer.model, check_tokens(choice.melody_b))
    z = latent_point(z_a, z_b, choice.alpha, explorer.vectors, choice.ks)
    tokens = decode_point(explorer.model, z, choice.temperature, choice.seed)
    moved = choice.temperature > 0 or any(k != 0 for k in choice.ks.values())
    unmoved = decode_point(explorer.model, latent.slerp(z_a, z_b, choice.alpha), 0.0, 0) if moved else tokens
    return Decoded(tokens, z, measured_attributes(unmoved, tokens))


def melody_html(decoded: Decoded, title: str) -> str:
    """HTML of the decoded melody: notation, piano roll, audio player and its attribute table."""
    view = render.melody_view(decoded.tokens, title).data
    table = decoded.attributes.rename(index=lambda name: features.FEATURE_UNITS.get(name, name))
    return f'<div style="display: flex; gap: 24px; align-items: flex-start">{view}{table.round(3).to_html(border=0)}</div>'


def keep_melody(run_dir: str | Path, tokens: np.ndarray) -> tuple[Path, int]:
    """Append a melody to ``run_folder.KEPT_MIDI`` (a bar of rest between melodies); (path, melodies kept)."""
    run = Path(run_dir)
    tokens = check_tokens(np.asarray(tokens, dtype=TOKEN_DTYPE))[None]
    windows_path = run / KEPT_WINDOWS
    if windows_path.exists():
        tokens = np.concatenate([np.load(windows_path, allow_pickle=False), tokens])
    windows_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(windows_path, tokens)
    return generate.write_medley(tokens, run / run_folder.KEPT_MIDI), len(tokens)


# --------------------------------------------------------------------------------------------
# The widgets


class ExplorerPanel:
    """ipywidgets for an ``Explorer``: every change decodes again and shows the result at once.

    ``panel.widget`` is the box to display; ``panel.decoded`` the current melody and
    ``panel.seconds`` how long the last decoding and drawing took. Bad input (an unreadable MIDI
    file) is reported in the status line and leaves the current melody as it is.
    """

    def __init__(self, explorer: Explorer, number_a: int = 0, number_b: int = 1, temperature: float = 0.0, seed: int = 0):
        self.explorer = explorer
        self.choice = Choice(test_melody(explorer, number_a), test_melody(explorer, number_b), temperature=temperature, seed=seed)
        self.rng = np.random.default_rng(seed)  # draws the numbers of "random A"
        last = len(explorer.test) - 1
        wide = {"style": {"description_width": "initial"}}
        self.number_a = widgets.BoundedIntText(number_a, min=0, max=last, description="melody A", **wide)
        self.random_a = widgets.Button(description="random A")
        self.upload = widgets.FileUpload(accept=".mid,.midi", multiple=False, description="MIDI as A")
        self.number_b = widgets.BoundedIntText(number_b, min=0, max=last, description="melody B", **wide)
        self.alpha = widgets.FloatSlider(0.0, min=0.0, max=1.0, step=0.05, description="A -> B", **wide)
        self.temperature = widgets.FloatSlider(temperature, min=0.0, max=MAX_TEMPERATURE, step=0.05, description="temperature", **wide)
        self.seed = widgets.IntText(seed, description="seed", **wide)
        self.ks = {
            name: widgets.FloatSlider(0.0, min=-K_LIMIT, max=K_LIMIT, step=0.25, description=name.replace("_", " "), **wide)
            for name in explorer.vectors
        }
        self.keep = widgets.Button(description="keep", tooltip=f"append to {run_folder.KEPT_MIDI} in the run folder")
        self.status = widgets.Label()
        self.view = widgets.HTML()
        self._wire()
        self.refresh()
        self.widget = widgets.VBox([
            widgets.HBox([self.number_a, self.random_a, self.upload]),
            widgets.HBox([self.number_b, self.alpha]),
            widgets.HBox([self.temperature, self.seed, self.keep]),
            widgets.HBox(list(self.ks.values()), layout=widgets.Layout(flex_flow="row wrap")),
            self.status,
            self.view,
        ])

    def _wire(self) -> None:
        self.number_a.observe(lambda change: self.set(melody_a=test_melody(self.explorer, change.new)), "value")
        self.number_b.observe(lambda change: self.set(melody_b=test_melody(self.explorer, change.new)), "value")
        self.alpha.observe(lambda change: self.set(alpha=change.new), "value")
        self.temperature.observe(lambda change: self.set(temperature=change.new), "value")
        self.seed.observe(lambda change: self.set(seed=change.new), "value")
        for name, slider in self.ks.items():
            slider.observe(lambda change, name=name: self.set(ks={**self.choice.ks, name: change.new}), "value")
        self.random_a.on_click(lambda _: self.pick_random_a())
        self.upload.observe(lambda change: self.load_upload(change.new), "value")
        self.keep.on_click(lambda _: self.keep_current())

    def set(self, **changes) -> None:
        """Change the choice and decode again."""
        self.choice = replace(self.choice, **changes)
        self.refresh()

    def refresh(self) -> None:
        started = time.perf_counter()
        self.decoded = decode_choice(self.explorer, self.choice)
        self.view.value = melody_html(self.decoded, "the current melody")
        self.seconds = time.perf_counter() - started
        self.status.value = f"decoded and drawn in {self.seconds * 1000:.0f} ms"

    def pick_random_a(self) -> None:
        self.number_a.value = random_test_number(self.explorer, self.rng)

    def load_upload(self, files: tuple) -> None:
        """Melody A from an uploaded MIDI file: its first window in the reader's order (sorted by tokens, not by time)."""
        if not files:
            return
        upload = files[0]
        try:
            windows = midi_windows(bytes(upload["content"]), upload["name"])
        except UnreadableMidiError as error:
            self.status.value = str(error)
            return
        self.set(melody_a=windows[0])
        self.status.value += f"; melody A: {upload['name']}, window 1 of {len(windows)}"

    def keep_current(self) -> None:
        path, count = keep_melody(self.explorer.run_dir, self.decoded.tokens)
        self.status.value = f"kept: {count} melodies in {path}"
