"""Figures: piano rolls of token windows (alone or input above reconstruction) and the dataset chapter's counts.

Functions draw on an ``ax`` they are given or return a new Figure; none calls ``plt.show()``, so a
notebook decides what to display and ``save_figure`` writes the same bytes for the same figure.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import IPython
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pretty_midi
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, MultipleLocator
from PIL import Image

from musicvae_lib import features, representation
from musicvae_lib.loss import NATS_PER_BIT

STEP_AXIS_LABEL = "step (16th notes)"
PITCH_AXIS_LABEL = "MIDI pitch"
MIN_PITCH_SPAN = 12  # semitones shown at least: an octave always holds a C to label, and rolls keep a similar scale
EMPTY_PITCH_RANGE = (60, 72)  # C4..C5, the axis a melody without notes gets
PNG_DPI = 150
INLINE_DPI = 100  # matplotlib-inline's figure resolution in a notebook
PNG_COLOURS = 256
NOTE_COLOR = "#3a6ea5"
NOTE_EDGE_COLOR = "#1b3552"
BLACK_KEY_SHADE = 0.93  # grey level of black-key rows, light enough to keep notes in front
BLACK_KEY_PITCH_CLASSES = (1, 3, 6, 8, 10)  # C#, D#, F#, G#, A#


def pitch_axis_limits(melodies: Sequence[np.ndarray]) -> tuple[int, int]:
    """Lowest and highest MIDI pitch to show for ``melodies`` (token arrays [n_steps]), both included.

    The notes' range, widened evenly to at least ``MIN_PITCH_SPAN`` semitones; ``EMPTY_PITCH_RANGE``
    if no melody has a note. Pass one range to several rolls to compare them on the same scale.
    """
    pitches = [
        note.pitch_midi
        for tokens in melodies
        for note in representation.tokens_to_notes(representation.melody_tokens(tokens))
    ]
    if not pitches:
        return EMPTY_PITCH_RANGE
    low, high = min(pitches), max(pitches)
    missing = MIN_PITCH_SPAN - (high - low)
    if missing > 0:
        low -= missing // 2
        high += missing - missing // 2
    return low, high


def piano_roll(
    tokens: np.ndarray,
    ax: Axes | None = None,
    title: str | None = None,
    pitch_limits_midi: tuple[int, int] | None = None,
) -> Axes:
    """Draw a melody (tokens uint8 [n_steps]) as a piano roll: one rectangle per note.

    A note from step ``s`` to ``e`` at pitch ``p`` is the rectangle ``x = s..e, y = p-0.5..p+0.5``,
    so ``ax.patches`` holds exactly the notes. Beat lines every 4 steps, bar lines every 16; the
    pitch axis labels every C with name and number. ``pitch_limits_midi`` (lowest, highest) fixes the
    pitch axis, default ``pitch_axis_limits([tokens])``. Draws on ``ax``, or on a new figure if None.
    """
    tokens = representation.melody_tokens(tokens)
    n_steps = len(tokens)
    low, high = pitch_axis_limits([tokens]) if pitch_limits_midi is None else pitch_limits_midi
    if low > high:
        raise ValueError(f"`pitch_limits_midi` must be (lowest, highest), got {pitch_limits_midi}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 2.6), layout="constrained")

    # Black-key rows shaded as on a keyboard, so a reader can count semitones between notes.
    row_shades = [BLACK_KEY_SHADE if pitch % 12 in BLACK_KEY_PITCH_CLASSES else 1.0 for pitch in range(low, high + 1)]
    ax.imshow(
        np.array(row_shades)[:, None],  # (n_pitches, 1): one grey value per pitch row
        cmap="gray",
        vmin=0.0,
        vmax=1.0,
        aspect="auto",
        origin="lower",
        extent=(0, n_steps, low - 0.5, high + 0.5),
        interpolation="nearest",
        zorder=0,
    )
    for step in range(0, n_steps + 1, representation.STEPS_PER_QUARTER):
        is_bar = step % representation.STEPS_PER_BAR == 0
        ax.axvline(step, color="0.35" if is_bar else "0.85", linewidth=1.2 if is_bar else 0.6, zorder=1)
    notes = representation.tokens_to_notes(tokens)
    for note in notes:
        ax.add_patch(
            Rectangle(
                (note.start_step, note.pitch_midi - 0.5),
                note.end_step - note.start_step,
                1.0,
                facecolor=NOTE_COLOR,
                edgecolor=NOTE_EDGE_COLOR,
                linewidth=0.8,
                zorder=2,
            )
        )
    if not notes:
        ax.text(
            0.5,
            0.5,
            "no notes (rest only)",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.3",
            bbox={"facecolor": "white", "edgecolor": "0.7", "boxstyle": "round"},
        )

    ax.set_xlim(0, n_steps)
    ax.xaxis.set_major_locator(MultipleLocator(step_tick_spacing(n_steps)))
    ax.set_ylim(low - 0.5, high + 0.5)
    labelled = [pitch for pitch in range(low, high + 1) if pitch % 12 == 0]
    ax.yaxis.set_major_locator(FixedLocator(labelled))
    ax.set_yticklabels([f"{pitch_name(pitch)} ({pitch})" for pitch in labelled])
    ax.yaxis.set_minor_locator(MultipleLocator(1))
    ax.set_xlabel(STEP_AXIS_LABEL)
    ax.set_ylabel(PITCH_AXIS_LABEL)
    if title:
        ax.set_title(title)
    return ax


def step_tick_spacing(n_steps: int) -> int:
    """Steps between labelled ticks: every beat up to 4 bars, every bar beyond (16 bars would crowd 64 labels)."""
    return (
        representation.STEPS_PER_QUARTER
        if n_steps <= 4 * representation.STEPS_PER_BAR
        else representation.STEPS_PER_BAR
    )


def piano_roll_pair(
    original: np.ndarray,
    reconstruction: np.ndarray,
    titles: tuple[str, str] = ("input", "reconstruction"),
) -> Figure:
    """Two piano rolls stacked, input above output, on the same pitch and step axes.

    Both melodies are token arrays [n_steps] of the same length; ValueError otherwise. Windows
    longer than 4 bars get twice the width: 16 bars on the 2-bar width leave a 16th note 2 pixels.
    """
    original, reconstruction = representation.melody_tokens(original), representation.melody_tokens(reconstruction)
    if len(original) != len(reconstruction):
        raise ValueError(
            f"`original` and `reconstruction` must have the same number of steps, got {len(original)} and "
            f"{len(reconstruction)}"
        )
    shared_range = pitch_axis_limits([original, reconstruction])
    width = 6.4 if len(original) <= 4 * representation.STEPS_PER_BAR else 12.8
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(width, 4.8), sharex=True, layout="constrained")
    piano_roll(original, ax=top, title=titles[0], pitch_limits_midi=shared_range)
    piano_roll(reconstruction, ax=bottom, title=titles[1], pitch_limits_midi=shared_range)
    top.set_xlabel("")
    return fig


def compact_png(fig: Figure, dpi: float = PNG_DPI, **savefig: Any) -> bytes:
    """``fig`` as a PNG of at most 256 colours: a third of the bytes of a full-colour one, alike to the eye.

    Scatter plots of thousands of anti-aliased points make full-colour PNGs of a megabyte; a
    palette (median cut, no dithering) keeps every colour a plot really uses. The PNG carries no
    software version or date, so the same figure gives the same bytes.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None}, **savefig)
    image = (
        Image.open(buffer)
        .convert("RGB")
        .quantize(PNG_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    )
    compact = io.BytesIO()
    image.save(compact, format="png", optimize=True)
    return compact.getvalue()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a compact PNG (150 dpi, ``compact_png``) to ``path``, creating parent folders; returns the path.

    Re-running a notebook leaves unchanged figures unchanged in results/, byte for byte.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"`path` must end in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(compact_png(fig))
    return path


def show_figures_compact() -> None:
    """Show figures in this notebook as ``compact_png`` (at the inline backend's 100 dpi),
    keeping executed copies light.

    Replaces IPython's PNG formatter for matplotlib figures; outside IPython it does nothing.
    """
    shell = IPython.get_ipython()
    if shell is not None:
        formatter = shell.display_formatter.formatters["image/png"]
        formatter.for_type(Figure, lambda fig: compact_png(fig, INLINE_DPI, bbox_inches="tight"))


# --- dataset figures ---------------------------------------------------------------------------

LEVEL_COLORS = dict(zip(features.METRICAL_LEVELS, sns.color_palette("crest", len(features.METRICAL_LEVELS))))
COUNT_COLOR = "#3a6ea5"
SPECIAL_TOKEN_COLORS = {representation.NO_EVENT: "0.6", representation.NOTE_OFF: "#d08c3a"}
PITCH_CLASS_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
BEAT_SYLLABLES = ("", "e", "&", "a")  # how musicians count 16ths: 1 e & a 2 e & a ...


def pitch_name(pitch_midi: int) -> str:
    """Scientific pitch name of a MIDI pitch, e.g. 60 -> C4."""
    return pretty_midi.note_number_to_name(pitch_midi)


def count_bars(
    counts: Mapping[int, float], ax: Axes, title: str, xlabel: str, ylabel: str, label_pitches: bool = False
) -> Axes:
    """Bar chart of counts over integer keys; with ``label_pitches`` the x ticks name every C."""
    keys = sorted(counts)
    ax.bar(keys, [counts[k] for k in keys], width=0.85, color=COUNT_COLOR)
    if label_pitches and keys:
        c_pitches = [p for p in range(keys[0], keys[-1] + 1) if p % 12 == 0]
        ax.set_xticks(c_pitches, [f"{pitch_name(p)}\n({p})" for p in c_pitches])
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return ax


def histogram(values: Sequence[float], ax: Axes, title: str, xlabel: str, ylabel: str) -> Axes:
    """Histogram of whole-number values, one bin per value."""
    values = np.asarray(values)
    bins = np.arange(values.min(), values.max() + 2) - 0.5 if len(values) else 10
    ax.hist(values, bins=bins, color=COUNT_COLOR)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return ax


def kl_per_window(kl_bits: np.ndarray, ax: Axes, title: str, free_bits: float | None = None) -> Axes:
    """Histogram of each window's KL in bits, with lambda marked when the loss has free bits:
    is the budget spent evenly?"""
    ax.hist(np.asarray(kl_bits), bins=40, color=COUNT_COLOR)
    if free_bits:
        ax.axvline(free_bits, color="0.3", linestyle="--", label=f"lambda = {free_bits:.1f} bits")
        ax.legend()
    ax.set(title=title, xlabel="KL(q(z|x) || N(0, I)), bits", ylabel="windows")
    return ax


def accuracy_by_onsets(table: pd.DataFrame, ax: Axes, title: str) -> Axes:
    """Bars of accuracy per onset bin (``evaluate.accuracy_by_onsets``), each labelled with its share of windows."""
    bars = ax.bar(table["onsets"], table["accuracy"], color=COUNT_COLOR)
    ax.bar_label(bars, labels=[f"{share:.0%}" for share in table["share of windows"]], padding=2)
    ax.set(title=title, xlabel="onsets in the window", ylabel="greedy accuracy (z = mu)", ylim=(0, 1.08))
    return ax


def beat_count_labels(n_positions: int = representation.STEPS_PER_BAR) -> list[str]:
    """How musicians count the 16th positions of a bar: 1, 1e, 1&, 1a, 2, ..."""
    return [f"{p // 4 + 1}{BEAT_SYLLABLES[p % 4]}" for p in range(n_positions)]


def onset_positions(onset_counts: np.ndarray, ax: Axes, title: str) -> Axes:
    """Onsets per 16th position of the bar [16], coloured by metrical level, ticks counted 1 e & a."""
    positions = np.arange(len(onset_counts))
    levels = [features.metrical_level(p) for p in positions]
    ax.bar(positions, onset_counts, color=[LEVEL_COLORS[level] for level in levels], width=0.85)
    ax.set_xticks(positions, beat_count_labels(len(positions)))
    handles = [Rectangle((0, 0), 1, 1, color=LEVEL_COLORS[level]) for level in features.METRICAL_LEVELS]
    ax.set_ylim(top=max(onset_counts.max(), 1) * 1.35)  # room for the legend above the bars
    ax.legend(handles, features.METRICAL_LEVELS, title="metrical level", fontsize="small", ncols=5, loc="upper right")
    ax.set(title=title, xlabel="position in the bar (16th notes, counted 1 e & a)", ylabel="onsets")
    return ax


def class_usage(class_counts: np.ndarray, ax: Axes, title: str) -> Axes:
    """How often each of the 90 token classes occurs, log scale; never-used classes marked below the bars."""
    counts = np.asarray(class_counts)
    classes = np.arange(len(counts))
    colors = [SPECIAL_TOKEN_COLORS.get(c, COUNT_COLOR) for c in classes]
    ax.bar(classes, counts, color=colors, width=0.85)
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.3)
    unused = classes[counts == 0]
    ax.plot(unused, np.full(len(unused), 0.5), "x", color="0.5")
    labels = {
        "no-event (0)": SPECIAL_TOKEN_COLORS[0],
        "note-off (1)": SPECIAL_TOKEN_COLORS[1],
        "note-on (2-89)": COUNT_COLOR,
    }
    handles = [Rectangle((0, 0), 1, 1, color=color) for color in labels.values()]
    handles.append(plt.Line2D([], [], marker="x", color="0.5", linestyle=""))
    ax.legend(handles, [*labels, "never used"], fontsize="small", ncols=4, loc="upper right")
    c_pitches = [p for p in range(representation.MIN_PITCH, representation.MAX_PITCH + 1) if p % 12 == 0]
    ax.set_xticks([representation.pitch_to_token(p) for p in c_pitches], [pitch_name(p) for p in c_pitches])
    ax.set(title=title, xlabel="token class (note-on tokens labelled by pitch)", ylabel="steps (log scale)")
    return ax


