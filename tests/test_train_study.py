import ast
import dataclasses
import json
import os
import subprocess
import tomllib
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import TORCHRUN_TWO

from musicvae_lib import run_folder, runner, search, train_study, training
from musicvae_lib.loss import RECIPES, LossConfig
from musicvae_lib.model import preset

REPOSITORY = Path(__file__).resolve().parent.parent


def write_dataset(run_dir: Path, seed: int = 0) -> None:
    """The files notebook 03 reads from notebook 01: random 2-bar windows are enough to train on."""
    rng = np.random.default_rng(seed)
    folder = run_dir / "dataset"
    folder.mkdir(parents=True)
    for name, n in (("train", 64), ("valid", 16), ("test", 16)):
        np.save(folder / f"{name}.npy", rng.integers(0, 90, (n, 32), dtype=np.uint8))
    (folder / "summary.json").write_text(json.dumps({"steps_per_window": 32}))


def parameters_cell_literals(path: Path) -> dict:
    """The names and literal values the notebook's cell tagged ``parameters`` assigns, in order."""
    notebook = nbformat.read(path, as_version=4)
    cell = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    return {
        statement.targets[0].id: ast.literal_eval(statement.value)
        for statement in ast.parse(cell.source).body
        if isinstance(statement, ast.Assign)
    }


def test_notebook_03_mirrors_the_library_defaults():
    literals = parameters_cell_literals(REPOSITORY / "notebooks" / "03_training.ipynb")
    defaults = dataclasses.asdict(train_study.TrainingNotebookDefaults())
    assert list(literals.items()) == list(defaults.items())
    assert set(train_study.TRAIN_FIELDS) == set(defaults) & {
        spec.name for spec in dataclasses.fields(training.TrainConfig)
    }
    assert "max_epochs" in train_study.TRAIN_FIELDS and "eval_windows" not in train_study.TRAIN_FIELDS
    # a training parameter is declared once, in TrainConfig: the notebook differs only where it says so
    trainer_defaults = dataclasses.asdict(training.TrainConfig())
    assert {name: literals[name] for name in train_study.TRAIN_FIELDS if literals[name] != trainer_defaults[name]} == {
        "max_epochs": 2
    }
    assert {name: type(value) for name, value in literals.items()} == {
        name: type(value) for name, value in defaults.items()
    }


def test_profile_parameters_put_the_profile_over_the_notebook_defaults(tmp_path):
    parameters = train_study.profile_parameters("quick", ["max_minutes=3.5"], REPOSITORY / "notebooks", tmp_path)
    assert parameters["model_preset"] == "tiny" and parameters["max_epochs"] == 2  # profiles/quick.toml
    assert parameters["max_minutes"] == 3.5  # -p
    assert parameters["learning_rate"] == 0.001  # the notebook's default
    assert parameters["run_dir"] == str(tmp_path / "quick")
    with pytest.raises(runner.ConfigError, match="not parameters of 03_training"):
        train_study.profile_parameters("quick", ["max_tunes=5"], REPOSITORY / "notebooks", tmp_path)


@pytest.mark.parametrize("profile", sorted(path.stem for path in (REPOSITORY / "profiles").glob("*.toml")))
def test_each_profile_gives_notebook_03_valid_configs(profile, tmp_path):
    # the runner checks the keys (load_profile); the configs check the values, as notebook 03 would build them
    parameters = train_study.profile_parameters(profile, [], REPOSITORY / "notebooks", tmp_path)
    config = training.TrainConfig(**{name: parameters[name] for name in train_study.TRAIN_FIELDS})
    loss_config = train_study.recipe_loss(parameters["recipe"], None, train_study.loss_overrides(parameters))
    model_config = preset(parameters["model_preset"])
    assert config.batch_size >= 1 and loss_config.form in ("thesis", "magenta") and model_config.z_size >= 1
    if parameters["baseline_preset"]:
        train_study.baseline_config(model_config, parameters["baseline_preset"])


def test_the_gpu_profile_trains_at_magentas_batch_within_a_gpu_budget(tmp_path):
    parameters = train_study.profile_parameters("gpu", [], REPOSITORY / "notebooks", tmp_path)
    assert (parameters["model_preset"], parameters["recipe"], parameters["batch_size"]) == ("study", "magenta", 512)
    assert 0 < parameters["max_steps"] <= 30_000 and parameters["max_minutes"] > 0  # steps, and a guard


