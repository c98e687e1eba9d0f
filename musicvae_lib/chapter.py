"""What every chapter does first and all along: check the run folder, load the model, save figures and tables.

A chapter reads what earlier notebooks wrote into the run folder. ``open_run`` checks those files
before anything runs and, when one is missing, stops with a message naming the notebook to run
first (``run_folder.require_chapters``). The ``Run`` it returns writes the chapter's outputs in one
call each: ``run.figure(fig, "07_pca")`` saves figures/07_pca.png and shows the figure where the cell
is, ``run.table(frame, "07_probe_r2", index=False)`` writes tables/07_probe_r2.csv. The runner
records every file a notebook wrote in the run's manifest.json (its ``files``, with size and
sha256), so a file saved through these helpers is recorded with no further step. Randomness needs no
global seed here: every library function takes its ``seed`` and draws from generators of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import IPython
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from matplotlib.figure import Figure

from musicvae_lib import data, features, generate, plots, run_folder, search
from musicvae_lib.model import MusicVAE
from musicvae_lib.training import load_model


@dataclass(frozen=True)
class Run:
    """A chapter's view of its run folder: where to read, where figures and tables go, the trained model if asked.

    ``figure`` and ``table`` write into figures/ and tables/; the runner's manifest.json lists every
    file a notebook wrote (``files``: path, size, sha256), these included.
    """

    folder: Path
    figures: Path
    tables: Path
    model: MusicVAE | None  # notebook 03's model, when ``open_run`` was asked to load it

    def figure(self, fig: Figure, name: str, show: bool = True) -> None:
        """Save ``fig`` as figures/<name>.png (``plots.save_figure``) and show it here unless ``show=False``.

        Shown in a notebook, the figure appears where the call is, before what the cell displays
        next (as ``plt.show()`` does); ``show=False`` only saves it (a chapter showing notation
        instead). Either way the figure is closed: the cell's end does not show it a second time. Nothing is
        returned, so a cell that ends with the call shows no path under its figure.
        """
        if not name or Path(name).name != name or name.endswith(".png"):
            raise ValueError(f"`name` must be a file name without folder or suffix (as in '07_pca'), got {name!r}")
        plots.save_figure(fig, self.figures / f"{name}.png")
        if show and IPython.get_ipython() is not None:
            display(fig)
        plt.close(fig)

    def table(self, frame: pd.DataFrame, name: str, **to_csv: Any) -> None:
        """Write ``frame`` as tables/<name>.csv with ``to_csv``'s arguments (``index=False``, ...); returns nothing,
        so a cell that ends with the call shows no path."""
        if not name or Path(name).name != name or name.endswith(".csv"):
            raise ValueError(f"`name` must be a file name without folder or suffix (as in '07_probe_r2'), got {name!r}")
        frame.to_csv(self.tables / f"{name}.csv", **to_csv)


def open_run(run_dir: str | Path, needs: Sequence[str], load_trained_model: bool = False) -> Run:
    """Check the outputs of notebooks ``needs`` (earliest first), make figures/ and tables/, load the model if asked.

    Figures are shown as compact PNGs from here on (``plots.show_figures_compact``). The data
    chapter, which needs no earlier one, opens its run with ``needs=[]``.

    ``needs`` names notebooks of ``run_folder.CHAPTER_OUTPUTS`` ("01_dataset", ...); MissingInputError
    names the first one whose outputs are missing, with the command that runs it.
    """
    folder = Path(run_dir)
    run_folder.require_chapters(folder, needs)
    plots.show_figures_compact()
    figures, tables = folder / run_folder.FIGURES, folder / run_folder.TABLES
    figures.mkdir(parents=True, exist_ok=True)
    tables.mkdir(parents=True, exist_ok=True)
    model = load_model(folder / run_folder.TRAINED_MODEL) if load_trained_model else None
    return Run(folder, figures, tables, model)


def contrasting_models(run_dir: str | Path, model: MusicVAE) -> tuple[dict[str, MusicVAE], list[str]]:
    """``model`` (chapter 03's) beside the grid search's chosen point and its two contrasting points (notebook 02),
    and the names of the grid points whose model.pt is not in the run folder.

    Keys name each model's role, beta and lambda; the grid models are read from their folders'
    model.pt (``search.contrasting_points``: the least and the most KL). A committed reference run keeps the
    grid's results (its study) but not its models (``.gitignore``), so a re-execution from a clone goes on
    with the models it has and names the others.
    """
    choice = search.load_choice(run_dir)
    if choice is None:
        raise ValueError(
            f"{Path(run_dir) / run_folder.GRID_CHOICE} is missing: run notebooks/02_grid_search.ipynb first"
        )
    grid = search.results_table(run_dir)
    chosen = grid[(grid["beta"] == choice["beta"]) & (grid["free_nats"] == choice["free_nats"])].assign(
        role="chosen point"
    )
    points = pd.concat([chosen, search.contrasting_points(grid, choice)], ignore_index=True)
    models, missing = {"chapter 03 model": model}, []
    for row in points.itertuples():
        name, path = f"{row.role}: beta {row.beta:g}, lambda {row.free_nats:g}", Path(run_dir) / row.folder
        if (path / run_folder.MODEL_FILE).is_file():
            models[name] = load_model(path / run_folder.MODEL_FILE)
        else:
            missing.append(name)
    return models, missing


def describe_missing_models(missing: Sequence[str]) -> str:
    """A sentence naming the grid points ``contrasting_models`` could not load; empty when none is missing."""
    if not missing:
        return ""
    return (
        f"Not compared: {'; '.join(missing)}. Their models are not in this run folder (a committed reference run "
        "keeps the grid's results, not its models); a fresh run of notebook 02 trains them."
    )


def analysis_sets(run_dir: str | Path, generated: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """The sets chapters 05 and 06 compare: "train" and "test" samples as large as a generated set, then ``generated``.

    Training windows are the reference; the held-out test windows show how close real music gets.
    Equal sizes keep the distance distributions of the set comparison alike in noise. The samples
    are seeded (``data.sample_windows``), a split smaller than the generated sets is taken whole.
    """
    size = max(len(windows) for windows in generated.values())
    real = {}
    for offset, name in enumerate(("train", "test")):
        windows = data.load_split(run_dir, name)
        real[name] = windows[data.sample_windows(windows, min(size, len(windows)), seed + offset)]
    return real | generated


def comparison_sets(run_dir: str | Path, seed: int) -> tuple[dict[str, np.ndarray], dict[str, pd.DataFrame]]:
    """Chapters 05 and 06's sets (``analysis_sets``: train, test, then notebook 04's) and their feature tables."""
    generated = generate.load_sets(Path(run_dir) / run_folder.GENERATED)
    sets = analysis_sets(run_dir, generated, seed)
    return sets, {name: features.feature_table(windows) for name, windows in sets.items()}


def describe_sets(sets: dict[str, np.ndarray]) -> str:
    """'Sets: train (200 melodies), ...'."""
    return "Sets: " + ", ".join(f"{name} ({len(windows):,} melodies)" for name, windows in sets.items()) + "."


def readable(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A copy of ``table`` to show, not to save: floats rounded to ``digits``, whole numbers without decimals.

    Columns mixing counts and shares (a ``value`` column beside ``unit``) show each entry as it
    reads best: 157 rather than 157.000000, 0.918 rather than 0.917709.
    """

    def shown(value: object) -> object:
        if isinstance(value, (float, np.floating)) and np.isfinite(value):
            return int(value) if float(value).is_integer() else round(float(value), digits)
        return value

    def column_shown(column: pd.Series) -> pd.Series:
        if column.dtype.kind not in "fO":
            return column
        return pd.Series([shown(value) for value in column], index=column.index, dtype=object)

    return table.apply(column_shown)