# --- training figures --------------------------------------------------------------------------

SPLIT_COLORS = {"train": "#3a6ea5", "valid": "#d08c3a"}


def training_curves(epochs: pd.DataFrame, free_nats: float | None = None) -> Figure:
    """Per-epoch curves from the training logs' epochs.csv: reconstruction, KL (bits), total, accuracy, beta,
    learning rate."""
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), layout="constrained", sharex=True)
    panels = [
        ("losses/r_loss", "reconstruction", "nats per sequence"),
        ("losses/kl_bits", "KL divergence", "bits per sequence"),
        ("loss", "total loss", "nats per sequence"),
        ("metrics/accuracy", "teacher-forced accuracy", "share of steps"),
    ]
    for ax, (column, title, unit) in zip(axes.flat, panels):
        for split, color in SPLIT_COLORS.items():
            ax.plot(epochs["epoch"], epochs[f"{split}/{column}"], marker="o", markersize=3, color=color, label=split)
        ax.set(title=title, ylabel=unit)
        ax.legend(fontsize="small")
    if free_nats:
        mark_lambda(axes[0, 1], free_nats)
    axes[1, 1].plot(epochs["epoch"], epochs["train/losses/kl_beta"], marker="o", markersize=3, color="0.3")
    axes[1, 1].set(title="beta (KL weight)", ylabel="beta")
    axes[1, 2].plot(epochs["epoch"], epochs["learning_rate"], marker="o", markersize=3, color="0.3")
    axes[1, 2].set(title="learning rate", ylabel="learning rate (log scale)", yscale="log")
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    return fig