@pytest.mark.parametrize("profile", sorted(path.stem for path in (REPOSITORY / "profiles").glob("*.toml")))
def test_no_profile_budgets_by_minutes_alone(profile):
    table = tomllib.loads((REPOSITORY / "profiles" / f"{profile}.toml").read_text())
    training, grid = table.get("03_training", {}), table.get("02_grid_search", {})
    assert grid.get("budget_unit", "epochs") in ("steps", "epochs")
    if training.get("max_minutes"):  # a guard beside a budget in steps, or beside early stopping set on purpose
        assert training.get("max_steps") or "early_stopping_patience" in training


def test_the_magenta_recipe_is_the_default_and_ignores_the_grid_search_choice(tmp_path):
    write_dataset(tmp_path)
    search.write_choice(tmp_path, beta=0.5, free_nats=16.0)
    model_config, loss_config, train_config, choice = train_study.study_configs(tmp_path, "tiny", batch_size=32)
    assert loss_config == LossConfig(form="magenta", beta=0.2, free_nats=0.0, beta_rate=0.99999)
    assert choice["beta"] == 0.5 and model_config.steps == 32 and train_config.batch_size == 32
    assert train_study.TrainingNotebookDefaults().recipe == "magenta"
    assert "not used" in train_study.describe_recipe("magenta", loss_config, choice)
    with pytest.raises(ValueError, match="eval_windows"):
        train_study.study_configs(tmp_path, "tiny", eval_windows=5)


def test_the_thesis_recipe_takes_the_grid_search_choice_or_beta_1_lambda_33(tmp_path):
    write_dataset(tmp_path)
    _, loss_config, _, choice = train_study.study_configs(tmp_path, "tiny", "thesis")
    assert choice is None and loss_config == LossConfig(form="thesis", beta=1.0, free_nats=33.3)
    search.write_choice(tmp_path, beta=0.5, free_nats=16.0)
    _, loss_config, _, choice = train_study.study_configs(tmp_path, "tiny", "thesis")
    assert loss_config == LossConfig(form="thesis", beta=0.5, free_nats=16.0)
    assert "(used here)" in train_study.describe_recipe("thesis", loss_config, choice)
    with pytest.raises(ValueError, match="`recipe` must be one of"):
        train_study.study_configs(tmp_path, "tiny", "elbo")


def test_explicit_loss_parameters_win_over_the_recipe_and_the_grid(tmp_path):
    write_dataset(tmp_path)
    search.write_choice(tmp_path, beta=0.5, free_nats=16.0)
    left_alone = dataclasses.asdict(train_study.TrainingNotebookDefaults())
    assert train_study.loss_overrides(left_alone) == {}
    overrides = train_study.loss_overrides(left_alone | {"beta": 2, "free_bits_over": "batch", "free_nats": 0.0})
    assert overrides == {"beta": 2, "free_bits_over": "batch", "free_nats": 0.0}
    _, loss_config, _, choice = train_study.study_configs(tmp_path, "tiny", "thesis", overrides)
    assert (loss_config.form, loss_config.beta, loss_config.free_nats, loss_config.free_bits_over) == (
        "thesis",
        2,
        0.0,
        "batch",
    )
    assert "free_bits_over = 'batch'" in train_study.describe_recipe("thesis", loss_config, choice)


def test_one_parameter_brings_back_the_thesis_recipe(tmp_path):
    parameters = train_study.profile_parameters("default", ["recipe=thesis"], REPOSITORY / "notebooks", tmp_path)
    assert parameters["recipe"] == "thesis" and train_study.loss_overrides(parameters) == {}
    assert train_study.profile_parameters("default", [], REPOSITORY / "notebooks", tmp_path)["recipe"] == "magenta"


