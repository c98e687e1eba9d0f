import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from musicvae_lib import chapter, generate, plots, run_folder, training
from musicvae_lib.loss import LossConfig
from musicvae_lib.model import MusicVAE, preset

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
REFERENCE_RUN = Path(__file__).resolve().parent.parent / "results" / "default"


def write_dataset(run_dir, seed=0):
    folder = run_dir / "dataset"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name, n in (("train", 40), ("valid", 16), ("test", 8)):
        np.save(folder / f"{name}.npy", rng.integers(0, 90, (n, 32), dtype=np.uint8))
    (folder / "summary.json").write_text('{"steps_per_window": 32}')


def test_open_run_names_the_first_notebook_whose_outputs_are_missing(tmp_path):
    with pytest.raises(run_folder.MissingInputError, match="01_dataset"):
        chapter.open_run(tmp_path, needs=["03_training", "01_dataset"])
    write_dataset(tmp_path)
    with pytest.raises(run_folder.MissingInputError, match="03_training"):
        chapter.open_run(tmp_path, needs=["01_dataset", "03_training"])
    with pytest.raises(ValueError, match="`needs` must name notebooks"):
        chapter.open_run(tmp_path, needs=["03"])
    run = chapter.open_run(tmp_path, needs=["01_dataset"])
    assert run.figures.is_dir() and run.tables.is_dir() and run.model is None and run.folder == tmp_path


def test_open_run_loads_the_trained_model_and_the_sets_of_chapters_05_and_06(tmp_path):
    write_dataset(tmp_path)
    torch.set_num_threads(1)
    trained = training.train(
        preset("tiny"),
        LossConfig(),
        training.TrainConfig(batch_size=16, max_epochs=1, bf16=False),
        np.load(tmp_path / "dataset" / "train.npy"),
        np.load(tmp_path / "dataset" / "valid.npy"),
        tmp_path / run_folder.TRAINING,
        device="cpu",
    )
    run = chapter.open_run(tmp_path, needs=["01_dataset", "03_training"], load_trained_model=True)
    assert not run.model.training
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, trained.model.state_dict()[name]), name
    with pytest.raises(run_folder.MissingInputError, match="04_generation"):
        chapter.open_run(tmp_path, needs=["04_generation"])
    sets = generate.sample_sets(run.model, 5, (1.0,), seed=0)
    generate.save_sets(sets, tmp_path / run_folder.GENERATED)
    sets, tables = chapter.comparison_sets(tmp_path, seed=0)
    assert list(sets) == list(tables) == ["train", "test", "T=1"]
    assert [len(table) for table in tables.values()] == [5, 5, 5]
    assert chapter.describe_sets(sets) == "Sets: train (5 melodies), test (5 melodies), T=1 (5 melodies)."


def test_a_run_saves_figures_as_save_figure_does_and_tables_with_the_arguments_given(tmp_path):
    run = chapter.open_run(tmp_path, needs=[])
    assert run.folder == tmp_path and run.figures.is_dir() and run.tables.is_dir()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 4])
    expected = plots.compact_png(fig)
    assert run.figure(fig, "07_example") is None  # a cell ending with the call shows no path
    assert (tmp_path / "figures" / "07_example.png").read_bytes() == expected
    assert not plt.fignum_exists(fig.number)  # closed: a notebook shows it once, where the call is
    fig, ax = plt.subplots()
    run.figure(fig, "07_hidden", show=False)
    assert (tmp_path / "figures" / "07_hidden.png").is_file() and not plt.fignum_exists(fig.number)
    frame = pd.DataFrame({"a": [1, 2]}, index=pd.Index(["x", "y"]))
    assert run.table(frame, "07_example", index=False) is None
    assert (tmp_path / "tables" / "07_example.csv").read_text() == "a\n1\n2\n"
    run.table(frame, "07_labelled", index_label="name")
    assert (tmp_path / "tables" / "07_labelled.csv").read_text() == "name,a\nx,1\ny,2\n"
    for bad in ("07_example.png", "figures/07_example", ""):
        with pytest.raises(ValueError, match="`name` must be a file name"):
            run.figure(fig, bad)
    for bad in ("07_example.csv", "../07_example"):
        with pytest.raises(ValueError, match="`name` must be a file name"):
            run.table(frame, bad)