def mark_lambda(ax: Axes, free_nats: float) -> None:
    """lambda as a dashed line on a KL axis in bits, named at its right end, where no legend covers it."""
    bits = free_nats / NATS_PER_BIT
    ax.axhline(bits, color="0.5", linestyle="--")
    ax.set_ylim(top=max(ax.get_ylim()[1], bits * 1.15))  # room for the name above the line
    ax.annotate(
        f"lambda = {free_nats:g} nats = {bits:.0f} bits",
        xy=(0.98, bits),
        xycoords=("axes fraction", "data"),
        xytext=(0, 2),
        textcoords="offset points",
        ha="right",
        va="bottom",
        fontsize="small",
        color="0.3",
    )


def step_losses(steps: pd.DataFrame, spikes: pd.DataFrame, grad_clip: float | None = None) -> Figure:
    """Loss and gradient norm per optimiser step from steps.csv, with the loss spikes marked."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 5), layout="constrained", sharex=True)
    top.plot(steps["step"], steps["loss"], linewidth=0.6, color=SPLIT_COLORS["train"])
    top.scatter(spikes["step"], spikes["loss"], color="#c0392b", s=18, zorder=3, label=f"spikes ({len(spikes)})")
    top.set(title="training loss per step", ylabel="nats per sequence (log scale)", yscale="log")
    top.legend(fontsize="small")
    bottom.plot(steps["step"], steps["global_norm"], linewidth=0.6, color="0.3")
    bottom.scatter(spikes["step"], spikes["global_norm"], color="#c0392b", s=18, zorder=3)
    if grad_clip:
        bottom.axhline(grad_clip, color="#c0392b", linestyle="--", linewidth=1, label=f"clipping at {grad_clip:g}")
        bottom.legend(fontsize="small")
    bottom.set(
        title="gradient norm before clipping", xlabel="optimiser step", ylabel="global norm (log scale)", yscale="log"
    )
    return fig


# --- comparing sets of melodies (generated, test, training) ------------------------------------

REAL_SET_COLORS = {"train": "#3a6ea5", "test": "#6aa84f"}  # the real sets keep their colours in every figure
GENERATED_PALETTE = "flare"


def set_colors(set_names: Sequence[str]) -> dict[str, tuple | str]:
    """A colour per set: training and test fixed, generated sets shaded by their order (e.g. temperature)."""
    generated = [name for name in set_names if name not in REAL_SET_COLORS]
    shades = dict(zip(generated, sns.color_palette(GENERATED_PALETTE, max(len(generated), 1))))
    return {name: REAL_SET_COLORS.get(name, shades.get(name)) for name in set_names}


def set_bars(table: pd.DataFrame, ax: Axes, title: str, xlabel: str, ylabel: str) -> Axes:
    """Grouped bars: one group per row of ``table`` (a category), one bar per column (a set)."""
    colors = set_colors(list(table.columns))
    width = 0.8 / max(len(table.columns), 1)
    positions = np.arange(len(table))
    for k, name in enumerate(table.columns):
        ax.bar(
            positions + (k - (len(table.columns) - 1) / 2) * width, table[name], width, color=colors[name], label=name
        )
    ax.set_xticks(positions, [str(label) for label in table.index])
    ax.legend(fontsize="small", title="set")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return ax


def set_distributions(values: Mapping[str, np.ndarray], ax: Axes, title: str, ylabel: str) -> Axes:
    """One box per set (NaN dropped; the count kept in the axis label, or per tick where they differ),
    means as diamonds."""
    names = list(values)
    kept = [np.asarray(values[name], dtype=float)[~np.isnan(np.asarray(values[name], dtype=float))] for name in names]
    colors = set_colors(names)
    boxes = ax.boxplot(
        kept,
        patch_artist=True,
        showmeans=True,
        widths=0.6,
        meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "0.2"},
    )
    for patch, name in zip(boxes["boxes"], names):
        patch.set_facecolor(colors[name])
    counts = {len(v) for v in kept}
    if len(counts) == 1:  # one count for all: said once, so that the tick labels stay short and apart
        ax.set_xticks(np.arange(1, len(names) + 1), names)
        ax.set(title=title, xlabel=f"set ({counts.pop():,} melodies each)", ylabel=ylabel)
    else:
        ax.set_xticks(
            np.arange(1, len(names) + 1), [f"{name}\nn = {len(v):,}" for name, v in zip(names, kept)], fontsize="small"
        )
        ax.set(title=title, xlabel="set (n = melodies with a value)", ylabel=ylabel)
    return ax


def distance_densities(
    grid: np.ndarray, densities: Mapping[str, np.ndarray], ax: Axes, title: str, xlabel: str
) -> Axes:
    """Densities of distances (intra-set, inter-set, ...) drawn on their ONE common grid, as mgeval's figures."""
    for label, density in densities.items():
        ax.plot(grid, density, label=label)
    ax.legend(fontsize="small")
    ax.set(title=title, xlabel=xlabel, ylabel="density")
    return ax