# search.results_table's columns as notebook 02 shows them (``grid_table``): short header, number format
GRID_COLUMNS = {
    "beta": ("beta", "{:g}"),
    "free_nats": ("lambda", "{:g}"),
    "state": ("state", "{}"),
    "rung": ("rung", "{:g}"),
    "negative_elbo_nats": ("-ELBO", "{:.1f}"),
    "reconstruction_nats": ("recon.", "{:.1f}"),
    "kl_bits": ("KL bits", "{:.1f}"),
    "teacher_forced_accuracy": ("acc. TF", "{:.3f}"),
    "sampling_accuracy": ("acc. sampl.", "{:.3f}"),
    "rerun_sampling_accuracy": ("seed 2", "{:.3f}"),
    "greedy_accuracy": ("acc. greedy", "{:.3f}"),
    "active_dimensions": ("active dims", "{:g}"),
    "epochs": ("epochs", "{:g}"),
    "minutes": ("min", "{:.1f}"),
}


def grid_table(table: pd.DataFrame) -> pd.io.formats.style.Styler:
    """``search.results_table``'s ``GRID_COLUMNS`` under their short headers, each number to its precision:
    fits a page."""
    shown = table[list(GRID_COLUMNS)].rename(columns={name: short for name, (short, _) in GRID_COLUMNS.items()})
    # a fixed id: pandas draws a random one per table, and the executed notebook would differ from run to run
    return shown.style.set_uuid("grid").hide(axis="index").format(dict(GRID_COLUMNS.values()), na_rep="")