def test_readable_rounds_shares_and_shows_counts_as_whole_numbers():
    table = pd.DataFrame({"metric": ["accuracy", "dimensions"], "value": [0.917709, 157.0], "n": [3, 4]})
    shown = chapter.readable(table)
    assert shown["value"].tolist() == [0.918, 157] and isinstance(shown["value"].iloc[1], int)
    assert shown["metric"].tolist() == ["accuracy", "dimensions"] and shown["n"].tolist() == [3, 4]
    assert table["value"].tolist() == [0.917709, 157.0]  # the table itself is left as it was
    assert np.isnan(chapter.readable(pd.DataFrame({"x": [np.nan, 0.5]}))["x"].iloc[0])


@pytest.mark.parametrize("name", sorted(path.stem for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
def test_chapters_open_with_title_and_question_and_keep_code_cells_short(name):
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    title, parameters = notebook.cells[:2]
    assert (
        title.cell_type == "markdown"
        and title.source.startswith(f"# {name[:2]} ")
        and "?" in title.source.splitlines()[0]
    )
    assert "parameters" in parameters.metadata.get("tags", [])
    # papermill reads each parameter from its line, and warns on a line with a second "=" (in a comment, say)
    assert not [line for line in parameters.source.splitlines() if line.count("=") > 1 and not line.startswith("#")]
    # every code cell after the parameters cell is at most 12 lines of at most 120 characters (ruff formats the
    # library, not the notebooks, whose cells are wrapped by hand)
    long_cells = {
        index: len(cell.source.splitlines())
        for index, cell in enumerate(notebook.cells[2:], start=2)
        if cell.cell_type == "code"
        and (len(cell.source.splitlines()) > 12 or max(map(len, cell.source.splitlines()), default=0) > 120)
    }
    assert not long_cells, f"{name}: code cells (index: lines) over 12 lines or 120 characters a line: {long_cells}"
    assert "chapter.open_run(run_dir" in notebook.cells[2].source
    # every figure and table goes through the run's helpers: saved, shown and named the same way in every chapter
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "save_figure" not in code and ".to_csv(" not in code and "plt.show()" not in code
    assert not any(cell.outputs for cell in notebook.cells if cell.cell_type == "code")  # outputs live in results/


def test_contrasting_models_need_the_grid_search(tmp_path):
    with pytest.raises(ValueError, match="02_grid_search"):
        chapter.contrasting_models(tmp_path, MusicVAE(preset("tiny")))


def test_contrasting_models_go_on_without_the_grid_models_a_clone_lacks(tmp_path):
    # the committed reference run holds the grid's study and choice, not its points' model.pt (.gitignore)
    shutil.copytree(REFERENCE_RUN / "grid_search", tmp_path / "grid_search")
    model = MusicVAE(preset("tiny"))
    models, missing = chapter.contrasting_models(tmp_path, model)
    assert models == {"chapter 03 model": model}
    choice = json.loads((tmp_path / "grid_search" / "choice.json").read_text())
    chosen = f"chosen point: beta {choice['beta']:g}, lambda {choice['free_nats']:g}"
    assert len(missing) == 3 and missing[0].startswith(chosen)
    sentence = chapter.describe_missing_models(missing)
    assert sentence.startswith(f"Not compared: {chosen}") and "notebook 02" in sentence
    assert chapter.describe_missing_models([]) == ""


def test_analysis_sets_put_equal_real_samples_before_the_generated_sets(tmp_path):
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    rng = np.random.default_rng(0)
    np.save(dataset / "train.npy", rng.integers(0, 90, (50, 32), dtype=np.uint8))
    np.save(dataset / "test.npy", rng.integers(0, 90, (4, 32), dtype=np.uint8))
    generated = {name: rng.integers(0, 90, (6, 32), dtype=np.uint8) for name in ("T=0.5", "T=1")}
    sets = chapter.analysis_sets(tmp_path, generated, seed=0)
    assert list(sets) == ["train", "test", "T=0.5", "T=1"]
    assert [len(windows) for windows in sets.values()] == [6, 4, 6, 6]  # the test split holds only 4
    assert sets["T=1"] is generated["T=1"]
    training = {row.tobytes() for row in np.load(dataset / "train.npy")}
    assert all(row.tobytes() in training for row in sets["train"])
    assert len({row.tobytes() for row in sets["train"]}) == 6  # drawn without replacement
    assert np.array_equal(sets["train"], chapter.analysis_sets(tmp_path, generated, seed=0)["train"])
    assert not np.array_equal(sets["train"], chapter.analysis_sets(tmp_path, generated, seed=1)["train"])