def transition_heatmaps(matrices: Mapping[str, np.ndarray], title: str) -> Figure:
    """12x12 pitch-class transition matrices side by side (row: from, column: to), rows normalised to shares."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.6 * len(matrices), 3.6), layout="constrained", squeeze=False)
    names = list(PITCH_CLASS_NAMES)
    for ax, (name, matrix) in zip(axes[0], matrices.items()):
        matrix = np.asarray(matrix, dtype=float)
        rows = matrix.sum(axis=1, keepdims=True)
        shares = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
        sns.heatmap(
            shares,
            ax=ax,
            vmin=0,
            vmax=1,
            cmap="mako_r",
            square=True,
            cbar=ax is axes[0, -1],
            xticklabels=names,
            yticklabels=names,
            cbar_kws={"label": "share of the row"},
        )
        ax.set(title=name, xlabel="to pitch class", ylabel="from pitch class")
    fig.suptitle(title)
    return fig


def overlap_intervals(comparison: pd.DataFrame, ax: Axes, title: str) -> Axes:
    """Overlap with the reference set per feature (rows) and set (colours), 95% bootstrap intervals as bars.

    ``comparison`` is ``compare.compare_sets``'s table; the reference's rows (NaN overlap) are left out.
    """
    rows = comparison.dropna(subset=["overlap"])
    names = list(dict.fromkeys(rows["set"]))
    feature_names = list(dict.fromkeys(rows["feature"]))
    colors = set_colors(names)
    offsets = np.linspace(-0.3, 0.3, len(names)) if len(names) > 1 else np.zeros(1)
    for offset, name in zip(offsets, names):
        mine = rows[rows["set"] == name].set_index("feature").loc[feature_names]
        y = np.arange(len(feature_names)) + offset
        # a percentile interval of few bootstrap rounds can miss the point estimate: draw it as it is
        ax.hlines(y, mine["overlap_low"], mine["overlap_high"], color=colors[name], linewidth=1.5)
        ax.plot(mine["overlap"], y, "o", color=colors[name], label=name)
    ax.set_yticks(np.arange(len(feature_names)), feature_names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.legend(fontsize="small", title="set vs reference")
    ax.set(
        title=title, xlabel="overlap of intra-reference and inter-set distance densities (1 = alike)", ylabel="feature"
    )
    return ax


def two_sample_aucs(realism: pd.DataFrame, ax: Axes, title: str) -> Axes:
    """Each set's two-sample ROC AUC against the test melodies with its 95% interval (``two_sample.realism_table``).

    Rows without an AUC (the test melodies themselves) are left out; a dotted line marks chance, 0.5.
    """
    rows = realism.dropna(subset=["auc"])
    colors = set_colors(list(rows["set"]))
    y = np.arange(len(rows))
    ax.hlines(y, rows["auc_low"], rows["auc_high"], color=[colors[name] for name in rows["set"]], linewidth=2)
    ax.scatter(rows["auc"], y, color=[colors[name] for name in rows["set"]], zorder=3)
    ax.axvline(0.5, color="0.5", linestyle=":")
    ax.set_yticks(y, list(rows["set"]))
    ax.invert_yaxis()
    ax.set_xlim(0.4, 1.02)
    ax.set(title=title, xlabel="ROC AUC against test melodies (0.5 = indistinguishable), 95% interval", ylabel="set")
    return ax


def auc_frontier(realism: pd.DataFrame, column: str, ax: Axes, title: str, xlabel: str, floor: str = "train") -> Axes:
    """Each set's two-sample AUC (y, with its 95% interval) against ``column`` of ``two_sample.realism_table`` (x):
    the generators' frontier between passing for real and novelty or copies, one point per set in the legend.

    A dashed vertical line marks the test melodies' own value of ``column``; a dotted horizontal line the AUC of
    ``floor`` (two real sets, not drawn as a point: its melodies are training windows) and a grey one 0.5.
    """
    rows = realism.dropna(subset=["auc"])
    colors = set_colors([name for name in rows["set"] if name != floor])
    for row in rows[rows["set"] != floor].itertuples():
        value = getattr(row, column)
        errors = [[row.auc - row.auc_low], [row.auc_high - row.auc]]
        ax.errorbar(value, row.auc, yerr=errors, fmt="o", color=colors[row.set], label=f"{row.set}: {row.auc:.2f}")
    by_set = realism.set_index("set")
    if floor in by_set.index:
        ax.axhline(
            by_set.loc[floor, "auc"],
            color="0.3",
            linestyle=":",
            label=f"{floor} (floor): {by_set.loc[floor, 'auc']:.2f}",
        )
    if "test" in by_set.index and np.isfinite(by_set.loc["test", column]):
        ax.axvline(
            by_set.loc["test", column],
            color="0.3",
            linestyle="--",
            label=f"test melodies: {by_set.loc['test', column]:.2f}",
        )
    ax.axhline(0.5, color="0.7", linewidth=0.8)
    ax.set_ylim(0.45, 1.02)
    ax.set(title=title, xlabel=xlabel, ylabel="two-sample ROC AUC against test melodies")
    ax.legend(loc="lower left", fontsize=8)
    return ax


def separating_features(separating: pd.DataFrame, ax: Axes, title: str, top: int = 8) -> Axes:
    """The ``top`` features of ``two_sample.univariate_auc`` as bars from 0.5 to their AUC (right: more in the set)."""
    rows = separating.head(top)
    ax.barh(np.arange(len(rows)), rows["auc"] - 0.5, left=0.5, color=COUNT_COLOR)
    ax.axvline(0.5, color="0.5", linestyle=":")
    ax.set_yticks(np.arange(len(rows)), list(rows["feature"]))
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.0)
    ax.set(
        title=title,
        xlabel="ROC AUC of the feature alone (> 0.5: more in the set than in test melodies)",
        ylabel="feature (per melody)",
    )
    return ax


# --- the latent space (notebook 07) ------------------------------------------------------------


def piano_roll_grid(windows: Sequence[np.ndarray], titles: Sequence[str], columns: int = 1) -> Figure:
    """Several melodies as piano rolls on one pitch scale, ``columns`` to a row, in the order given."""
    if len(windows) != len(titles):
        raise ValueError(f"`windows` and `titles` must have the same length, got {len(windows)} and {len(titles)}")
    rows = -(-len(windows) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.4 * columns, 2.1 * rows), layout="constrained", squeeze=False)
    scale = pitch_axis_limits(windows)
    for ax, window, title in zip(axes.flat, windows, titles):
        piano_roll(window, ax, title, scale)
    for ax in axes.flat[len(windows) :]:
        ax.set_axis_off()
    return fig


def probe_r2(probes: pd.DataFrame, ax: Axes, title: str) -> Axes:
    """``latent.probe_r2``'s table as bars: R^2 per attribute, its standard deviation over the folds as error bars."""
    ax.barh(probes["attribute"], probes["r2"], xerr=probes["r2_std"], color=COUNT_COLOR)
    ax.set(title=title, xlabel="R^2", ylabel="attribute", xlim=(0, 1))
    return ax


