"""Tests of musicvae_lib.plots: real matplotlib figures on the Agg backend."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from PIL import Image

from musicvae_lib import plots
from musicvae_lib.loss import NATS_PER_BIT
from musicvae_lib.representation import Note, notes_to_tokens

sys.path.insert(0, str(Path(__file__).parent))
from tiny_run import make_run  # noqa: E402


def melody(*notes: tuple[int, int, int], n_steps: int = 32) -> np.ndarray:
    """Tokens [n_steps] of (start_step, end_step, pitch_midi) notes."""
    return notes_to_tokens([Note(*note) for note in notes], n_steps)


NOTES = [(0, 4, 60), (4, 6, 62), (8, 16, 64), (16, 30, 79)]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_piano_roll_draws_one_rectangle_per_note_at_its_steps_and_pitch():
    ax = plots.piano_roll(melody(*NOTES), title="Sequence Nr. 1")

    rectangles = [(patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()) for patch in ax.patches]
    assert rectangles == [(start, pitch - 0.5, end - start, 1.0) for start, end, pitch in NOTES]
    assert ax.get_title() == "Sequence Nr. 1"
    assert ax.get_xlabel() == "step (16th notes)"
    assert ax.get_ylabel() == "MIDI pitch"
    assert ax.get_xlim() == (0.0, 32.0)
    assert ax.get_ylim() == (59.5, 79.5)


def test_piano_roll_marks_beats_and_bars_and_names_every_c():
    ax = plots.piano_roll(melody(*NOTES))
    ax.figure.canvas.draw()

    assert [tick for tick in ax.get_xticks() if 0 <= tick <= 32] == [0, 4, 8, 12, 16, 20, 24, 28, 32]
    vertical_lines = {line.get_xdata()[0]: line.get_linewidth() for line in ax.get_lines()}
    assert sorted(vertical_lines) == [0, 4, 8, 12, 16, 20, 24, 28, 32]
    assert [step for step, width in vertical_lines.items() if width > 1] == [0, 16, 32]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["C4 (60)", "C5 (72)"]


def test_a_16_bar_piano_roll_labels_bars_not_beats():
    ax = plots.piano_roll(melody(*NOTES, n_steps=256))
    ax.figure.canvas.draw()
    labels = [tick.get_text() for tick in ax.get_xticklabels() if 0 <= tick.get_position()[0] <= 256]
    assert labels == [str(step) for step in range(0, 257, 16)]
    two_bars = plots.piano_roll(melody(*NOTES))
    two_bars.figure.canvas.draw()
    shown = [tick.get_position()[0] for tick in two_bars.get_xticklabels() if 0 <= tick.get_position()[0] <= 32]
    assert shown == list(range(0, 33, 4))
    plt.close("all")


def test_piano_roll_draws_on_the_axes_it_is_given():
    fig, (left, right) = plt.subplots(1, 2)

    assert plots.piano_roll(melody((0, 8, 67)), ax=right) is right
    assert len(right.patches) == 1
    assert len(left.patches) == 0


def test_piano_roll_of_a_rest_melody_is_empty_but_labelled():
    ax = plots.piano_roll(np.zeros(32, dtype=np.uint8))

    assert len(ax.patches) == 0
    assert ax.get_xlabel() == "step (16th notes)"
    assert ax.get_ylabel() == "MIDI pitch"
    assert ax.get_ylim() == (59.5, 72.5)
    assert [text.get_text() for text in ax.texts] == ["no notes (rest only)"]


def test_piano_roll_rejects_a_batch():
    with pytest.raises(ValueError, match="one melody"):
        plots.piano_roll(np.zeros((2, 32), dtype=np.uint8))


@pytest.mark.parametrize(
    ("notes", "expected"),
    [
        ([(0, 4, 67)], (61, 73)),  # one note: an octave centred on it
        ([(0, 4, 60), (4, 8, 65)], (57, 69)),  # 5 semitones widened by 3 below and 4 above
        ([(0, 4, 48), (4, 8, 84)], (48, 84)),  # wider than an octave: the notes' own range
        ([], plots.EMPTY_PITCH_RANGE),
    ],
)
def test_pitch_axis_limits(notes, expected):
    assert plots.pitch_axis_limits([melody(*notes)]) == expected


def test_pitch_axis_limits_span_all_melodies_given():
    assert plots.pitch_axis_limits([melody((0, 4, 50)), melody((0, 4, 70))]) == (50, 70)


def test_piano_roll_pair_stacks_input_over_output_on_one_pitch_scale():
    original = melody((0, 16, 60))
    reconstruction = melody((0, 16, 76))

    fig = plots.piano_roll_pair(original, reconstruction, titles=("in", "out"))

    top, bottom = fig.axes
    assert (top.get_title(), bottom.get_title()) == ("in", "out")
    assert top.get_ylim() == bottom.get_ylim() == (59.5, 76.5)
    assert [patch.get_y() for patch in top.patches] == [59.5]
    assert [patch.get_y() for patch in bottom.patches] == [75.5]
    assert bottom.get_xlabel() == "step (16th notes)"
    assert fig.get_size_inches()[0] == 6.4


def test_a_16_bar_piano_roll_pair_is_twice_as_wide():
    window = np.zeros(256, dtype=np.uint8)
    window[0] = 60 - 21 + 2  # MIDI 60 from step 0 to the end
    assert plots.piano_roll_pair(window, window).get_size_inches()[0] == 12.8


def test_piano_roll_pair_rejects_windows_of_different_lengths():
    with pytest.raises(ValueError, match="same number of steps"):
        plots.piano_roll_pair(np.zeros(32, dtype=np.uint8), np.zeros(16, dtype=np.uint8))


def test_save_figure_writes_the_same_png_bytes_twice(tmp_path):
    fig = plots.piano_roll_pair(melody(*NOTES), melody((0, 8, 62)))

    first = plots.save_figure(fig, tmp_path / "a" / "b" / "roll.png")
    second = plots.save_figure(fig, tmp_path / "again.png")

    assert first == tmp_path / "a" / "b" / "roll.png"
    assert first.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert first.read_bytes() == second.read_bytes()
    assert b"Matplotlib" not in first.read_bytes()


def test_compact_png_keeps_a_dense_scatter_alike_in_a_third_of_the_bytes():
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(*rng.standard_normal((2, 3000)), c=rng.random(3000), s=6, alpha=0.7)
    full = io.BytesIO()
    fig.savefig(full, format="png", dpi=plots.PNG_DPI)
    compact = plots.compact_png(fig)
    plt.close(fig)
    assert len(compact) < len(full.getvalue()) / 2
    original = np.asarray(Image.open(io.BytesIO(full.getvalue())).convert("RGB"), dtype=float)
    palette = Image.open(io.BytesIO(compact))
    assert palette.mode == "P" and len(palette.getcolors(1000)) <= 256
    assert np.abs(np.asarray(palette.convert("RGB"), dtype=float) - original).mean() < 2  # of 255


def test_show_figures_compact_makes_ipython_show_figures_as_compact_pngs():
    shell = InteractiveShell.instance()
    try:
        plots.show_figures_compact()
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        shown = shell.display_formatter.formatters["image/png"](fig)
        assert shown == plots.compact_png(fig, plots.INLINE_DPI, bbox_inches="tight")
        plt.close(fig)
    finally:
        InteractiveShell.clear_instance()


def test_save_figure_refuses_a_path_that_is_not_png(tmp_path):
    fig = plots.piano_roll(melody(*NOTES)).figure

    with pytest.raises(ValueError, match=r"\.png"):
        plots.save_figure(fig, tmp_path / "roll.pdf")


# --- dataset figures ---------------------------------------------------------------------------


def test_count_bars_draws_one_bar_per_key_and_names_the_cs():
    fig, ax = plt.subplots()
    plots.count_bars({59: 3, 60: 5, 72: 1}, ax, "pitches", "MIDI pitch", "notes", label_pitches=True)
    assert [round(bar.get_height()) for bar in ax.patches] == [3, 5, 1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["C4\n(60)", "C5\n(72)"]
    plt.close(fig)


def test_onset_positions_colours_bars_by_metrical_level():
    fig, ax = plt.subplots()
    plots.onset_positions(np.arange(16), ax, "onsets")
    bars = ax.patches[:16]
    assert [round(bar.get_height()) for bar in bars] == list(range(16))
    assert bars[4].get_facecolor() == bars[12].get_facecolor() != bars[0].get_facecolor()
    assert [t.get_text() for t in ax.get_xticklabels()][:5] == ["1", "1e", "1&", "1a", "2"]
    plt.close(fig)


def test_class_usage_marks_the_unused_classes():
    counts = np.zeros(90, int)
    counts[[0, 1, 41, 43]] = [500, 20, 7, 3]
    fig, ax = plt.subplots()
    plots.class_usage(counts, ax, "classes")
    (markers,) = [line for line in ax.lines if line.get_marker() == "x"]
    assert len(markers.get_xdata()) == 86
    assert "C4" in [t.get_text() for t in ax.get_xticklabels()]
    plt.close(fig)


def test_histogram_has_one_bin_per_whole_number():
    fig, ax = plt.subplots()
    plots.histogram([1, 2, 2, 5], ax, "windows per tune", "windows", "tunes")
    assert [round(bar.get_height()) for bar in ax.patches] == [1, 2, 0, 0, 1]
    plt.close(fig)


# --- comparing sets ---


def test_set_colors_keep_the_real_sets_and_shade_the_generated_ones():
    colors = plots.set_colors(["train", "test", "T=0.5", "T=1"])
    assert colors["train"] == plots.REAL_SET_COLORS["train"] and colors["test"] == plots.REAL_SET_COLORS["test"]
    assert colors["T=0.5"] != colors["T=1"]


def test_set_bars_draws_one_bar_per_category_and_set_at_its_height():
    table = pd.DataFrame({"train": [0.5, 0.3, 0.2], "T=1": [0.4, 0.4, 0.2]}, index=["bar", "beat", "eighth"])
    _, ax = plt.subplots()
    plots.set_bars(table, ax, "onsets", "level", "share")
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == [0.5, 0.3, 0.2, 0.4, 0.4, 0.2]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["bar", "beat", "eighth"]


def test_set_distributions_drop_nan_and_say_how_many_are_left():
    _, ax = plt.subplots()
    plots.set_distributions(
        {"train": np.array([1.0, 2.0, np.nan]), "T=1": np.array([3.0, 4.0, 5.0])}, ax, "range", "semitones"
    )
    labels = [tick.get_text() for tick in ax.get_xticklabels()]
    assert labels == ["train\nn = 2", "T=1\nn = 3"]
    _, ax = plt.subplots()
    plots.set_distributions({"train": np.array([1.0, 2.0]), "T=1": np.array([3.0, 4.0])}, ax, "range", "semitones")
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["train", "T=1"]
    assert ax.get_xlabel() == "set (2 melodies each)"


def test_transition_heatmaps_normalise_rows_and_leave_empty_rows_at_zero():
    matrix = np.zeros((12, 12))
    matrix[0, 7], matrix[0, 0] = 3, 1  # from C: three times to G, once to C
    fig = plots.transition_heatmaps({"train": matrix}, "transitions")
    shares = fig.axes[0].collections[0].get_array().reshape(12, 12)
    assert shares[0, 7] == pytest.approx(0.75) and shares[0, 0] == pytest.approx(0.25)
    assert shares[1].sum() == 0


def test_beat_count_labels_count_sixteenths_as_musicians_do():
    assert plots.beat_count_labels()[:5] == ["1", "1e", "1&", "1a", "2"] and len(plots.beat_count_labels()) == 16


def test_overlap_intervals_leave_out_the_reference_and_draw_each_set():
    table = pd.DataFrame(
        {
            "set": ["train", "test", "T=1", "train", "test", "T=1"],
            "feature": ["a", "a", "a", "b", "b", "b"],
            "overlap": [np.nan, 0.9, 0.5, np.nan, 0.8, 0.4],  # 0.9 lies outside its interval: drawn anyway
            "overlap_low": [np.nan, 0.92, 0.45, np.nan, 0.7, 0.3],
            "overlap_high": [np.nan, 0.97, 0.55, np.nan, 0.9, 0.5],
        }
    )
    _, ax = plt.subplots()
    plots.overlap_intervals(table, ax, "overlap")
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["test", "T=1"]
    assert [tick.get_text() for tick in ax.get_yticklabels()] == ["a", "b"]


# --- the latent space ---


def test_piano_roll_grid_draws_every_melody_on_one_scale_and_hides_spare_axes():
    windows = [melody((0, 8, 60)), melody((0, 8, 72)), melody((0, 8, 67))]
    fig = plots.piano_roll_grid(windows, ["a", "b", "c"], columns=2)
    visible = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in visible] == ["a", "b", "c"]
    assert len({ax.get_ylim() for ax in visible}) == 1


def test_explained_variance_draws_the_running_total():
    _, ax = plt.subplots()
    plots.explained_variance(np.array([0.5, 0.3, 0.1]), ax, "pca")
    assert ax.lines[0].get_ydata().tolist() == pytest.approx([0.5, 0.8, 0.9])


def test_latent_scatter_colours_categories_with_counts_in_the_legend():
    _, ax = plt.subplots()
    plots.latent_scatter(np.zeros((3, 2)), ax, "view", np.array(["essen", "oneill", "essen"]), "collection")
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["essen (2)", "oneill (1)"]


def test_attribute_effects_scale_each_change_and_thicken_the_vector_own_attribute():
    effects = pd.DataFrame(
        {
            "vector": ["density"] * 4,
            "k": [0, 1, 0, 1],
            "attribute": ["density", "density", "interval", "interval"],
            "change": [0.0, 2.0, 0.0, 0.5],
        }
    )
    fig = plots.attribute_effects(effects, {"density": 2.0, "interval": 0.25})
    own, other = fig.axes[0].lines[:2]
    assert own.get_ydata().tolist() == [0.0, 1.0] and other.get_ydata().tolist() == [0.0, 2.0]
    assert own.get_linewidth() > other.get_linewidth()
    assert [text.get_text() for text in fig.legends[0].get_texts()] == ["density", "interval"]


def test_interpolation_curves_draw_one_line_per_method_in_order():
    curves = pd.DataFrame(
        {
            "method": ["slerp", "slerp", "naive", "naive"],
            "alpha": [0, 1, 0, 1],
            "distance_mean": [0.6, 0.0, 0.5, 0.0],
            "distance_std": [0.1, 0, 0.1, 0],
        }
    )
    _, ax = plt.subplots()
    plots.interpolation_curves(curves, ax, "paths")
    assert [line.get_label() for line in ax.lines] == ["slerp", "naive"]
    assert ax.lines[0].get_ydata().tolist() == [0.6, 0.0]


def test_grid_heatmaps_put_beta_rows_high_to_low_and_outline_the_choice():
    table = pd.DataFrame(
        {"beta": [0.5, 0.5, 1.0, 1.0], "free_nats": [0.0, 64.0, 0.0, 64.0], "kl_bits": [1.0, 90.0, 0.5, np.nan]}
    )
    fig = plots.grid_heatmaps(table, {"kl_bits": "KL (bits)"}, chosen=(0.5, 64.0))
    ax = fig.axes[0]
    assert [tick.get_text() for tick in ax.get_yticklabels()] == ["1", "0.5"]
    assert [text.get_text() for text in ax.texts] == ["0.5", "1", "90"]  # the NaN cell stays blank
    outline = [patch for patch in ax.patches if isinstance(patch, plots.Rectangle)]
    assert len(outline) == 1 and outline[0].get_xy() == (1, 1)


def test_grid_heatmaps_give_the_better_end_one_colour_and_every_panel_a_colour_bar():
    table = pd.DataFrame(
        {
            "beta": [0.5, 0.5, 1.0, 1.0],
            "free_nats": [0.0, 64.0, 0.0, 64.0],
            "accuracy": [0.5, 0.9, 0.6, 0.7],
            "loss": [40.0, 10.0, 30.0, 20.0],
            "kl_bits": [1.0, 9.0, 2.0, 3.0],
        }
    )
    fig = plots.grid_heatmaps(
        table, {"accuracy": "a", "loss": "b", "kl_bits": "c"}, better={"accuracy": "higher", "loss": "lower"}
    )
    meshes = [ax.collections[0] for ax in fig.axes[:3]]
    assert meshes[0].to_rgba(0.9) == meshes[1].to_rgba(10.0)  # the best accuracy and the lowest loss: one colour
    assert meshes[0].to_rgba(0.5) == meshes[1].to_rgba(40.0) != meshes[0].to_rgba(0.9)
    assert [ax.yaxis_inverted() for ax in fig.axes[3:]] == [False, True, False]  # yellow on top of both bars
    labels = [ax.get_ylabel() for ax in fig.axes[3:]]  # the colour bars, after the panels
    assert labels == ["better: higher (yellow)", "better: lower (yellow)", "no better end (darker: larger)"]
    with pytest.raises(ValueError, match="`better\\['loss'\\]` must be 'higher' or 'lower', got 'less'"):
        plots.grid_heatmaps(table, {"loss": "b"}, better={"loss": "less"})


def test_grid_metrics_title_a_panel_each_and_the_better_end_only_where_one_is_known():
    table = pd.DataFrame(
        {"beta": [0.5, 1.0], "free_nats": [0.0, 0.0]} | {column: [1.0, 2.0] for column in plots.GRID_METRICS}
    )
    fig = plots.grid_heatmaps(table, plots.GRID_METRICS, better=plots.GRID_BETTER)
    assert [ax.get_title() for ax in fig.axes[: len(plots.GRID_METRICS)]] == list(plots.GRID_METRICS.values())
    assert set(plots.GRID_METRICS) & set(plots.GRID_BETTER) == {"teacher_forced_accuracy", "sampling_accuracy"}


def test_kl_per_window_marks_lambda_only_with_free_bits():
    fig, (left, right) = plt.subplots(1, 2)
    plots.kl_per_window(np.array([40.0, 48.0, 50.0]), left, "with", free_bits=48.0)
    plots.kl_per_window(np.array([40.0, 48.0, 50.0]), right, "without", free_bits=0.0)
    assert sum(patch.get_height() for patch in left.patches) == 3
    assert len(left.get_lines()) == 1 and left.get_lines()[0].get_xdata()[0] == 48.0
    assert not right.get_lines() and right.get_legend() is None
    plt.close(fig)


def test_accuracy_by_onsets_draws_one_bar_per_bin_labelled_with_its_share():
    table = pd.DataFrame(
        {"onsets": ["0-4", "5+"], "windows": [3, 1], "share of windows": [0.75, 0.25], "accuracy": [0.9, 0.6]}
    )
    fig, ax = plt.subplots()
    plots.accuracy_by_onsets(table, ax, "by onsets")
    assert [patch.get_height() for patch in ax.patches] == [0.9, 0.6]
    assert [text.get_text() for text in ax.texts] == ["75%", "25%"]
    plt.close(fig)


def test_training_curves_draw_both_splits_per_epoch_and_lambda_on_the_bits_axis(tmp_path):
    epochs = pd.read_csv(make_run(tmp_path / "run") / "training" / "epochs.csv")  # a real (tiny) training's log
    fig = plots.training_curves(epochs, free_nats=177.4)
    kl = fig.axes[1]
    assert kl.get_title() == "KL divergence" and kl.get_ylabel() == "bits per sequence"
    for line, split in zip(kl.get_lines(), ["train", "valid"]):
        assert list(line.get_xdata()) == list(epochs["epoch"]) and list(line.get_ydata()) == list(
            epochs[f"{split}/losses/kl_bits"]
        )
    lambda_line, (name,) = kl.get_lines()[-1], kl.texts
    assert lambda_line.get_ydata()[0] == pytest.approx(177.4 / NATS_PER_BIT) == pytest.approx(255.9, abs=0.1)
    assert name.get_text() == "lambda = 177.4 nats = 256 bits" and kl.get_ylim()[1] > 255.9 * 1.1  # named, in view
    assert len(plots.training_curves(epochs).axes[1].get_lines()) == 2  # no lambda, no line


def test_two_sample_aucs_draw_one_point_and_interval_per_tested_set():
    realism = pd.DataFrame(
        {
            "set": ["test", "train", "T=1"],
            "auc": [np.nan, 0.63, 1.0],
            "auc_low": [np.nan, 0.61, 0.99],
            "auc_high": [np.nan, 0.65, 1.0],
        }
    )
    fig, ax = plt.subplots()
    plots.two_sample_aucs(realism, ax, "AUC")
    assert [label.get_text() for label in ax.get_yticklabels()] == [
        "train",
        "T=1",
    ]  # the test melodies are the reference
    assert ax.collections[1].get_offsets()[:, 0].tolist() == [0.63, 1.0]
    assert ax.get_xlim()[1] > 1.0  # an AUC of 1 stays visible
    plt.close(fig)


def test_separating_features_bars_start_at_chance():
    separating = pd.DataFrame({"feature": ["note-offs", "interval -2"], "auc": [0.7, 0.3]})
    fig, ax = plt.subplots()
    plots.separating_features(separating, ax, "features")
    assert [(bar.get_x(), round(bar.get_width(), 6)) for bar in ax.patches] == [(0.5, 0.2), (0.5, -0.2)]
    plt.close(fig)


def test_probe_r2_draws_a_bar_per_attribute_with_its_spread():
    probes = pd.DataFrame({"attribute": ["note_density", "pitch_range"], "r2": [0.8, 0.25], "r2_std": [0.05, 0.1]})
    _, ax = plt.subplots()
    plots.probe_r2(probes, ax, "probe")
    assert [patch.get_width() for patch in ax.patches] == pytest.approx([0.8, 0.25])
    assert [label.get_text() for label in ax.get_yticklabels()] == ["note_density", "pitch_range"]
    assert ax.get_xlim() == (0, 1) and ax.get_xlabel() == "R^2" and ax.get_title() == "probe"
    plt.close("all")