def test_torchrun_trains_what_notebook_03_then_finds_finished(tmp_path):
    write_dataset(tmp_path / "quick")
    overrides = ["-p", "max_epochs=1", "-p", "batch_size=16", "-p", "bf16=false"]
    command = [
        *TORCHRUN_TWO,
        "-m",
        "musicvae_lib.train_study",
        "--profile",
        "quick",
        "--results",
        str(tmp_path),
        *overrides,
    ]
    finished = subprocess.run(
        command, capture_output=True, text=True, cwd=REPOSITORY, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("stopped by max_epochs after 1 epochs, 4 steps") == 1  # rank 0 alone reports
    run = tmp_path / "quick" / "training"
    assert json.loads((run / training.DONE_FILE).read_text())["world_size"] == 2
    steps_before = (run / training.STEPS_LOG).read_bytes()

    parameters = train_study.profile_parameters("quick", overrides[1::2], REPOSITORY / "notebooks", tmp_path)
    again = train_study.train_from_parameters(parameters, device="cpu")  # what notebook 03 does next
    assert (again.steps, again.resumed) == (4, False)
    assert (run / training.STEPS_LOG).read_bytes() == steps_before


def test_training_before_notebook_01_names_it(tmp_path):
    parameters = train_study.profile_parameters("quick", [], REPOSITORY / "notebooks", tmp_path)
    with pytest.raises(run_folder.MissingInputError, match="01_dataset"):
        train_study.train_from_parameters(parameters, device="cpu")


def test_the_baseline_trains_alike_into_its_own_folder_and_goes_on_from_it(tmp_path, capsys):
    write_dataset(tmp_path / "quick")
    overrides = ["batch_size=16", "bf16=false", "model_preset=tiny-hier", "baseline_preset=tiny"]
    command = ["--profile", "quick", "--results", str(tmp_path), "--device", "cpu", "-p", "max_epochs=1"]
    assert train_study.main(command + [word for override in overrides for word in ("-p", override)]) == 0
    # the model, then the baseline
    assert capsys.readouterr().out.count("stopped by max_epochs after 1 epochs, 4 steps") == 2
    run = tmp_path / "quick"
    model, baseline = (
        json.loads((run / folder / training.DONE_FILE).read_text())["identity"]
        for folder in (run_folder.TRAINING, run_folder.BASELINE_TRAINING)
    )
    assert model["model_config"]["conductor_size"] == 32 and baseline["model_config"] == dataclasses.asdict(
        preset("tiny")
    )
    assert all(model[key] == baseline[key] for key in ("loss_config", "train_config", "data_sha256"))

    parameters = train_study.profile_parameters(
        "quick", overrides + ["max_epochs=2"], REPOSITORY / "notebooks", tmp_path
    )
    resumed = train_study.train_from_parameters(parameters, device="cpu", baseline=True)  # a larger budget goes on
    assert (resumed.resumed, resumed.epochs, resumed.steps) == (True, 2, 8) and not resumed.model.config.hierarchical
    # the same budget finds it finished
    again = train_study.train_from_parameters(parameters, device="cpu", baseline=True)
    assert (again.resumed, again.steps) == (False, 8)
    epochs = pd.read_csv(run / run_folder.BASELINE_TRAINING / training.EPOCHS_LOG)
    assert train_study.describe_training(again, epochs).startswith("Stopped by max epochs after 2 epochs (8 steps, ")


def test_a_baseline_shares_the_model_encoder_and_z():
    assert train_study.baseline_config(preset("tiny-hier", steps=64), "tiny") == preset("tiny", steps=64)
    with pytest.raises(ValueError, match="differs in z_size 256 vs 16, encoder_size 512 vs 32"):
        train_study.baseline_config(preset("tiny-hier"), "study")
    with pytest.raises(ValueError, match="unknown model preset"):
        train_study.baseline_config(preset("tiny"), "flat")


def test_the_16_bar_profile_trains_a_flat_baseline_beside_the_hierarchical_model(tmp_path):
    parameters = train_study.profile_parameters("hier16", [], REPOSITORY / "notebooks", tmp_path)
    assert (parameters["model_preset"], parameters["baseline_preset"]) == ("study-hier16", "study-flat16")
    baseline = train_study.baseline_config(preset(parameters["model_preset"]), parameters["baseline_preset"])
    assert baseline.steps == 256 and not baseline.hierarchical
    assert parameters["recipe"] == "magenta-16bar" and train_study.loss_overrides(parameters) == {}
    reason = train_study.describe_recipe("magenta-16bar", train_study.recipe_loss("magenta-16bar", None), None)
    assert "16-bar" in reason and "without free bits" not in reason and "change the recipe" not in reason
    assert set(train_study.RECIPE_REASONS) == set(RECIPES)  # notebook 03 gives every recipe its reason


def test_the_16_bar_gpu_profile_trains_the_cpu_profiles_models_on_its_data():
    cpu, gpu = (
        tomllib.loads((REPOSITORY / "profiles" / f"{name}.toml").read_text()) for name in ("hier16", "hier16-gpu")
    )
    assert cpu["notebooks"] == gpu["notebooks"] and cpu["01_dataset"] == gpu["01_dataset"]
    budget = {"max_epochs", "max_steps", "max_minutes", "eval_windows"}  # what a GPU may spend differently
    assert {k: v for k, v in cpu["03_training"].items() if k not in budget} == {
        k: v for k, v in gpu["03_training"].items() if k not in budget
    }