def explained_variance(ratio: np.ndarray, ax: Axes, title: str) -> Axes:
    """Explained variance per principal component and its running total."""
    components = np.arange(1, len(ratio) + 1)
    ax.bar(components, ratio, color=COUNT_COLOR, label="per component")
    ax.plot(components, np.cumsum(ratio), color="0.2", label="cumulative")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize="small")
    ax.set(title=title, xlabel="principal component", ylabel="share of the variance of mu")
    return ax


def latent_scatter(
    coordinates: np.ndarray,
    ax: Axes,
    title: str,
    values: np.ndarray | None = None,
    value_label: str = "",
    axis_labels: tuple[str, str] = ("component 1", "component 2"),
) -> Axes:
    """Points [n, 2] of a 2-D view of the latent space, coloured by ``values`` (numbers or category names)."""
    coordinates = np.asarray(coordinates)
    if values is None:
        ax.scatter(coordinates[:, 0], coordinates[:, 1], s=4, color=COUNT_COLOR, alpha=0.6)
    elif np.asarray(values).dtype.kind in "fiu":
        points = ax.scatter(coordinates[:, 0], coordinates[:, 1], s=4, c=values, cmap="viridis", alpha=0.8)
        ax.figure.colorbar(points, ax=ax, label=value_label)
    else:
        for name in sorted(set(values)):
            mine = np.asarray(values) == name
            ax.scatter(coordinates[mine, 0], coordinates[mine, 1], s=4, alpha=0.7, label=f"{name} ({mine.sum():,})")
        ax.legend(fontsize="x-small", markerscale=3, title=value_label)
    ax.set(title=title, xlabel=axis_labels[0], ylabel=axis_labels[1])
    return ax


def set_scatter(
    coordinates: Mapping[str, np.ndarray],
    ax: Axes,
    title: str,
    axis_labels: tuple[str, str] = ("component 1", "component 2"),
) -> Axes:
    """Points of several sets in one 2-D view, one colour per set (prior samples grey)."""
    colors = set_colors([name for name in coordinates if name != "prior"]) | {"prior": "0.6"}
    for name, points in coordinates.items():
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.5, color=colors[name], label=f"{name} ({len(points):,})")
    ax.legend(fontsize="small", markerscale=3)
    ax.set(title=title, xlabel=axis_labels[0], ylabel=axis_labels[1])
    return ax


def interpolation_curves(curves: pd.DataFrame, ax: Axes, title: str) -> Axes:
    """Mean normalised Hamming distance to the end point against alpha, one line per method, +-1 std shaded."""
    for method, rows in curves.groupby("method", sort=False):
        ax.plot(rows["alpha"], rows["distance_mean"], marker="o", markersize=3, label=method)
        ax.fill_between(
            rows["alpha"],
            rows["distance_mean"] - rows["distance_std"],
            rows["distance_mean"] + rows["distance_std"],
            alpha=0.15,
        )
    ax.legend(fontsize="small", title="interpolation")
    ax.set(
        title=title, xlabel="alpha (0 = melody A, 1 = melody B)", ylabel="share of steps differing from the end point"
    )
    return ax


def attribute_effects(effects: pd.DataFrame, scales: Mapping[str, float]) -> Figure:
    """One panel per attribute vector: the measured change of every attribute against k (the MusicVAE paper's figure).

    ``effects`` is ``latent.attribute_effects``'s long table (vector, k, attribute, change). Each
    change is divided by ``scales[attribute]`` (e.g. its standard deviation over the training
    melodies) so that attributes of different units share one axis; the vector's own attribute is
    the thick line.
    """
    vectors = list(dict.fromkeys(effects["vector"]))
    fig, axes = plt.subplots(
        1, len(vectors), figsize=(3.4 * len(vectors), 4.2), layout="constrained", sharey=True, squeeze=False
    )
    for ax, vector in zip(axes[0], vectors):
        mine = effects[effects["vector"] == vector]
        for attribute, rows in mine.groupby("attribute", sort=False):
            ax.plot(
                rows["k"],
                rows["change"] / scales[attribute],
                marker="o",
                markersize=3,
                linewidth=2.5 if attribute == vector else 1,
                label=attribute,
            )
        ax.axhline(0, color="0.7", linewidth=0.8)
        ax.set(title=f"vector: {vector}", xlabel="k (z = mu + k v)")
    axes[0, 0].set_ylabel("mean change from k = 0\n(training standard deviations)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize="small", title="attribute")
    return fig


# --- the grid search (notebook 02) -------------------------------------------------------------


# grid_heatmaps' one colour meaning: yellow is the better end of a metric; grey shades for a metric without one
GRID_COLOURS = {
    "higher": ("viridis", "better: higher (yellow)"),
    "lower": ("viridis_r", "better: lower (yellow)"),
    None: ("Greys", "no better end (darker: larger)"),
}
# which end of a grid search metric (search.results_table) is better; KL, active dimensions and the rung have none
GRID_BETTER = {
    "negative_elbo_nats": "lower",
    "reconstruction_nats": "lower",
    "teacher_forced_accuracy": "higher",
    "sampling_accuracy": "higher",
    "greedy_accuracy": "higher",
}
# the grid search's heat maps (notebook 02): a column of search.results_table -> its title with unit
GRID_METRICS = {
    "rung": "rung reached (0: first budget only)",
    "kl_bits": "KL (bits per window)",
    "teacher_forced_accuracy": "teacher-forced accuracy",
    "sampling_accuracy": "sampling accuracy (Magenta)",
    "active_dimensions": "active dimensions (KL > 0.01 bits)",
}


def grid_heatmaps(
    table: pd.DataFrame,
    metrics: Mapping[str, str],
    chosen: tuple[float, float] | None = None,
    better: Mapping[str, str] | None = None,
) -> Figure:
    """One annotated heat map per metric over the beta x lambda grid, each with its colour bar;
    the chosen point outlined.

    ``table`` has columns beta, free_nats and the metrics (``search.results_table``); ``metrics``
    maps a column to its title with unit; ``better`` maps a column to "higher" or "lower" (e.g.
    ``GRID_BETTER``). One colour meaning throughout: in viridis, yellow is the better end of a
    metric with one, at the top of its colour bar, which says so; grey shades those without
    (darker = larger). Points without a value stay blank.
    """
    better = better or {}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.3 * len(metrics), 3.6), layout="constrained", squeeze=False)
    for ax, (column, title) in zip(axes[0], metrics.items()):
        if better.get(column) not in GRID_COLOURS:
            raise ValueError(f"`better[{column!r}]` must be 'higher' or 'lower', got {better[column]!r}")
        cmap, label = GRID_COLOURS[better.get(column)]
        grid = table.pivot(index="beta", columns="free_nats", values=column).sort_index(ascending=False)
        sns.heatmap(
            grid.astype(float),
            ax=ax,
            annot=True,
            fmt=".3g",
            cmap=cmap,
            cbar_kws={"label": label},
            xticklabels=[f"{v:g}" for v in grid.columns],
            yticklabels=[f"{v:g}" for v in grid.index],
        )
        if better.get(column) == "lower":  # the better end on top of every colour bar
            ax.collections[0].colorbar.ax.invert_yaxis()
        if chosen is not None and chosen[0] in grid.index and chosen[1] in grid.columns:
            row, col = list(grid.index).index(chosen[0]), list(grid.columns).index(chosen[1])
            ax.add_patch(Rectangle((col, row), 1, 1, fill=False, edgecolor="#c0392b", linewidth=3))
        ax.set(title=title, xlabel="lambda (free nats)", ylabel="beta")
    return fig
